"""Non-learned baselines: scores equal a direct count/similarity; one epoch; safe checkpoints; --compare."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_data, raw_sequences, without_backbone_settings

import run_ur4rec
from ur4rec_recbole.features.table import load_vector_table
from ur4rec_recbole.registry import get_model, get_trainer
from ur4rec_recbole.run.single import run

BASELINES = ("Transitions", "TextKNN", "TransitionsTextKNN")


def direct_scores(root: Path, model: str, window: int = 3, weight: float = 0.5, exclude: bool | None = None,
                  length: int = 6):
    """{raw user: {raw item: score}} for each test user, from the raw files alone.

    Training portion = the user's items minus the last two (validation, test);
    the test history = every item but the last; the model's input = its last
    ``length`` (``MAX_ITEM_LIST_LENGTH``) items.
    """
    raw = raw_sequences(root)
    counts = Counter((a, b) for seq in raw.values() for a, b in zip(seq[:-3], seq[1:-2]))
    items = sorted({i for seq in raw.values() for i in seq})
    expected = {}
    for user, seq in raw.items():
        history = seq[:-1]
        row = {j: float(counts[(history[-1], j)]) for j in items}
        top = max(row.values())
        transitions = {j: c / top if top else 0.0 for j, c in row.items()}
        if model == "Transitions":
            score = transitions
        else:  # the knowledge vectors UR4Rec reads, straight from their file
            tokens, vectors, _ = load_vector_table(root / "tiny" / "tiny.item_know.template.npz")
            unit = {t: v / np.linalg.norm(v) for t, v in zip(tokens, vectors)}
            text = {j: float(np.mean([unit[s] @ unit[j] for s in history[-window:]])) for j in items}
            score = text if model == "TextKNN" else {j: transitions[j] + weight * text[j] for j in items}
        if exclude:  # None: auto, off here (the tiny users repeat items)
            score = {j: -np.inf if j in history[-length:] else s for j, s in score.items()}
        expected[user] = score
    return expected


@pytest.mark.parametrize("model", BASELINES)
@pytest.mark.parametrize("exclude", [None, True])
def test_scores_equal_a_direct_count_and_similarity(tiny, model, exclude):
    root, overrides = tiny[0], without_backbone_settings(tiny[1])
    extra = {} if exclude is None else {"exclude_history": str(exclude)}
    config, dataset, train, _, test = build_data({**overrides, **extra}, model=model)
    net = get_model(model)(config, train._dataset)
    users, items = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    expected = direct_scores(root, model, exclude=exclude)
    checked = 0
    for interaction, _, _, _ in test:
        scores = net.full_sort_predict(interaction)  # [B, N]
        for uid, row in zip(interaction["user_id"].numpy(), scores.numpy()):
            want = expected[users[uid]]
            got = {items[i]: row[i] for i in range(1, len(items))}
            assert got.keys() == want.keys()
            for item, value in want.items():
                assert got[item] == pytest.approx(value, abs=1e-5), (users[uid], item)
            checked += 1
    assert checked == len(expected)


def test_text_window_and_weight_are_read(tiny):
    root, overrides = tiny[0], without_backbone_settings(tiny[1])
    config, dataset, train, _, test = build_data({**overrides, "text_window": 1, "text_weight": 2.0},
                                                 model="TransitionsTextKNN")
    net = get_model("TransitionsTextKNN")(config, train._dataset)
    interaction = next(iter(test))[0]
    expected = direct_scores(root, "TransitionsTextKNN", window=1, weight=2.0)
    users, items = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    row = net.full_sort_predict(interaction)[0].numpy()
    want = expected[users[int(interaction["user_id"][0])]]
    assert [row[i] for i in range(1, len(items))] == pytest.approx([want[items[i]] for i in range(1, len(items))],
                                                                    abs=1e-5)


@pytest.mark.parametrize("bad, message", [
    ({"text_window": 0}, r"setting text_window=0: expected an int >= 1"),
    ({"text_weight": -1}, r"setting text_weight=-1: expected a number >= 0"),
    ({"exclude_history": 1}, r"setting exclude_history=1: expected True, False or auto"),
])
def test_bad_settings_are_rejected_before_loading(tiny, bad, message):
    from ur4rec_recbole.config import Config

    _, overrides = tiny[0], without_backbone_settings(tiny[1])
    with pytest.raises(ValueError, match=message):
        Config("TransitionsTextKNN", "tiny", cmd_overrides={**overrides, **{k: str(v) for k, v in bad.items()}})


@pytest.mark.parametrize("model", BASELINES)
def test_one_epoch_without_training_batches_and_a_safe_checkpoint(tiny, model):
    _, overrides = tiny[0], without_backbone_settings(tiny[1])
    overrides = {**overrides, "epochs": 20, "metric_decimal_place": 8}
    results = run(model, "tiny", cmd_overrides=overrides)
    assert results["epochs_run"] == 1 and results["epoch_history"][0]["train_loss"] == 0.0
    state = torch.load(results["checkpoint"], weights_only=True)  # safe loading stays on
    assert state["config"]["model"] == model
    # the checkpoint holds the fitted state: a model whose counts and vectors are wiped scores as the run did
    config, _, train, _, test = build_data(overrides, model=model)
    net = get_model(model)(config, train._dataset)
    for buffer in net.buffers():
        buffer.zero_()
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    assert trainer.optimizer is None
    assert dict(trainer.evaluate(test, model_file=results["checkpoint"])) == results["test_result"]


def test_compare_accepts_the_baselines(tiny, tmp_path):
    _, overrides = tiny[0], without_backbone_settings(tiny[1])
    out = tmp_path / "bench"
    bench = run_ur4rec.main(["--dataset", "tiny", "--compare", ",".join(BASELINES), "--output", str(out),
                             *[f"--{k}={v}" for k, v in overrides.items()]])
    assert [m["label"] for m in bench["models"]] == list(BASELINES)
    assert all(m["n_ok"] == 1 for m in bench["models"])
    table = (out / "benchmark.md").read_text()
    assert all(f"| `{name}` | 1/1 |" in table for name in BASELINES)
    assert json.loads((out / "benchmark.json").read_text())["models"][2]["vs Transitions"]["n_users"] == 24


def test_image_knn_scores_are_image_cosines_and_need_the_image_modality(tmp_path):
    from test_images import IMAGE_SETTINGS, MISSING, image_dataset

    from ur4rec_recbole.config import Config

    data, overrides = image_dataset(tmp_path)
    overrides = {**without_backbone_settings(overrides), "exclude_history": "True"}  # the tiny data repeats items
    config, dataset, train, _, test = build_data(overrides, model="ImageKNN")
    assert get_trainer(config["MODEL_TYPE"], "ImageKNN") is get_trainer(config["MODEL_TYPE"], "TextKNN")
    net = get_model("ImageKNN")(config, train._dataset)
    tokens, vectors, _ = load_vector_table(data / "tiny" / "tiny.image_vec.npz")  # straight from the file
    unit = {t: v / np.linalg.norm(v) for t, v in zip(tokens, vectors)}
    raw = raw_sequences(data)
    users, items = dataset.field2id_token["user_id"], dataset.field2id_token["item_id"]
    interaction = next(iter(test))[0]
    row = net.full_sort_predict(interaction)[0].numpy()
    history = raw[users[int(interaction["user_id"][0])]][:-1]
    for i in range(1, len(items)):
        j = items[i]
        want = -np.inf if j in history[-6:] else float(np.mean(
            [unit[s] @ unit[j] if s in unit and j in unit else 0.0 for s in history[-3:]]))
        assert row[i] == pytest.approx(want, abs=1e-5), j
    assert MISSING not in unit  # an item without an image scores 0 against every history
    with pytest.raises(ValueError, match=r"setting modalities=\('text',\): expected image or text,image"):
        Config("ImageKNN", "tiny", cmd_overrides={**overrides, "modalities": "text"})
    assert IMAGE_SETTINGS["image_model"] == "ViT-S-32"
