"""Config: properties/ as defaults, explicit overrides only, one data root for every dataset."""

from __future__ import annotations

import sys

import pytest

import os

from ur4rec_recbole.config import DEFAULT_DATA_ROOT, Config
from ur4rec_recbole.data.reading import ensure_atomic_files
from ur4rec_recbole.registry import get_model


def test_properties_are_defaults_and_files_override_them(tmp_path):
    config = Config("UR4Rec", "ml-100k", cmd_overrides={"data_path": str(tmp_path)})
    assert config["fusion"] == "weighted" and config["valid_metric"] == "NDCG@10"
    assert config["item_text_fields"] == ["movie_title", "release_year", "class"]
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["eval_args"]["order"] == "TO"
    mine = tmp_path / "mine.yaml"
    mine.write_text("fusion: gate\nn_proxies: 2\n")
    config = Config("UR4Rec", "ml-100k", config_file_list=[str(mine)], cmd_overrides={"n_proxies": "3"})
    assert config["fusion"] == "gate" and config["n_proxies"] == 3


def test_sys_argv_is_not_read(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=3", "--fusion=rank"])
    config = Config("UR4Rec", "ml-100k")
    assert config["epochs"] != 3 and config["fusion"] == "weighted"


def test_builtin_models_share_the_overall_settings():
    config = Config("SASRec", "ml-100k")
    assert config["valid_metric"] == "NDCG@10" and config["train_neg_sample_args"]["distribution"] == "none"
    assert config["data_path"] == os.path.join(os.path.abspath(DEFAULT_DATA_ROOT), "ml-100k")  # like RecBole: cwd
    assert get_model("SASRec").__module__.startswith("recbole.")
    assert get_model("UR4Rec").__module__.startswith("ur4rec_recbole.")


def test_ml100k_files_are_copied_out_of_the_wheel(tmp_path):
    config = Config("SASRec", "ml-100k", cmd_overrides={"data_path": str(tmp_path)})
    assert config["data_path"] == str(tmp_path / "ml-100k")
    ensure_atomic_files(config)
    assert sorted(p.name for p in (tmp_path / "ml-100k").iterdir()) == [
        "ml-100k.inter", "ml-100k.item", "ml-100k.user"]


def test_unknown_dataset_folder_is_a_clear_error(tmp_path):
    config = Config("SASRec", "mine", cmd_overrides={"data_path": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=r"mine\.inter not found.*--data_path=DIR"):
        ensure_atomic_files(config)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'NoSuchModel': --model takes UR4Rec, .* or a RecBole model"):
        Config("NoSuchModel", "ml-100k")
