"""End to end through run_ur4rec.py: results file, built-in models, checkpoints."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from conftest import build_data, fails_clearly

import run_ur4rec
from ur4rec_recbole.run.single import summary_table
from ur4rec_recbole.training.trainer import UR4RecTrainer
from ur4rec_recbole.registry import get_model, get_trainer


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


@pytest.fixture
def finished(tiny, tmp_path):
    """One epoch of UR4Rec on the tiny data through the command line."""
    _, overrides = tiny
    out = tmp_path / "results.json"
    results = run_ur4rec.main(["--dataset", "tiny", "--results", str(out), *cli(overrides)])
    return overrides, out, results


def test_one_epoch_end_to_end_writes_results(finished):
    _, out, results = finished
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert {"model", "dataset", "seed", "best_valid_result", "test_result", "train_seconds", "config"} <= set(saved)
    assert saved["model"] == "UR4Rec" and saved["dataset"] == "tiny" and saved["seed"] == 2020
    assert set(saved["test_result"]) == {"recall@10", "mrr@10", "ndcg@10", "hit@10"}
    assert saved["config"]["fusion"] == "weighted" and saved["epochs_run"] == 1
    printed = summary_table(results)
    assert "test       recall@10=" in printed and "s/epoch" in printed


def test_checkpoint_loads_safely_and_reproduces_test(finished):
    overrides, _, results = finished
    state = torch.load(results["checkpoint"], weights_only=True)  # safe loading stays on
    assert state["config"]["model"] == "UR4Rec" and "item_text" in state["state_dict"]
    config, _, train, _, test = build_data(overrides)
    model = get_model("UR4Rec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "UR4Rec")(config, model)
    again = trainer.evaluate(test, model_file=results["checkpoint"])
    assert dict(again) == results["test_result"]


def test_resume_continues_after_the_saved_epoch(finished, tmp_path):
    overrides, _, results = finished
    out = tmp_path / "resumed.json"
    run_ur4rec.main(["--dataset", "tiny", "--resume", results["checkpoint"], "--results", str(out),
                     *cli({**overrides, "epochs": 2})])
    resumed = json.loads(out.read_text())
    assert [e["epoch"] for e in resumed["epoch_history"]] == [1]


def test_sampled_run_resumes_with_its_lazy_adam_and_refuses_a_dense_resume(tiny, tmp_path, capsys):
    _, overrides = tiny
    sampled = {**overrides, "train_negatives": "uniform", "train_negatives_count": 8}
    first = run_ur4rec.main(["--dataset", "tiny", *cli(sampled)])
    state = torch.load(first["checkpoint"], weights_only=True)
    assert set(state["optimizer"]) == {"dense", "sparse"} and state["optimizer"]["sparse"]["state"]
    out = tmp_path / "resumed.json"
    run_ur4rec.main(["--dataset", "tiny", "--resume", first["checkpoint"], "--results", str(out),
                     *cli({**sampled, "epochs": 2})])
    assert [e["epoch"] for e in json.loads(out.read_text())["epoch_history"]] == [1]
    line = fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--resume", first["checkpoint"],
                                                          *cli({**overrides, "epochs": 2})]),
                         "train_negatives, learner and weight_decay it was trained with")
    assert first["checkpoint"] in line


def test_foreign_checkpoint_is_refused(tiny, tmp_path):
    _, overrides = tiny
    config, _, train, _, test = build_data(overrides)
    trainer = UR4RecTrainer(config, get_model("UR4Rec")(config, train._dataset))
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": object()}))
    with pytest.raises(ValueError, match="cannot be loaded with torch.load\\(weights_only=True\\)"):
        trainer.evaluate(test, model_file=str(evil))


def test_builtin_sasrec_through_the_same_path(tiny, tmp_path):
    _, overrides = tiny
    results = run_ur4rec.main(["--dataset", "tiny", "--model", "SASRec", *cli(overrides)])
    assert results["model"] == "SASRec" and "ndcg@10" in results["test_result"]
    # the same split: SASRec's test users are UR4Rec's test users
    _, _, _, _, test_sas = build_data(overrides, model="SASRec")
    _, _, _, _, test_ur = build_data(overrides)
    for field in ("user_id", "item_id", "item_id_list"):
        assert torch.equal(test_sas._dataset.inter_feat[field], test_ur._dataset.inter_feat[field])


def test_sampled_evaluation_uses_predict(tiny):
    _, overrides = tiny
    mode = "{'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'uni100'}"
    results = run_ur4rec.main(["--dataset", "tiny", *cli({**overrides, "eval_args": mode})])
    assert results["test_result"]["ndcg@10"] > 0


def test_bad_arguments_fail_clearly(capsys):
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "x", "stray"]), "unrecognised argument 'stray'")
    fails_clearly(capsys, lambda: run_ur4rec.main(["--a=1", "--a=2"]), "--a given twice")
