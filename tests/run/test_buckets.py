"""Test metrics by the target's training frequency: users per bucket and per-bucket NDCG, checked by hand."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import build_data, raw_sequences, tiny_overrides, write_tiny_dataset, without_backbone_settings

from ur4rec_recbole.features.table import save_vector_table
from ur4rec_recbole.run.single import run

UNSEEN, HUB = 40, 1  # i40: a test target only; i1: watched over and over


def every_bucket(user: int, rows: list) -> list:
    """An ``edit`` that puts test targets in all four buckets: i40 never trained on, i1 trained on >= 20 times."""
    for row in rows:
        if row[0] == UNSEEN:
            row[0] = 5
    if user in (1, 2):
        rows[-1][0] = UNSEEN
    if 3 <= user <= 8:
        for row in rows[:4]:
            row[0] = HUB
    if user == 3:
        rows[-1][0] = HUB
    return rows


def by_hand(count: int) -> str:
    return "0" if count == 0 else "1-4" if count <= 4 else "5-19" if count <= 19 else ">=20"


def random_vectors(path: Path, tokens: list[str], seed: int) -> dict[str, np.ndarray]:
    """Gaussian vectors (no two cosines tie), written as a vector table; returns them by token."""
    vectors = np.random.default_rng(seed).normal(size=(len(tokens), 8)).astype(np.float32)
    save_vector_table(path, tokens, vectors, {})
    return dict(zip(tokens, vectors))


def test_bucket_report_equals_a_direct_computation(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", edit=every_bucket)
    raw = raw_sequences(root)
    items = sorted({i for seq in raw.values() for i in seq}, key=lambda t: int(t[1:]))
    item_vectors = random_vectors(tmp_path / "items.npz", [f"i{i}" for i in range(1, 41)], 0)
    random_vectors(tmp_path / "users.npz", sorted(raw), 1)
    overrides = without_backbone_settings(tiny_overrides(root, tmp_path, item_vector_file=tmp_path / "items.npz",
                                                         user_vector_file=tmp_path / "users.npz",
                                                         metric_decimal_place=8, exclude_history=True))
    results = run("TextKNN", "tiny", cmd_overrides=overrides, per_user=True)

    # by hand: training counts from the raw file (all but each user's last two items)
    counts = Counter(i for seq in raw.values() for i in seq[:-2])
    unit = {t: v / np.linalg.norm(v) for t, v in item_vectors.items()}
    expected = {}
    for user, seq in raw.items():
        history, target = seq[:-1], seq[-1]
        query = np.mean([unit[s] for s in history[-3:]], axis=0)
        score = {j: -np.inf if j in history[-6:] else float(unit[j] @ query) for j in items}
        rank = sum(s > score[target] for s in score.values())
        expected[user] = (1 / np.log2(rank + 2) if rank < 10 else 0.0, float(rank < 10), by_hand(counts[target]))
    assert {b for _, _, b in expected.values()} == {"0", "1-4", "5-19", ">=20"}

    # each user's values and bucket, then each bucket's users and means
    _, dataset, _, _, _ = build_data(overrides, model="TextKNN")
    tokens = dataset.field2id_token["user_id"]
    per_user = results["per_user_test"]
    got = {tokens[u]: (n, r, b) for u, n, r, b in zip(per_user["user_id"], per_user["ndcg@10"],
                                                        per_user["recall@10"], per_user["bucket"])}
    assert got.keys() == expected.keys()
    for user, (ndcg, recall, bucket) in expected.items():
        assert got[user] == (pytest.approx(ndcg, abs=1e-9), recall, bucket), user
    assert list(results["test_buckets"]) == ["0", "1-4", "5-19", ">=20"]
    for bucket, report in results["test_buckets"].items():
        members = [v for v in expected.values() if v[2] == bucket]
        assert report["users"] == len(members)
        assert report["ndcg@10"] == pytest.approx(np.mean([v[0] for v in members]), abs=1e-9)
        assert report["recall@10"] == pytest.approx(np.mean([v[1] for v in members]), abs=1e-9)
