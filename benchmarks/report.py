"""Markdown table of one or more ``run_ur4rec.py --results`` files.

    python benchmarks/report.py benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ur4rec_recbole.run.single import best_epoch

METRICS = ("recall@10", "ndcg@10", "mrr@10", "hit@10")


def recorded_best_epoch(results: dict) -> int | None:
    """The recorded best epoch; files written before that field get it from their epoch history."""
    if results.get("best_epoch") is not None:
        return results["best_epoch"]
    config = results["config"]
    return best_epoch(results["epoch_history"], config["valid_metric"], config["valid_metric_bigger"])


def machine(results: dict) -> str:
    where = results.get("machine")
    if not where:
        return "not recorded"
    return f"{where['cpu_count']} cores, {where['torch_threads']} torch threads"


def row(results: dict) -> str:
    valid, test = results["best_valid_result"], results["test_result"]
    cells = [
        results["model"],
        f"{valid.get('ndcg@10', float('nan')):.4f}",
        *(f"{test.get(m, float('nan')):.4f}" for m in METRICS),
        f"{results['seconds_per_epoch']:.1f}",
        str(recorded_best_epoch(results)),
        str(results["epochs_run"]),
        f"{results['total_seconds']:.0f}",
        machine(results),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    print("| model | valid NDCG@10 | test Recall@10 | test NDCG@10 | test MRR@10 | test Hit@10 "
          "| train s/epoch | best epoch | epochs run | total s | machine |")
    print("|" + "---|" * 11)
    for path in args.results:
        print(row(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
