"""The main command: train and test UR4Rec, or any RecBole model, with RecBole's split and evaluator.

    python run_ur4rec.py --dataset ml-100k            # or: python -m ur4rec_recbole --dataset ml-100k
    python run_ur4rec.py --dataset ml-100k --model SASRec
    python run_ur4rec.py --dataset mydata --data_path=/data/recbole --results out.json
    python run_ur4rec.py --dataset ml-100k --generate openai --llm-model gpt-4o-mini   # LLM texts first
    python run_ur4rec.py --dataset mydata --modalities text,image
    python run_ur4rec.py --dataset ml-100k --compare SASRec,UR4Rec,UR4Rec[retriever_weight=0] --seeds 3
    python run_ur4rec.py --dataset ml-100k --hyper ur4rec.hyper --tool ray --max-evals 20

Any RecBole setting can be given as ``--key=value`` (values are read as Python
literals, never run as code, e.g. ``--item_text_fields="['title','category']"``).
``--results`` names a new file (``--overwrite`` replaces one); it and every
other output are checked before any data is read (docs/security.md).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from time import time

from ur4rec_recbole.cli.common import add_dataset_arguments, command, quiet_library_warnings, split_overrides
from ur4rec_recbole.cli.generate import add_generation_arguments, options_from_args, run_generation
from ur4rec_recbole.cli.modes import add_arguments, dispatch
from ur4rec_recbole.outputs import claim_output


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(prog="run_ur4rec.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # --seed=N is a RecBole setting, not --seeds
    add_dataset_arguments(parser)
    parser.add_argument("--model", "-m", default="UR4Rec", help="UR4Rec or any RecBole model name, e.g. SASRec")
    parser.add_argument("--results", default=None, help="write the results as JSON to this path (a new file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --results file")
    parser.add_argument("--resume", default=None, help="continue training from this checkpoint")
    parser.add_argument("--generate", default=None, metavar="BACKEND",
                        help="first write LLM texts with this backend (openai or transformers), then train on them")
    parser.add_argument("--modalities", default=None, help="item modalities of UR4Rec: text, image or text,image")
    add_generation_arguments(parser)
    add_arguments(parser)  # --compare, --hyper, --nproc ...
    args, extra = parser.parse_known_args(argv)
    with command(args.debug):
        overrides = split_overrides(extra)
    if args.modalities is not None:  # the same as the setting --modalities=...
        overrides["modalities"] = args.modalities
    return args, overrides


def main(argv: list[str] | None = None, started: float | None = None) -> dict:
    """Run the command; ``started`` is when the process started (for the wall time printed last)."""
    started = time() if started is None else started
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_library_warnings()
    with command(args.debug), ExitStack() as claimed:
        # before anything is read or written: the outputs are the right kind of path, and ours alone
        claimed.enter_context(claim_output(args.results, "--results", overwrite=args.overwrite))
        if args.compare is not None or args.hyper is not None:
            claimed.enter_context(claim_output(args.output, "--output", folder=True))
        return _main(args, overrides, started)


def _main(args: argparse.Namespace, overrides: dict[str, str], started: float) -> dict:
    if args.generate is not None:  # texts first: every mode below (one run, --compare, --hyper) uses them
        options = options_from_args(args, args.generate)
        if overrides.get("text_source", options.text_source) != options.text_source:
            raise ValueError(f"--generate writes text_source '{options.text_source}' but "
                             f"--text_source={overrides['text_source']} was given")
        run_generation(args.dataset, options, overrides, args.config_files)
        overrides["text_source"] = options.text_source
    other = dispatch(args, overrides)  # --compare, --hyper, --nproc/--world_size
    if other is not None:
        return other

    from ur4rec_recbole.run.single import run, summary_table

    results = run(
        model=args.model,
        dataset=args.dataset,
        config_file_list=args.config_files,
        cmd_overrides=overrides,
        results_path=args.results,
        resume=args.resume,
    )
    print(summary_table(results))
    print(f"  wall time of this command: {time() - started:.1f}s")
    return results
