"""Settings derived from the data when nobody set them (config/data_rules.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_data

from ur4rec_recbole.config.data_rules import batch_rule, hidden_rule, length_rule


@pytest.mark.parametrize("lengths,expected", [([5] * 8 + [19] * 2, 20), ([242] * 10, 50), ([2] * 10, 10),
                                              ([31] * 10, 40)])
def test_the_length_is_the_90th_percentile_rounded_up_within_bounds(lengths, expected):
    assert length_rule(np.array(lengths)) == expected


def test_the_rules_reproduce_the_settings_chosen_on_validation():
    assert (hidden_rule(2420), batch_rule(20)) == (128, 256)  # amazon-office: hidden 128, batch 256
    assert (hidden_rule(1682), batch_rule(50)) == (64, 64)  # ml-100k: the package defaults


def test_unset_settings_come_from_the_data_and_given_ones_stay(tiny):
    overrides = {k: v for k, v in tiny[1].items() if k not in ("MAX_ITEM_LIST_LENGTH", "hidden_size",
                                                                "train_batch_size")}
    config = build_data(overrides)[0]
    # tiny: 8-18 items a user, less two held out: the 90th percentile is under 20; 40 items
    assert (config["MAX_ITEM_LIST_LENGTH"], config["hidden_size"], config["train_batch_size"]) == (20, 64, 256)
    config = build_data({**overrides, "hidden_size": "32", "MAX_ITEM_LIST_LENGTH": "6"})[0]
    assert (config["MAX_ITEM_LIST_LENGTH"], config["hidden_size"], config["train_batch_size"]) == (6, 32, 1024)
    sasrec = build_data(overrides, model="SASRec")[0]  # the length for every model; the backbone only for UR4Rec
    assert sasrec["MAX_ITEM_LIST_LENGTH"] == 20 and sasrec["train_batch_size"] == 2048


@pytest.mark.parametrize("model", ["SASRecF", "FDSA"])
def test_feature_aware_builtins_read_the_item_tokens_under_the_protocol(tiny, model):
    import torch

    from ur4rec_recbole.run.prepare import build_model

    overrides = {**tiny[1], "exclude_history": "True", "train_exclude_history": "True"}
    config, _, train, _, test = build_data(overrides, model=model)
    assert config["selected_features"] == ["category", "year"]  # the dataset's user_profile_fields
    net = build_model(config, train._dataset)
    assert torch.isfinite(net.calculate_loss(next(iter(train))))
    interaction = next(iter(test))[0]
    scores = net.eval().full_sort_predict(interaction).view(len(interaction), -1)  # [B, N]
    held = torch.zeros_like(scores, dtype=torch.bool).scatter(1, interaction["item_id_list"], True)
    assert torch.isneginf(scores[held]).all()
    assert net.protocol["exclude_history"] and net.protocol["train_exclude_history"]


@pytest.mark.parametrize("model", ["SASRecF", "FDSA"])
def test_feature_aware_builtins_train_save_and_test_from_their_checkpoint(tmp_path, model):
    """RecBole lists SASRecF's/FDSA's feature layer (a module) in other_parameter(); a checkpoint that
    pickled it could not be read back with weights_only=True, so the run failed at testing."""
    import torch
    import yaml
    from conftest import tiny_overrides, write_tiny_dataset

    import ur4rec_recbole

    root = write_tiny_dataset(tmp_path / "data")
    settings = {k: yaml.safe_load(v) for k, v in tiny_overrides(root, tmp_path).items()
                if k not in ("hidden_size", "inner_size", "n_layers")}  # UR4Rec's; the built-in's defaults
    result = ur4rec_recbole.run_ur4rec(model=model, dataset="tiny", config_dict={**settings, "epochs": 1})
    assert "ndcg@10" in result["test_result"]
    state = torch.load(result["checkpoint"], map_location="cpu", weights_only=True)  # no code needed to read it
    assert state["other_parameter"] == {}
