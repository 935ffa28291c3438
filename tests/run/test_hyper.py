"""--hyper: params files, hyperopt and Ray Tune choosing on validation only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import run_ur4rec
from ur4rec_recbole.config import PROPERTIES_DIR
from ur4rec_recbole.run.hyper.space import read_params
from ur4rec_recbole.run.hyper.trials import choose_best, sort_trials

POP_SETTINGS = {
    "load_col": "{'inter': ['user_id', 'item_id', 'timestamp']}",
    "epochs": "2",
    "show_progress": "False",
    "use_gpu": "False",
    "state": "WARNING",
}


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def write_planted(root: Path, valid_popular: bool, name: str = "plant") -> Path:
    """A dataset on which popularity ranking is right on validation or on test, not both.

    Users 1-12 watch the popular item i1 three times, then unique items. Users
    13-24 watch four unique items, then i1 and one more unique item: i1 is
    their validation item when ``valid_popular`` (the folder scores well on
    validation and badly on test), else their test item (the reverse).
    """
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    fresh = iter(range(2, 10_000))
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(1, 25):
        if u <= 12:
            items = ["i1"] * 3 + [f"i{next(fresh)}" for _ in range(3)]
        else:
            items = [f"i{next(fresh)}" for _ in range(4)]
            other = f"i{next(fresh)}"
            items += ["i1", other] if valid_popular else [other, "i1"]
        lines += [f"u{u}\t{item}\t{1000 * u + step}" for step, item in enumerate(items)]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def planted(tmp_path):
    """Two data folders for RecBole's Pop: one best on validation, the other best on test."""
    valid_easy = write_planted(tmp_path / "valid_easy", valid_popular=True)
    test_easy = write_planted(tmp_path / "test_easy", valid_popular=False)
    return tmp_path, str(valid_easy), str(test_easy)


def check_chosen_on_validation(out: Path, valid_easy: str, test_easy: str, n_trials: int) -> dict:
    summary = json.loads((out / "trials.json").read_text())
    trials = summary["trials"]
    assert len(trials) == n_trials and all(t["status"] == "ok" for t in trials)
    scores = [t["best_valid_score"] for t in trials]
    assert scores == sorted(scores, reverse=True)  # sorted by validation
    chosen = next(t for t in trials if t["trial"] == summary["chosen_trial"])
    planted = [t for t in trials if t["params"]["data_path"] == test_easy]
    # no trial read the test set; only the chosen one was tested, after the search
    assert all("test_result" not in t for t in trials if t is not chosen) and "ndcg@10" in chosen["test_result"]
    # the plant is real: better on test (measured here, outside the search), worse on validation ...
    # (batch 1: RecBole's Pop counts an item once per batch)
    planted_test = run_ur4rec.main(["--dataset", "plant", "--model", "Pop", f"--data_path={test_easy}",
                                    "--train_batch_size=1", *cli({**POP_SETTINGS, "checkpoint_dir": str(out / "p")})])
    planted_test = planted_test["test_result"]
    assert planted and planted_test["ndcg@10"] > chosen["test_result"]["ndcg@10"]
    assert all(t["best_valid_score"] < chosen["best_valid_score"] for t in planted)
    # ... and it is not chosen
    assert chosen["params"]["data_path"] == valid_easy and chosen is trials[0]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["data_path"] == valid_easy and best["epochs"] == 2  # typed, not "2"
    assert f"**{chosen['trial']}**" in (out / "trials.md").read_text()
    return chosen


def test_params_file_is_read_with_clear_errors(tmp_path):
    params = read_params(PROPERTIES_DIR / "hyper" / "ur4rec.hyper")
    assert {p.name for p in params} >= {"learning_rate", "retriever_weight", "fusion"}
    for text, message in [
        ("lr uniform 0.1\n", "line 1: uniform expects 2 numbers"),
        ("a choice [1]\nlr normal 0,1\n", "line 2: type 'normal' unknown"),
        ("a choice 1,2\n", "choice values must be a non-empty list"),
        ("a choice [1]\na choice [2]\n", "line 2: a is already searched"),
        ("# nothing\n", "defines no parameter"),
    ]:
        bad = tmp_path / "bad.hyper"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_params(bad)


def test_choice_ignores_test_and_failed_trials():
    trials = [
        {"trial": 0, "status": "ok", "best_valid_score": 0.2, "test_result": {"ndcg@10": 0.9}},
        {"trial": 1, "status": "ok", "best_valid_score": 0.3, "test_result": {"ndcg@10": 0.1}},
        {"trial": 2, "status": "failed"},
        {"trial": 3, "status": "stopped by ASHA", "best_valid_score": 0.5},
    ]
    assert choose_best(trials, bigger=True)["trial"] == 1
    assert choose_best(trials, bigger=False)["trial"] == 0
    assert [t["trial"] for t in sort_trials(trials, bigger=True)] == [3, 1, 0, 2]


def test_hyperopt_picks_the_best_validation_trial(planted):
    tmp, valid_easy, test_easy = planted
    space = tmp / "plant.hyper"
    space.write_text(f"data_path choice ['{test_easy}', '{valid_easy}']\ntrain_batch_size choice [1, 2]\n")
    out = tmp / "hyperopt"
    run_ur4rec.main(["--dataset", "plant", "--model", "Pop", "--hyper", str(space), "--tool", "hyperopt",
                     "--algo", "exhaustive", "--max-evals", "3", "--output", str(out), *cli(POP_SETTINGS)])
    chosen = check_chosen_on_validation(out, valid_easy, test_easy, n_trials=3)
    # best.yaml reproduces the chosen trial through --config_files
    again = run_ur4rec.main(["--dataset", "plant", "--model", "Pop", "--config_files", str(out / "best.yaml")])
    assert again["best_valid_score"] == chosen["best_valid_score"]


def test_no_test_leaves_the_test_set_unread(planted, monkeypatch):
    import ur4rec_recbole.run.hyper.search as search

    tmp, valid_easy, test_easy = planted
    space = tmp / "plant.hyper"
    space.write_text(f"data_path choice ['{test_easy}', '{valid_easy}']\n")
    monkeypatch.setattr(search, "test_saved_model", lambda *a, **k: pytest.fail("the test set was read"))
    out = tmp / "hyperopt"
    summary = run_ur4rec.main(["--dataset", "plant", "--model", "Pop", "--hyper", str(space), "--algo", "exhaustive",
                               "--no-test", "--output", str(out), "--train_batch_size=1", *cli(POP_SETTINGS)])
    chosen = next(t for t in summary["trials"] if t["trial"] == summary["chosen_trial"])
    assert chosen["params"]["data_path"] == valid_easy and chosen["test_result"] is None
    assert "not tested (--no-test)" in (out / "best.yaml").read_text()


def test_hyperopt_builds_ur4rec(tiny, tmp_path):
    _, overrides = tiny
    space = tmp_path / "ur4rec.hyper"
    space.write_text("retriever_weight choice [0.0, 0.1]\n")
    out = tmp_path / "hyperopt"
    summary = run_ur4rec.main(["--dataset", "tiny", "--hyper", str(space), "--algo", "exhaustive",
                               "--max-evals", "5", "--output", str(out), *cli(overrides)])
    assert summary["model"] == "UR4Rec" and len(summary["trials"]) == 2
    assert {t["params"]["retriever_weight"] for t in summary["trials"]} == {0.0, 0.1}


def test_ray_runs_trials_in_parallel_and_picks_on_validation(planted):
    """Both trials run to the end (ASHA's grace period exceeds the epochs)."""
    import ray

    tmp, valid_easy, test_easy = planted
    space = tmp / "plant.hyper"
    space.write_text(f"data_path choice ['{test_easy}', '{valid_easy}']\n")
    out = tmp / "ray"
    run_ur4rec.main(["--dataset", "plant", "--model", "Pop", "--hyper", str(space), "--tool", "ray",
                     "--algo", "exhaustive", "--max-evals", "2", "--cpus", "2", "--asha-grace", "3",
                     "--output", str(out), *cli({**POP_SETTINGS, "train_batch_size": 2})])
    assert not ray.is_initialized()  # the search shuts down the Ray it started
    chosen = check_chosen_on_validation(out, valid_easy, test_easy, n_trials=2)
    # trials ran this checkout's package, and reported validation after every epoch (ASHA's input)
    assert Path(chosen["package"]).parent == Path(run_ur4rec.__file__).parent / "ur4rec_recbole"
    progress = list((out / "ray" / "tune").glob("*/progress.csv"))
    assert len(progress) == 2
    for path in progress:
        rows = path.read_text().splitlines()
        assert "valid_score" in rows[0] and len(rows) == 1 + chosen["epochs_run"] + 1  # header, epochs, final


def test_asha_stops_the_trial_that_lags_on_validation(planted):
    """One trial at a time, in grid order: the planted folder reaches epoch 1 second, lags, and is stopped."""
    tmp, valid_easy, test_easy = planted
    space = tmp / "plant.hyper"
    space.write_text(f"data_path choice ['{valid_easy}', '{test_easy}']\n")
    out = tmp / "asha"
    summary = run_ur4rec.main(["--dataset", "plant", "--model", "Pop", "--hyper", str(space), "--tool", "ray",
                               "--algo", "exhaustive", "--cpus", "2", "--max-concurrent", "1", "--output", str(out),
                               *cli({**POP_SETTINGS, "train_batch_size": 2})])
    first, second = summary["trials"]
    assert first["params"]["data_path"] == valid_easy and first["status"] == "ok"
    assert second["params"]["data_path"] == test_easy and second["status"] == "stopped by ASHA"
    assert second["epochs_run"] == 1 and second["best_valid_score"] == 0.0 and "test_result" not in second
    assert summary["chosen_trial"] == first["trial"]
