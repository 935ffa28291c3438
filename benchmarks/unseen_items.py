"""Choose how unseen items score, on validation only: one trained checkpoint, a grid of settings.

    python benchmarks/unseen_items.py --checkpoint CHECKPOINT_OR_RESULTS_JSON \
        --neighbours 1 2 3 --scales 0.5 0.6 0.7 0.8 1.0 [--offsets 0 0.25 0.5] \
        --output benchmarks/results/unseen-items-NAME.json

Training never reads the borrowed rows nor the offset (``ur4rec_recbole/model/unseen.py``),
so one trained model serves every ``unseen_item_neighbours``, ``unseen_item_scale``
and ``unseen_item_offset``: the script loads the checkpoint's weights, and for each
setting (and with borrowing off) evaluates the validation split exactly as
RecBole's evaluator does: NDCG@10 over all targets, and per bucket of the
target's training frequency (with ``cold`` under the cold-item protocol).
The chosen setting has the best validation NDCG@10 over all targets (the first
of equal ones, in the table's order: offsets outermost). The test split is
never read. Writes the JSON and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from recbole.data import data_preparation
from tqdm import tqdm

from ur4rec_recbole.io import machine, write_result_files
from ur4rec_recbole.registry import get_trainer
from ur4rec_recbole.run.metrics import bucket_report, per_user_metrics, target_groups, training_counts
from ur4rec_recbole.run.prepare import build_model, prepare_run
from ur4rec_recbole.serve.loading import checkpoint_path, settings_from
from ur4rec_recbole.training.trainer import read_checkpoint


def markdown(result: dict) -> str:
    groups = [g for g in result["grid"][0]["valid_buckets"]]
    lines = [f"Unseen items on validation, {result['model']} on {result['dataset']} "
             f"({result['unseen_items']} items without training interactions): validation NDCG@10",
             "", "| neighbours | scale | offset | all | " + " | ".join(f"bucket {g}" for g in groups) + " |",
             "|---|---|---|---|" + "---|" * len(groups)]
    for row in result["grid"]:
        mark = " (chosen)" if [row["neighbours"], row["scale"], row["offset"]] == result["chosen"] else ""
        lines.append(f"| {row['neighbours']}{mark} | {row['scale']} | {row['offset']} | {row['valid_ndcg@10']:.4f} | "
                     + " | ".join("–" if row["valid_buckets"][g] is None else f"{row['valid_buckets'][g]:.4f}"
                                for g in groups) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a UR4Rec checkpoint, or the --results JSON of its run")
    parser.add_argument("--neighbours", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 1.0])
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0],
                        help="unseen_item_offset values (added to those items' ranking score)")
    parser.add_argument("--output", type=Path, required=True, help="JSON path; the .md table is written beside it")
    args = parser.parse_args(argv)
    checkpoint = checkpoint_path(args.checkpoint)
    state = read_checkpoint(checkpoint, "cpu")
    settings = {**settings_from(state["config"]), "use_gpu": False, "state": "WARNING", "show_progress": False}
    prepared = prepare_run(state["config"]["model"], state["config"]["dataset"], config_dict=settings)
    config = prepared.config
    train, valid, _ = data_preparation(config, prepared.dataset)  # the test loader is never iterated
    model = build_model(config, train._dataset)
    model.load_state_dict(state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    counts = training_counts(train._dataset)
    cold = np.asarray(getattr(train._dataset, "cold_items", []))
    shipped = model.unseen_items  # the model's own rule for which items borrow

    grid = []
    # offsets outermost: on equal NDCG@10 the first offset listed wins
    settings = [(0.0, 0, 0.0), *itertools.product(args.offsets, args.neighbours, args.scales)]
    for offset, neighbours, scale in tqdm(settings, desc="settings"):
        model.unseen_items, model.unseen_offset = shipped.with_settings(neighbours, scale), offset
        overall = trainer.evaluate(valid, load_best_model=False, show_progress=False)
        users = per_user_metrics(trainer, valid)
        users.update(target_groups(users["item_id"], counts, cold))
        buckets = bucket_report(users, with_cold=len(cold) > 0)
        grid.append({"neighbours": neighbours, "scale": scale, "offset": offset,
                     "valid_ndcg@10": float(overall["ndcg@10"]),
                     "valid_buckets": {g: v["ndcg@10"] for g, v in buckets.items()},  # None: no user
                     "valid_bucket_users": {g: int(v["users"]) for g, v in buckets.items()}})
    best = max(grid, key=lambda row: row["valid_ndcg@10"])  # max keeps the first of equal values
    result = {"command": " ".join(["python", *sys.argv]), "checkpoint": str(args.checkpoint),
              "model": config["model"], "dataset": config["dataset"], "unseen_items": int(shipped.unseen.sum()),
              "chosen": [best["neighbours"], best["scale"], best["offset"]], "machine": machine(), "grid": grid}
    write_result_files(args.output, result, markdown(result))
    return result


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
