"""Epoch time of one training process against N data-parallel processes (RecBole's DDP), in one run.

    python benchmarks/ddp.py --dataset ml-100k                 # CPU: 1 process vs 2 (gloo)
    python benchmarks/ddp.py --dataset ml-100k --gpu --procs 1,4   # GPUs: 1 vs 4 (NCCL), as gpu.sh runs it

Each configuration trains ``--model`` for one epoch with the same global batch
(``train_batch_size``; RecBole gives each of N processes 1/N of it) and the
same seed, ``--repeats`` times, alternating, so that all see the same
background load; the median training seconds of the epoch (RecBole's
``_train_epoch``, rank 0's clock; evaluation and start-up excluded) are
compared. On the CPU the cores are split between the processes
(``torch_threads`` = cores / N), so the ratio measures what data parallelism
adds over intra-op threads on the same cores; on GPUs each process has its own.
Writes ``benchmarks/results/ddp-<dataset>[-gpu].json`` and ``.md`` beside it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
from pathlib import Path
from time import perf_counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout, also in spawned processes

from ur4rec_recbole.io import machine, write_json  # noqa: E402


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def one_run(model: str, dataset: str, procs: int, overrides: dict) -> dict:
    """One epoch with ``procs`` processes; rank 0's results."""
    from ur4rec_recbole.run.distributed import run_distributed
    from ur4rec_recbole.run.single import run

    start = perf_counter()
    if procs == 1:
        results = run(model, dataset, cmd_overrides=overrides)
    else:
        results = run_distributed(model, dataset, cmd_overrides=overrides, nproc=procs, port=free_port())
    return {"epoch_seconds": results["seconds_per_epoch"], "wall_seconds": perf_counter() - start,
            "test_ndcg@10": results["test_result"]["ndcg@10"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--model", default="UR4Rec")
    parser.add_argument("--procs", default="1,2", help="process counts to compare, the first is the baseline")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gpu", action="store_true", help="one GPU per process (NCCL)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    cores = os.cpu_count() or 1
    base = {"epochs": "1", "show_progress": "False", "state": "WARNING", "use_gpu": str(args.gpu)}
    runs: dict[int, list[dict]] = {p: [] for p in procs}
    for repeat in range(args.repeats):
        for p in procs:
            overrides = dict(base) if args.gpu else {**base, "torch_threads": str(max(1, cores // p))}
            runs[p].append(one_run(args.model, args.dataset, p, overrides))
            print(f"repeat {repeat}: {p} process(es): {runs[p][-1]}", flush=True)
    baseline = statistics.median(r["epoch_seconds"] for r in runs[procs[0]])
    rows = []
    for p in procs:
        epoch = statistics.median(r["epoch_seconds"] for r in runs[p])
        rows.append({"processes": p, "threads_per_process": None if args.gpu else max(1, cores // p),
                     "median_epoch_seconds": epoch, "speed_up": baseline / epoch, "runs": runs[p]})
    suffix = "-gpu" if args.gpu else ""
    output = Path(args.output or Path(__file__).parent / "results" / f"ddp-{args.dataset}{suffix}.json")
    report = {"command": " ".join(["python", "benchmarks/ddp.py", *sys.argv[1:]]), "model": args.model,
              "dataset": args.dataset, "device": "gpu" if args.gpu else "cpu", "cores": cores, "rows": rows,
              "machine": machine()}
    write_json(output, report)
    lines = [f"# {args.model} on {args.dataset}: one epoch, 1 process vs data-parallel ({report['device']}, "
             f"{cores} cores)", "", f"`{report['command']}`", "",
             "| processes | threads each | median epoch (s) | speed-up | runs (s) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['threads_per_process'] or '-'} | {r['median_epoch_seconds']:.1f} | "
                     f"{r['speed_up']:.2f}x | {', '.join(format(x['epoch_seconds'], '.1f') for x in r['runs'])} |")
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
