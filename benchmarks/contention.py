"""Epoch time with and without one other CPU-bound process, per thread setting, in one run.

    python benchmarks/contention.py --dataset ml-100k

For each setting (torch threads and OpenMP environment; the environment must be
set before torch starts, so each setting runs in its own worker process) the
worker builds the ablation (``--retriever_weight=0 --fusion=none``, unless
``--model_settings`` says otherwise) on the dataset, warms up, then times
``--batches`` training batches ``--repeats`` times quiet and ``--repeats``
times while ``--contenders`` busy-loop processes (``while True: pass``; default one) run, alternating, so
that both see the same background. The ratio contended / quiet is the figure;
the quiet seconds of different settings compare their quiet speed.
Writes ``benchmarks/results/contention.json`` and ``.md`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from time import perf_counter

SETTINGS = {  # name -> (environment, torch_threads); an OMP_WAIT_POLICY in the environment stops the package's defaults
    "old: 2 threads, OpenMP default wait": ({"OMP_WAIT_POLICY": ""}, 2),  # empty: libgomp's default (spin)
    "before: 2 threads, PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "1 thread, PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
    # libgomp spins GOMP_SPINCOUNT times before it sleeps (PASSIVE alone: never; its default: 300000)
    "shipped: 2 threads, PASSIVE, GOMP_SPINCOUNT=1000": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"}, 2),
    "2 threads, PASSIVE, GOMP_SPINCOUNT=3000": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}, 2),
}


def worker(args: argparse.Namespace) -> dict:
    """Runs inside the worker process: time quiet and contended passes over the same batches."""
    import numpy as np
    import torch
    from recbole.data import data_preparation
    from recbole.utils import init_seed

    from ur4rec_recbole.registry import get_trainer
    from ur4rec_recbole.run.prepare import build_model, prepare_run

    overrides = {"use_gpu": "False", "state": "WARNING", "show_progress": "False",
                 "torch_threads": str(args.threads), **json.loads(args.model_settings)}
    prepared = prepare_run("UR4Rec", args.dataset, cmd_overrides=overrides)
    config = prepared.config
    train_data, _, _ = data_preparation(config, prepared.dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "UR4Rec")(config, model)
    batches = []
    for i, batch in enumerate(train_data):
        if i >= args.batches:
            break
        batches.append(batch)

    def one_pass() -> float:
        model.train()
        start = perf_counter()
        for batch in batches:
            trainer.optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            trainer.optimizer.step()
        return perf_counter() - start

    one_pass()  # warm-up
    quiet, contended = [], []
    for _ in range(args.repeats):
        quiet.append(one_pass())
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.contenders)]
        try:
            contended.append(one_pass())
        finally:
            for process in busy:
                process.kill()
                process.wait()
    return {"torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
            "batches": len(batches), "quiet_seconds": quiet, "contended_seconds": contended,
            "ratio_median": float(np.median(np.divide(contended, quiet))),
            "ratio_min": float(np.min(np.divide(contended, quiet))),
            "ratio_max": float(np.max(np.divide(contended, quiet))),
            "quiet_median": float(np.median(quiet)), "contended_median": float(np.median(contended))}


def markdown(result: dict) -> str:
    lines = [f"{result['dataset']}, {result['rows'][0]['batches']} training batches of the ablation per pass, "
             f"{result['repeats']} quiet and {result['repeats']} contended passes alternating "
             f"({result['machine']['cpu_count']} cores; contenders: {result.get('contenders', 1)} busy-loop "
             f"process{'es' if result.get('contenders', 1) > 1 else ''}):", "",
             "| setting | torch threads | OMP_WAIT_POLICY | GOMP_SPINCOUNT | quiet s (median) | contended s (median) "
             "| contended / quiet (min–max) |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['torch_threads']} | {r['omp_wait_policy'] or '(unset)'} "
                     f"| {r.get('gomp_spincount') or '(unset)'} "
                     f"| {r['quiet_median']:.2f} | {r['contended_median']:.2f} "
                     f"| {r['ratio_median']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--batches", type=int, default=40, help="training batches per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", type=int, default=1, help="busy-loop processes beside a contended pass")
    parser.add_argument("--model_settings", default=json.dumps({"retriever_weight": "0", "fusion": "none"}))
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "contention.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return None

    rows = []
    for name, (env, threads) in SETTINGS.items():
        print(f"-- {name}", flush=True)
        environment = {**os.environ, **env}  # an empty OMP_WAIT_POLICY also stops the package setting PASSIVE
        command = [sys.executable, __file__, "--worker", "--dataset", args.dataset, "--batches", str(args.batches),
                   "--repeats", str(args.repeats), "--contenders", str(args.contenders),
                   "--model_settings", args.model_settings, "--threads", str(threads)]
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode or not line:
            sys.exit(f"worker for {name!r} failed:\n{done.stderr[-3000:]}")
        rows.append({"name": name, **json.loads(line[-1][7:])})
        print(rows[-1], flush=True)

    from ur4rec_recbole.io import machine, write_json, write_text

    result = {"dataset": args.dataset, "repeats": args.repeats, "contenders": args.contenders,
              "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(argv),
              "machine": machine(), "rows": rows}
    write_json(args.output, result)
    table = markdown(result)
    write_text(args.output.with_suffix(".md"), table)
    print(table)
    return result


if __name__ == "__main__":
    main()
