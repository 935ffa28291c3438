"""Markdown table of one or more ``run_ur4rec.py --results`` files.

    python benchmarks/report.py benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("recall@10", "ndcg@10", "mrr@10", "hit@10")


def row(results: dict) -> str:
    valid, test = results["best_valid_result"], results["test_result"]
    where = results.get("machine", {})
    cells = [
        results["model"],
        f"{valid.get('ndcg@10', float('nan')):.4f}",
        *(f"{test.get(m, float('nan')):.4f}" for m in METRICS),
        f"{results['seconds_per_epoch']:.1f}",
        str(results.get("best_epoch")),
        str(results["epochs_run"]),
        f"{results['total_seconds']:.0f}",
        f"{where.get('cpu_count', '?')} cores, {where.get('torch_threads', '?')} torch threads",
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
