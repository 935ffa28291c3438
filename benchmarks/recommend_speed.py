"""Serving speed of a trained checkpoint: latency at batch 1 and users per second for ``--all``.

    python run_ur4rec.py --dataset ml-100k --results saved/UR4Rec-ml-100k.json
    python benchmarks/recommend_speed.py --checkpoint saved/UR4Rec-ml-100k.json

Everything goes through :class:`~ur4rec_recbole.serve.Recommender`, as
``python -m ur4rec_recbole recommend`` does, top 10 of the whole catalogue with
seen items left out:

- latency of one ``recommend(user, k=10)`` call for known users, without and
  with ``explain=True``, and for a new user's history (its template profile
  written and encoded in the call); p50 and p99 over ``--calls`` calls after a
  warm-up;
- users per second of ``--all``: every known user, ``--batch`` per call, the
  answers written as JSONL (to a temporary file), without and with explanations;
- the time ``Recommender.load`` takes (configuration, dataset, fingerprint check).

Writes ``benchmarks/results/recommend-speed-<dataset>.json`` and a markdown table
next to it; the machine is described in both. Timings are only comparable when
nothing else runs on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np

from ur4rec_recbole.io import machine, write_result_files
from ur4rec_recbole.serve import Recommender, write_recommendations

TOP_K = 10


def latencies(call, requests: list, calls: int, warmup: int) -> dict:
    """p50/p99 milliseconds of ``call(request)`` over ``calls`` requests (cycling), after ``warmup`` calls."""
    times = []
    for i in range(warmup + calls):
        request = requests[i % len(requests)]
        start = perf_counter()
        call(request)
        if i >= warmup:
            times.append(perf_counter() - start)
    ms = 1000 * np.asarray(times)
    return {"calls": len(times), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def throughput(rec: Recommender, explain: bool, batch: int) -> dict:
    """Users per second of ``--all``: every known user scored and written as JSONL."""
    users = rec.users()
    with tempfile.TemporaryDirectory() as folder:
        start = perf_counter()
        write_recommendations(Path(folder) / "recs.jsonl",
                              rec.iter_recommendations(users, k=TOP_K, explain=explain, batch_size=batch))
        seconds = perf_counter() - start
    return {"users": len(users), "batch": batch, "seconds": seconds, "users_per_second": len(users) / seconds}


def markdown(result: dict) -> str:
    where = result["machine"]
    rows = result["latency"]
    lines = [
        f"Serving {result['model']} on {result['dataset']} ({result['items']} items, top {TOP_K}, seen items "
        f"left out; {where['cpu_count']} cores, {where['torch_threads']} torch threads, "
        f"GPU: {where['cuda'] or 'none'}); loading the checkpoint took {result['load_seconds']:.1f} s:",
        "",
        "| request (batch 1) | calls | p50 ms | p99 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {r['calls']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |" for name, r in rows.items()]
    lines += ["", "| `--all` (every known user, JSONL) | users | batch | seconds | users/s |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['users']} | {r['batch']} | {r['seconds']:.2f} | {r['users_per_second']:.0f} |"
              for name, r in result["all_users"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint, or the --results JSON of its run")
    parser.add_argument("--calls", type=int, default=500, help="timed batch-1 calls per row")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256, help="users per call for --all")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default benchmarks/results/recommend-speed-<dataset>.json); .md beside it")
    args = parser.parse_args(argv)
    start = perf_counter()
    rec = Recommender.load(args.checkpoint)
    load_seconds = perf_counter() - start
    users = rec.users()
    rng = np.random.default_rng(0)
    histories = [[str(rec.catalogue.item_tokens[i]) for i in rec.catalogue.histories[rec.catalogue.user_ids[u]]]
                 for u in rng.choice(users, size=min(100, len(users)), replace=False)]
    rec.recommend(history=histories[0], k=TOP_K)  # loads the sentence encoder once, outside the timings
    latency = {
        "known user": latencies(lambda u: rec.recommend(u, k=TOP_K), users, args.calls, args.warmup),
        "known user, explain": latencies(lambda u: rec.recommend(u, k=TOP_K, explain=True), users, args.calls,
                                         args.warmup),
        "new user's history (profile written and encoded)": latencies(
            lambda h: rec.recommend(history=h, k=TOP_K), histories, args.calls, args.warmup),
    }
    all_users = {"scores": throughput(rec, False, args.batch), "scores and explanations": throughput(rec, True, args.batch)}
    result = {"command": " ".join(["python", *sys.argv]), "checkpoint": str(args.checkpoint),
              "model": rec.config["model"], "dataset": rec.config["dataset"], "items": len(rec.catalogue.item_ids),
              "machine": machine(), "load_seconds": load_seconds, "latency": latency, "all_users": all_users}
    output = args.output or Path(__file__).parent / "results" / f"recommend-speed-{rec.config['dataset']}.json"
    write_result_files(output, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
