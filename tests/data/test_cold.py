"""Cold-item protocol: exactly the chosen items leave training and every history, and nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_data, fails_clearly, without_backbone_settings

import run_ur4rec
from ur4rec_recbole.data.split import choose_cold_items
from ur4rec_recbole.run.single import run

LENGTH = 6  # MAX_ITEM_LIST_LENGTH of tiny_overrides


def rows_by_user(part) -> dict[str, list[tuple]]:
    """Each user's rows of a built part: (target, history items, history timestamps), raw tokens."""
    dataset = part._dataset
    users, items = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    feat = dataset.inter_feat
    found: dict[str, list[tuple]] = {}
    for uid, target, hist, stamps, n in zip(feat["user_id"].numpy(), feat["item_id"].numpy(),
                                           feat["item_id_list"].numpy(), feat["timestamp_list"].numpy(),
                                           feat["item_length"].numpy()):
        found.setdefault(users[uid], []).append((items[target], [items[i] for i in hist[:n]], list(stamps[:n])))
    return found


def raw_rows(root) -> dict[str, list[tuple[str, float]]]:
    """Each raw user's (item, timestamp) pairs in time order."""
    lines = [line.split("\t") for line in (root / "tiny" / "tiny.inter").read_text().splitlines()[1:]]
    rows: dict[str, list[tuple[str, float]]] = {}
    for user, item, _, stamp in sorted(lines, key=lambda r: (r[0], float(r[3]))):
        rows.setdefault(user, []).append((item, float(stamp)))
    return rows


def expected_rows(seq: list[tuple[str, float]], cold: set[str], first: int, last: int, train: bool) -> list[tuple]:
    """Rows for targets at positions first..last: the last LENGTH warm items before each as history."""
    found = []
    for p in range(first, last + 1):
        warm = [(i, t) for i, t in seq[:p] if i not in cold][-LENGTH:]
        if warm and not (train and seq[p][0] in cold):
            found.append((seq[p][0], [i for i, _ in warm], [t for _, t in warm]))
    return found


@pytest.mark.parametrize("model", ["SASRec", "UR4Rec"])
def test_cold_items_leave_training_and_histories_and_nothing_else(tiny, model):
    root, overrides = tiny
    extra = {"train_all_positions": "False"} if model == "UR4Rec" else {}
    _, dataset, train, valid, test = build_data({**overrides, **extra, "cold_items": 0.25}, model=model)
    items = dataset.field2id_token["item_id"]
    cold = {items[i] for i in dataset.cold_items}
    raw = raw_rows(root)
    assert len(cold) == 10  # a quarter of the 40 items that have interactions
    assert cold == set(choose_cold_items(np.array([f"i{i}" for i in range(1, 41)]), 0.25, 2020))
    # training portions: the user's items but the last two, minus exactly the cold items
    users = dataset.field2id_token["user_id"]
    for uid, portion in dataset.training_histories.items():
        assert [items[i] for i in portion] == [i for i, _ in raw[users[uid]][:-2] if i not in cold]
    # every row is RecBole's row for the same target, with the cold items taken out of its history
    train_rows, valid_rows, test_rows = rows_by_user(train), rows_by_user(valid), rows_by_user(test)
    for user, seq in raw.items():
        n = len(seq)
        assert train_rows.get(user, []) == expected_rows(seq, cold, 1, n - 3, train=True)
        assert valid_rows[user] == expected_rows(seq, cold, n - 2, n - 2, train=False)
        assert test_rows[user] == expected_rows(seq, cold, n - 1, n - 1, train=False)
    # the cold targets stay, and the cold items keep their knowledge text
    assert any(target in cold for rows in test_rows.values() for target, _, _ in rows)
    if model == "UR4Rec":
        assert bool(dataset.features.item_text_mask[dataset.cold_items].all())


def test_ur4rec_windows_and_baseline_counts_hold_no_cold_item(tiny):
    _, overrides = tiny
    _, dataset, train, _, _ = build_data({**overrides, "cold_items": 0.25})
    cold = torch.as_tensor(dataset.cold_items)
    overrides = without_backbone_settings(overrides)  # Transitions below
    windows = train._dataset.inter_feat
    assert not torch.isin(windows["item_id_list"], cold).any() and not torch.isin(windows["item_id"], cold).any()
    config, _, train, _, _ = build_data({**overrides, "cold_items": 0.25}, model="Transitions")
    from ur4rec_recbole.registry import get_model

    net = get_model("Transitions")(config, train._dataset)
    assert not torch.isin(net.transition_pairs, cold).any()


def test_same_cold_set_for_every_seed_and_model(tiny):
    overrides = without_backbone_settings(tiny[1])  # the same for SASRec and Transitions
    sets = [tuple(build_data({**overrides, "cold_items": 0.2, "seed": seed}, model=model)[1].cold_items)
            for model in ("SASRec", "Transitions") for seed in (2020, 2021)]
    assert len(set(sets)) == 1 and len(sets[0]) == 8
    other = build_data({**overrides, "cold_items": 0.2, "cold_items_seed": 7}, model="SASRec")[1].cold_items
    assert tuple(other) != sets[0]


def test_without_cold_items_the_rows_are_recboles(tiny):
    from recbole.data.dataset import SequentialDataset

    from ur4rec_recbole.run.prepare import prepare_run

    _, overrides = tiny
    ours = build_data(overrides, model="SASRec")[2:]
    config = prepare_run("SASRec", "tiny", cmd_overrides=overrides, build_dataset=False).config
    theirs = SequentialDataset(config).build()
    for mine, recbole in zip(ours, theirs):
        for field in recbole.inter_feat.columns:
            assert torch.equal(mine._dataset.inter_feat[field], recbole.inter_feat[field]), field


def test_cold_targets_are_reported_as_their_own_group(tiny):
    overrides = without_backbone_settings(tiny[1])
    results = run("TextKNN", "tiny", cmd_overrides={**overrides, "cold_items": 0.25}, per_user=True)
    buckets, per_user = results["test_buckets"], results["per_user_test"]
    assert list(buckets) == ["0", "1-4", "5-19", ">=20", "cold"]
    cold = [c for c in per_user["cold"] if c]
    assert buckets["cold"]["users"] == len(cold) > 0
    assert all(b == "0" for b, c in zip(per_user["bucket"], per_user["cold"]) if c)
    values = [v for v, c in zip(per_user["ndcg@10"], per_user["cold"]) if c]
    assert buckets["cold"]["ndcg@10"] == pytest.approx(np.mean(values))


@pytest.mark.parametrize("value, message", [
    ("1.0", r"setting cold_items=1.0: expected a fraction of the items in \[0, 1\)"),
    ("-0.1", r"setting cold_items=-0.1: expected a number >= 0"),
])
def test_bad_fraction_is_refused(tiny, capsys, value, message):
    _, overrides = tiny
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--model", "SASRec", f"--cold_items={value}",
                                                   *[f"--{k}={v}" for k, v in overrides.items()]]), message)


def test_models_without_sequences_are_refused_in_one_line(tiny, capsys):
    overrides = without_backbone_settings(tiny[1])
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--model", "Pop", "--cold_items=0.2",
                                                   *[f"--{k}={v}" for k, v in overrides.items()]]),
                  r"setting cold_items=0.2: Pop is not a sequential model, which cannot leave the cold items out")


def test_only_rows_without_a_warm_history_leave_evaluation(tmp_path, caplog):
    from conftest import tiny_overrides, write_tiny_dataset

    cold = choose_cold_items(np.array([f"i{i}" for i in range(1, 41)]), 0.25, 2020)
    warm = next(f"i{i}" for i in range(1, 41) if f"i{i}" not in cold)

    def all_cold_but_the_last_two(user, rows):  # user 1's training portion is cold, its validation item warm
        if user == 1:
            for k, row in enumerate(rows):
                row[0] = int(warm[1:]) if k >= len(rows) - 2 else int(cold[k % len(cold)][1:])
        return rows

    root = write_tiny_dataset(tmp_path / "data", edit=all_cold_but_the_last_two)
    overrides = tiny_overrides(root, tmp_path, cold_items=0.25)
    _, dataset, train, valid, test = build_data(overrides, model="SASRec")
    u1 = dataset.token2id("user_id", "u1")
    assert dataset.training_histories[u1].size == 0 and u1 not in train._dataset.inter_feat["user_id"]
    assert u1 not in valid._dataset.inter_feat["user_id"]  # nothing warm before its validation target
    assert len(valid._dataset) == 23 and len(test._dataset) == 24  # its test row keeps the warm validation item
    assert "1 validation and 0 test rows had only cold items" in caplog.text


def test_cold_items_are_no_training_negatives_for_ur4rec(tiny):
    """A cold item's ID embedding learns nothing from the training split: not even 'never recommend me'."""
    from ur4rec_recbole.model import UR4Rec

    config, _, train, _, _ = build_data({**tiny[1], "cold_items": "0.25", "retriever_weight": "0.5"})
    cold = torch.as_tensor(train._dataset.cold_items, dtype=torch.long)
    assert len(cold) > 0
    model = UR4Rec(config, train._dataset)
    with torch.no_grad():
        model.fusion.weight.fill_(-0.5)  # a learned weight may turn negative: the masks must still hold
    model.train()
    loss = model.calculate_loss(next(iter(train)))
    assert torch.isfinite(loss)
    loss.backward()
    grad = model.item_embedding.weight.grad
    assert grad[cold].abs().sum() == 0 and grad.abs().sum() > 0
