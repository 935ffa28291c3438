"""The Python API in RecBole's style: run_ur4rec, load_data_and_model and Recommender from the package."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import yaml
from conftest import PROJECT_ROOT, tiny_overrides, write_tiny_dataset
from recbole.quick_start import load_data_and_model as recbole_load, run_recbole

import ur4rec_recbole
from ur4rec_recbole.registry import get_trainer

RECBOLE_KEYS = ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    root = write_tiny_dataset(tmp / "data")
    settings = {k: yaml.safe_load(v) for k, v in tiny_overrides(root, tmp).items()}  # values, as RecBole's dict
    return ur4rec_recbole.run_ur4rec(model="UR4Rec", dataset="tiny", config_dict=settings), root


def test_same_arguments_as_recbole():
    ours, theirs = inspect.signature(ur4rec_recbole.run_ur4rec), inspect.signature(run_recbole)
    assert list(ours.parameters) == list(theirs.parameters)
    assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()]
    assert list(inspect.signature(ur4rec_recbole.load_data_and_model).parameters)[0] == \
        list(inspect.signature(recbole_load).parameters)[0]


def test_run_returns_recboles_result(trained):
    result, _ = trained
    assert set(RECBOLE_KEYS) <= set(result) and set(result) - set(RECBOLE_KEYS) == {"checkpoint"}
    assert isinstance(result["test_result"], OrderedDict) and isinstance(result["best_valid_result"], OrderedDict)
    assert result["valid_score_bigger"] is True
    assert result["best_valid_score"] == pytest.approx(result["best_valid_result"]["ndcg@10"])
    assert os.path.isfile(result["checkpoint"])


def test_loaded_model_tests_as_it_was_tested(trained):
    result, _ = trained
    config, model, dataset, train_data, valid_data, test_data = ur4rec_recbole.load_data_and_model(
        result["checkpoint"])
    assert config["model"] == "UR4Rec" and config["dataset"] == "tiny" and not model.training
    assert dataset.inter_num > 0 and len(train_data) > 0 and len(valid_data) > 0
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    again = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    for metric, value in result["test_result"].items():
        assert again[metric] == pytest.approx(value, abs=1e-6), metric


def test_recommender_from_the_package(trained):
    result, _ = trained
    rec = ur4rec_recbole.Recommender.load(result["checkpoint"])
    user = rec.users()[0]
    assert len(rec.recommend(user, k=3).items) == 3


def test_importing_the_package_loads_no_model_code():
    code = ("import sys, ur4rec_recbole; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'ur4rec_recbole.run' not in sys.modules; "
            "from ur4rec_recbole import run_ur4rec, load_data_and_model, Recommender; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ur4rec_recbole.nope  # noqa: B018
