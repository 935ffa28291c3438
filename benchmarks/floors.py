"""How the non-learned baselines' test NDCG@10 depends on what their definition leaves open.

    python benchmarks/floors.py --dataset amazon-office --config_files dataset/amazon-office/amazon-office.yaml \\
        --out benchmarks/results/floors-variants-amazon-office.json
    python benchmarks/floors.py --dataset ml-100k --out benchmarks/results/floors-variants-ml-100k.json

Scores come from the shipped models' own scoring (``model/baselines.py``) on
RecBole's test rows; each variant's test NDCG@10 is given as RecBole's
``torch.topk`` leaves ties with ``topk: [10]`` and with ``[10, 20]`` (what
``--compare`` asks for), as the expected value over random orders of the tied
items, and as the lowest and highest of 20 random tie orders; it also counts
the test targets that are already in the user's input sequence. Variants: the
sum's per-user normalisation of the transition counts (by the row's largest
count, as shipped; by the row's total; none) and ``exclude_history``.
Nothing here is chosen by these figures: the shipped definitions are the
issue's (README, "Non-learned baselines").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from recbole.data import data_preparation
from tqdm import tqdm

from ur4rec_recbole.io import machine, write_json
from ur4rec_recbole.registry import get_model
from ur4rec_recbole.run.prepare import prepare_run

K = 10
DISCOUNTS = 1.0 / np.log2(np.arange(2, K + 2))  # [K]
TIE_DRAWS = 20


def test_scores(dataset: str, config_files: list[str]) -> dict[str, np.ndarray]:
    """Score parts for every test user: raw transition counts, text similarity, history mask, targets."""
    prepared = prepare_run("TransitionsTextKNN", dataset, config_files,
                           cmd_overrides={"show_progress": "False", "state": "WARNING"})
    train, _, test = data_preparation(prepared.config, prepared.dataset)
    net = get_model("TransitionsTextKNN")(prepared.config, train._dataset)
    parts: dict[str, list] = {"counts": [], "text": [], "seen": [], "target": []}
    with torch.no_grad():
        for interaction, _, positive_u, positive_i in tqdm(test, desc="score"):
            seq, length = interaction[net.ITEM_SEQ], interaction[net.ITEM_SEQ_LEN]
            parts["counts"].append(net.transition_counts_from_last(seq, length).numpy())
            parts["text"].append(net.text_scores(seq, length).numpy())
            seen = torch.zeros(len(seq), net.n_items, dtype=torch.bool).scatter(1, seq, True)
            parts["seen"].append(seen.numpy())
            target = np.zeros(len(seq), dtype=np.int64)
            target[positive_u.numpy()] = positive_i.numpy()
            parts["target"].append(target)
    return {name: np.concatenate(values) for name, values in parts.items()}


def ndcg_by_tie_order(scores: np.ndarray, target: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Mean NDCG@10 of one target per row under several orders of tied scores."""
    scores = scores.copy()
    scores[:, 0] = -np.inf  # padding, as RecBole's evaluator
    rows = np.arange(len(target))
    mine = scores[rows, target][:, None]
    above = (scores > mine).sum(1)  # [U]
    tied = (scores == mine).sum(1) - 1  # [U] other items with the target's score
    expected = np.array([DISCOUNTS[a: min(a + t + 1, K)].sum() / (t + 1) if a < K else 0.0
                         for a, t in zip(above, tied)])
    result = {"expected over tie orders": float(expected.mean())}
    for depth in (10, 20):
        top = torch.topk(torch.from_numpy(scores), depth, dim=-1).indices[:, :K].numpy()
        result[f"torch.topk, topk [10{', 20' if depth == 20 else ''}]"] = float(
            ((top == target[:, None]) * DISCOUNTS).sum(1).mean())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(TIE_DRAWS):
        rank = above + np.floor(rng.random(len(target)) * (tied + 1)).astype(np.int64)  # uniform among the ties
        draws.append(float(np.where(rank < K, 1.0 / np.log2(np.minimum(rank, K) + 2), 0.0).mean()))
    result[f"lowest of {TIE_DRAWS} random tie orders"] = min(draws)
    result[f"highest of {TIE_DRAWS} random tie orders"] = max(draws)
    return result


def variants(parts: dict[str, np.ndarray], text_weight: float = 0.5) -> dict[str, np.ndarray]:
    """Every variant's scores ``[U, N]``."""
    counts, text, seen = parts["counts"], parts["text"], parts["seen"]
    by_max = counts / np.maximum(counts.max(1, keepdims=True), 1.0)
    by_total = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    found = {}
    for exclude in (False, True):
        for name, scores in (("Transitions", by_max),
                             ("TextKNN", text),
                             ("TransitionsTextKNN (counts / row max)", by_max + text_weight * text),
                             ("sum with counts / row total", by_total + text_weight * text),
                             ("sum with raw counts", counts + text_weight * text)):
            found[f"{name}, exclude_history={exclude}"] = np.where(seen, -np.inf, scores) if exclude else scores
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config_files", nargs="*", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    parts = test_scores(args.dataset, args.config_files)
    table = {name: ndcg_by_tie_order(scores, parts["target"]) for name, scores in variants(parts).items()}
    users = len(parts["target"])
    repeats = int(parts["seen"][np.arange(users), parts["target"]].sum())  # targets already in the input
    write_json(args.out, {"dataset": args.dataset, "test_users": users, "targets_in_input_sequence": repeats,
                          "k": K, "test_ndcg@10": table, "machine": machine()})
    columns = list(next(iter(table.values())))
    print(f"Test NDCG@10 on {args.dataset} ({users} users; {repeats} test targets are in their input sequence)\n")
    print("| variant | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{values[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
