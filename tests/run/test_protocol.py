"""One protocol for every model: the history masks reach RecBole's built-ins, auto decides from the data."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import build_data, tiny_overrides, write_tiny_dataset

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.run.prepare import build_model
from ur4rec_recbole.run.protocol import EVALUATION_KEYS, HistoryMaskedCE, same_evaluation
from ur4rec_recbole.serve import Recommender
from ur4rec_recbole.run.single import run


def without_repeats(user, rows):
    """An ``edit`` for :func:`write_tiny_dataset`: each user's items all different (no repeat anywhere)."""
    for step, row in enumerate(rows):
        row[0] = 1 + (user + 3 * step) % 40
    return rows[:13]


@pytest.fixture
def unique_tiny(tmp_path):
    root = write_tiny_dataset(tmp_path / "unique", edit=without_repeats)  # beside tiny's data/, not over it
    return root, tiny_overrides(root, tmp_path / "unique")


def built(overrides: dict, model: str = "SASRec", **extra):
    config, dataset, train, valid, test = build_data({**overrides, **{k: str(v) for k, v in extra.items()}}, model=model)
    return config, build_model(config, train._dataset), test


def test_a_history_item_scores_minus_inf_for_a_builtin_model(tiny):
    config, net, test = built(tiny[1], exclude_history=True)
    net.eval()
    for interaction, *_ in test:
        item_seq = interaction["item_id_list"]  # [B, L]
        scores = net.full_sort_predict(interaction)  # [B, N]
        held = torch.zeros_like(scores, dtype=torch.bool).scatter(1, item_seq, True)
        held[:, 0] = False
        assert held.any() and torch.isneginf(scores[held]).all()
        assert torch.isfinite(scores[~held][1:]).all()  # nothing else is masked
        one = interaction["item_id_list"][:, :1].squeeze(1)  # a history item, scored pointwise
        interaction.update(type(interaction)({"item_id": one}))
        assert torch.isneginf(net.predict(interaction)).all()
    assert net.protocol["exclude_history"] is True and net.protocol["masks_set_as"]["exclude_history"] is True


def test_without_the_mask_a_builtin_model_scores_its_history(tiny):
    _, net, test = built(tiny[1], exclude_history=False)
    interaction = next(iter(test))[0]
    assert torch.isfinite(net.eval().full_sort_predict(interaction)[:, 1:]).all()


def test_a_history_item_is_never_served_by_a_builtin_model(tiny, tmp_path):
    results = run("SASRec", "tiny", cmd_overrides={**tiny[1], "exclude_history": "True"})
    rec = Recommender.load(results["checkpoint"])
    history = ["i1", "i2", "i3", "i4", "i5", "i7"]  # within MAX_ITEM_LIST_LENGTH=6
    served = [item.item for item in rec.recommend(history=history, k=40, exclude_history=False).items]
    assert served and not set(served) & set(history)
    unmasked = run("SASRec", "tiny", cmd_overrides={**tiny[1], "exclude_history": "False"})
    served = [item.item for item in Recommender.load(unmasked["checkpoint"]).recommend(
        history=history, k=40, exclude_history=False).items]
    assert set(served) & set(history)  # the same model unmasked does rank them


@pytest.mark.parametrize("model,setting,message", [
    ("BERT4Rec", "train_exclude_history", r"setting train_exclude_history=True: BERT4Rec's loss is not a softmax"),
    ("Pop", "exclude_history", r"setting exclude_history=True: Pop is not a sequential model"),
])
def test_a_mask_the_model_cannot_honour_is_refused(tiny, model, setting, message):
    overrides = {k: v for k, v in tiny[1].items() if k not in ("hidden_size", "inner_size", "n_layers")}
    if model == "Pop":
        overrides.pop("MAX_ITEM_LIST_LENGTH")
    with pytest.raises(InputError, match=message):
        built(overrides, model=model, **{setting: True})


def test_auto_leaves_a_mask_off_when_the_model_cannot_honour_it(tiny, unique_tiny):
    overrides = {k: v for k, v in unique_tiny[1].items() if k != "inner_size"}
    config, net, _ = built(overrides, model="BERT4Rec")
    assert net.protocol["exclude_history"] is True and net.protocol["train_exclude_history"] is False
    assert net.protocol["masks_set_as"] == {"exclude_history": "auto", "train_exclude_history": "auto"}


@pytest.mark.parametrize("model", ["SASRec", "UR4Rec", "TransitionsTextKNN"])
def test_auto_decides_from_repeats_in_the_training_portions(tiny, unique_tiny, model, caplog):
    drop = ("hidden_size", "inner_size", "n_layers") if model == "TransitionsTextKNN" else ()
    for (root, overrides), expected in ((tiny, False), (unique_tiny, True)):
        with caplog.at_level(logging.INFO):
            config, net, _ = built({k: v for k, v in overrides.items() if k not in drop}, model=model)
        assert config["exclude_history"] is expected and config["train_exclude_history"] is expected
        assert net.protocol["exclude_history"] is expected
        said = [r.getMessage() for r in caplog.records if "=auto ->" in r.getMessage()]
        assert said and said[-1].startswith(f"exclude_history and train_exclude_history=auto -> {expected}")
        caplog.clear()


def test_a_bad_mask_value_is_refused(tiny):
    with pytest.raises(InputError, match=r"setting exclude_history='sometimes': expected True, False or auto"):
        built(tiny[1], exclude_history="sometimes")


def test_the_training_mask_takes_history_items_out_of_the_softmax():
    loss = HistoryMaskedCE()
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0, 0.5]])  # item 1 is in the history, item 3 is the target
    loss.history = torch.tensor([[1, 3, 0]])
    masked = loss(logits, torch.tensor([3]))
    expected = torch.nn.functional.cross_entropy(logits[:, [0, 2, 3, 4]], torch.tensor([2]))
    assert masked.item() == pytest.approx(expected.item())
    loss.history = torch.tensor([[1, 3, 0], [2, 0, 0]])  # not one row per sequence: refused, not ignored
    with pytest.raises(RuntimeError):
        loss(logits, torch.tensor([3]))


def test_the_builtin_training_mask_reaches_the_loss(unique_tiny):
    config, net, _ = built(unique_tiny[1], train_exclude_history=True, exclude_history=False)
    assert isinstance(net.loss_fct, HistoryMaskedCE) and net.protocol["train_exclude_history"] is True
    train = build_data({**unique_tiny[1], "train_exclude_history": "True"}, model="SASRec")[2]
    batch = next(iter(train))
    net.train()
    assert torch.isfinite(net.calculate_loss(batch))
    assert net.loss_fct.history is batch["item_id_list"]


def test_builtin_sasrec_masked_and_unmasked_differ_and_the_json_says_which(unique_tiny, tmp_path):
    records = {}
    for flag in (True, False):
        path = tmp_path / f"sasrec-{flag}.json"
        run("SASRec", "tiny", cmd_overrides={**unique_tiny[1], "exclude_history": str(flag),
                                             "train_exclude_history": "False"}, results_path=path)
        records[flag] = json.loads(path.read_text())
        assert records[flag]["protocol"]["exclude_history"] is flag
    assert records[True]["test_result"]["ndcg@10"] != records[False]["test_result"]["ndcg@10"]
    assert not same_evaluation(list(records.values()))
    assert same_evaluation([records[True], records[True]])
    assert set(EVALUATION_KEYS) <= set(records[True]["protocol"])
