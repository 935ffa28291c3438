"""The run script's other modes: ``--compare``, ``--hyper`` and data-parallel training (``--nproc``).

Only argparse is imported here, so ``run_ur4rec.py`` stays quick to start;
each mode imports its module when chosen.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ur4rec_recbole.io import dated_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the comparison, search and distributed modes."""
    bench = parser.add_argument_group("side-by-side benchmark")
    bench.add_argument("--compare", default=None, metavar="SPECS",
                       help="models to compare, e.g. 'SASRec,UR4Rec,UR4Rec[retriever_weight=0;fusion=none]' "
                            "(overrides in brackets, separated by ';'); replaces --model")
    bench.add_argument("--seeds", type=int, default=1, help="--compare: seeds 2020, 2021, ... (this many)")
    bench.add_argument("--output", default=None,
                       help="--compare/--hyper output folder (default: a dated folder under saved/)")
    hyper = parser.add_argument_group("hyperparameter search")
    hyper.add_argument("--hyper", default=None, metavar="FILE", help="params file (RecBole's format) to search")
    hyper.add_argument("--tool", choices=("hyperopt", "ray"), default="hyperopt", help="search tool")
    hyper.add_argument("--max-evals", type=int, default=20, help="number of trials")
    hyper.add_argument("--algo", default=None,
                       help="hyperopt: bayes (default), random, exhaustive; ray: random (default), exhaustive")
    hyper.add_argument("--ray-address", "--ray_address", default=None, metavar="HOST:PORT",
                       help="attach to this running Ray cluster instead of starting one (default: $RAY_ADDRESS)")
    hyper.add_argument("--shared-data", "--shared_data", default=None, metavar="DIR",
                       help="Ray cluster: a folder every node mounts at this path, where the data root is copied "
                            "for the trials (default: the trials get the data through the object store)")
    hyper.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    hyper.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs each Ray trial reserves")
    hyper.add_argument("--gpus-per-trial", type=float, default=0, help="GPUs each Ray trial reserves")
    hyper.add_argument("--asha-grace", type=int, default=1, help="epochs before ASHA may stop a Ray trial")
    hyper.add_argument("--no-test", action="store_true",
                       help="choose on validation only and leave the test set unread (for a later --compare)")
    hyper.add_argument("--max-concurrent", type=int, default=None,
                       help="Ray trials at a time (default: as many as the CPUs/GPUs allow)")
    ddp = parser.add_argument_group("data-parallel training (RecBole's DDP: NCCL on GPUs, gloo on the CPU)")
    ddp.add_argument("--nproc", type=int, default=1, help="processes on this machine (one per GPU, if any)")
    ddp.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    ddp.add_argument("--ip", default="localhost", help="address of the rank-0 machine")
    ddp.add_argument("--port", default="5678", help="port of the rank-0 machine")
    ddp.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")


def dispatch(args: argparse.Namespace, overrides: dict[str, str]) -> dict | None:
    """Run the chosen mode and return its results; None when no mode flag is given."""
    if args.compare is not None:
        from ur4rec_recbole.run.compare.runner import compare, seeds_for
        from ur4rec_recbole.run.compare.report import markdown
        from ur4rec_recbole.run.compare.spec import parse_specs

        output = Path(args.output) if args.output else dated_output("compare")
        bench = compare(parse_specs(args.compare), args.dataset, seeds_for(args.seeds), output,
                        args.config_files, overrides)
        print(markdown(bench))
        print(f"benchmark.md, benchmark.json, benchmark.png, per_user.json.gz and runs/ in {output}")
        return bench
    if args.hyper is not None:
        from ur4rec_recbole.run.hyper.space import read_params

        params = read_params(args.hyper)
        output = Path(args.output) if args.output else dated_output("hyper")
        if args.tool == "ray":
            from ur4rec_recbole.run.hyper.ray_tune import search_ray

            summary = search_ray(params, args.model, args.dataset, output, args.max_evals, args.algo or "random",
                                 args.config_files, overrides, address=args.ray_address, num_cpus=args.cpus,
                                 cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                                 grace_period=args.asha_grace, max_concurrent=args.max_concurrent,
                                 test=not args.no_test, shared_data=args.shared_data)
        else:
            from ur4rec_recbole.run.hyper.search import search_hyperopt

            summary = search_hyperopt(params, args.model, args.dataset, output, args.max_evals,
                                      args.algo or "bayes", args.config_files, overrides, test=not args.no_test)
        print((output / "trials.md").read_text())
        print(f"trials.md, trials.json and best.yaml in {output}")
        return summary
    if args.nproc != 1 or args.world_size != -1:
        from ur4rec_recbole.run.distributed import run_distributed

        from ur4rec_recbole.run.single import summary_table

        results = run_distributed(args.model, args.dataset, args.config_files, overrides, nproc=args.nproc,
                                  world_size=args.world_size, ip=args.ip, port=args.port,
                                  group_offset=args.group_offset, results_path=args.results)
        if results is None:  # another machine holds rank 0
            print(f"processes {args.group_offset}-{args.group_offset + args.nproc - 1} of {args.world_size} done; "
                  f"the machine with --group_offset 0 reports the results")
            return {}
        print(summary_table(results))
        return results
    return None
