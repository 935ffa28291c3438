"""--compare: the three files, per-user metrics, failures, reruns and the shared split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import build_data, fails_clearly, without_backbone_settings
from scipy import stats

import run_ur4rec
from ur4rec_recbole.io import write_json
from ur4rec_recbole.run.compare.runner import run_stem, seeds_for
from ur4rec_recbole.run.compare.spec import parse_spec, parse_specs


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def test_specs_split_on_top_level_commas():
    specs = parse_specs("UR4Rec, UR4Rec[retriever_weight=0;fusion=none],SASRec[topk=[10,20]]")
    assert [s.label for s in specs] == ["UR4Rec", "UR4Rec[retriever_weight=0;fusion=none]", "SASRec[topk=[10,20]]"]
    assert specs[1].overrides == {"retriever_weight": "0", "fusion": "none"}
    assert specs[2].model == "SASRec" and specs[2].overrides == {"topk": "[10,20]"}
    assert seeds_for(3) == [2020, 2021, 2022]


@pytest.mark.parametrize("bad, message", [
    ("UR4Rec[retriever_weight]", "is not key=value"),
    ("UR4Rec[a=1", "expected MODEL or MODEL"),
    ("UR4Rec[a=1;a=2]", "a given twice"),
    ("[a=1]", "must start with a model name"),
    ("UR4Rec x", "expected MODEL or MODEL"),
])
def test_bad_specs_fail_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(bad)
    with pytest.raises(ValueError, match="more than once"):
        parse_specs("SASRec,SASRec")
    with pytest.raises(ValueError, match="unclosed bracket"):
        parse_specs("UR4Rec[a=1,SASRec")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """UR4Rec and a small SASRec, two seeds each, on the tiny data, through the command line."""
    from conftest import tiny_overrides, write_tiny_dataset

    tmp = tmp_path_factory.mktemp("compare")
    root = write_tiny_dataset(tmp / "data")
    overrides = tiny_overrides(root, tmp, epochs=2, metric_decimal_place=8)
    out = tmp / "bench"
    argv = ["--dataset", "tiny", "--compare", "UR4Rec,SASRec[n_layers=1]", "--seeds", "2",
            "--output", str(out), *cli(overrides)]
    bench = run_ur4rec.main(argv)
    return argv, out, bench, overrides


def test_compare_writes_three_consistent_files(compared):
    _, out, bench, _ = compared
    assert json.loads((out / "benchmark.json").read_text()) == json.loads(json.dumps(bench))
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "benchmark.md").read_text()
    assert [m["label"] for m in bench["models"]] == ["UR4Rec", "SASRec[n_layers=1]"]
    for entry in bench["models"]:
        assert entry["n_ok"] == 2 and [r["seed"] for r in entry["runs"]] == [2020, 2021]
        tests = [r["test_result"]["ndcg@10"] for r in entry["runs"]]
        summary = entry["summary"]["test ndcg@10"]
        assert summary["mean"] == pytest.approx(np.mean(tests)) and summary["std"] == pytest.approx(np.std(tests, ddof=1))
        assert f"{summary['mean']:.4f} ± {summary['std']:.4f}" in table
        assert {"test recall@20", "test hit@20", "seconds_per_epoch", "best_epoch"} <= set(entry["summary"])
        assert all(r["config"]["seed"] == r["seed"] for r in entry["runs"])
    assert "Wilcoxon" in table and bench["models"][0]["vs UR4Rec"] is None


def test_per_user_ndcg_matches_recbole_and_feeds_the_paired_test(compared):
    _, out, bench, _ = compared
    runs = {}
    for label in ("UR4Rec", "SASRec[n_layers=1]"):
        for seed in (2020, 2021):
            record = json.loads((out / "runs" / f"{run_stem(label, seed)}.json").read_text())
            per_user = record["per_user_test"]
            # the mean of our per-user values is RecBole's reported test NDCG@10
            assert np.mean(per_user["ndcg@10"]) == pytest.approx(record["test_result"]["ndcg@10"], abs=1e-6)
            runs[label, seed] = dict(zip(per_user["user_id"], per_user["ndcg@10"]))
    # the same test users for every model and seed
    assert len({tuple(sorted(r)) for r in runs.values()}) == 1
    users = sorted(runs["UR4Rec", 2020])
    base = np.mean([[runs["UR4Rec", s][u] for u in users] for s in (2020, 2021)], axis=0)
    other = np.mean([[runs["SASRec[n_layers=1]", s][u] for u in users] for s in (2020, 2021)], axis=0)
    vs = bench["models"][1]["vs UR4Rec"]
    assert vs["n_users"] == len(users) and vs["seeds"] == [2020, 2021]
    assert vs["wilcoxon_p"] == pytest.approx(stats.wilcoxon(other, base).pvalue)
    assert vs["relative_change"] == pytest.approx((other.mean() - base.mean()) / base.mean())


def test_buckets_are_reported_and_tested_per_bucket(compared):
    _, out, bench, _ = compared
    records = {(label, seed): json.loads((out / "runs" / f"{run_stem(label, seed)}.json").read_text())
               for label in ("UR4Rec", "SASRec[n_layers=1]") for seed in (2020, 2021)}
    for record in records.values():
        per_user = record["per_user_test"]
        assert np.mean(per_user["recall@10"]) == pytest.approx(record["test_result"]["recall@10"], abs=1e-6)
        assert sum(b["users"] for b in record["test_buckets"].values()) == len(per_user["user_id"])
    table = (out / "benchmark.md").read_text()
    assert "## By the target item's training frequency" in table
    other = bench["models"][1]
    for bucket, entry in other["buckets"].items():
        assert f"| `SASRec[n_layers=1]` | {bucket} | {entry['users']} |" in table
        if entry["users"] < 2:
            continue
        per_seed = {}
        for (label, seed), record in records.items():
            per_user = record["per_user_test"]
            per_seed[label, seed] = {u: v for u, v, b in zip(per_user["user_id"], per_user["ndcg@10"],
                                                            per_user["bucket"]) if b == bucket}
        users = sorted(per_seed["UR4Rec", 2020])
        base = np.mean([[per_seed["UR4Rec", s][u] for u in users] for s in (2020, 2021)], axis=0)
        mine = np.mean([[per_seed["SASRec[n_layers=1]", s][u] for u in users] for s in (2020, 2021)], axis=0)
        vs = entry["vs UR4Rec"]
        assert vs["n_users"] == len(users) == entry["users"]
        if np.any(base != mine):
            assert vs["wilcoxon_p"] == pytest.approx(stats.wilcoxon(mine, base).pvalue)
        mean = np.mean([records["SASRec[n_layers=1]", s]["test_buckets"][bucket]["ndcg@10"] for s in (2020, 2021)])
        assert entry["test ndcg@10"]["mean"] == pytest.approx(mean)


def test_rerun_skips_finished_runs(compared):
    argv, out, bench, _ = compared
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    again = run_ur4rec.main([*argv, "--state=WARNING"])  # a display setting changes no result
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps
    assert again["models"][1]["runs"] == bench["models"][1]["runs"]
    run_ur4rec.main([*argv, "--hidden_dropout_prob=0.3"])  # another setting: every run is run again
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in (out / "runs").glob("*.json"))


def test_a_run_made_under_other_defaults_is_run_again(tiny, tmp_path, capsys):
    _, overrides = tiny
    out = tmp_path / "bench"
    argv = ["--dataset", "tiny", "--compare", "UR4Rec", "--output", str(out), *cli({**overrides, "epochs": "1"})]
    run_ur4rec.main(argv)
    path = out / "runs" / f"{run_stem('UR4Rec', 2020)}.json"
    record = json.loads(path.read_text())
    record["config"]["data_path"] = "/elsewhere/tiny"  # another clone: where it ran is not what it computed
    write_json(path, record)
    stamp = path.stat().st_mtime_ns
    run_ur4rec.main(argv)
    assert path.stat().st_mtime_ns == stamp  # reused
    capsys.readouterr()
    # the same command line, but the run was made when a default differed and before a setting existed
    record["config"]["unseen_item_scale"] = 0.5
    del record["config"]["unseen_item_training"]
    write_json(path, record)
    stamp = path.stat().st_mtime_ns
    run_ur4rec.main(argv)
    assert path.stat().st_mtime_ns != stamp  # run again
    said = capsys.readouterr()
    assert "made under other settings (unseen_item_scale, unseen_item_training" in said.out + said.err
    assert json.loads(path.read_text())["config"]["unseen_item_scale"] == 0.7


def test_failing_model_is_reported_and_the_others_finish(tiny, tmp_path):
    _, overrides = tiny
    out = tmp_path / "bench"
    bad = "UR4Rec[item_text_fields=['title','plot']]"  # settings are valid; the data lack the column (found in the run)
    argv = ["--dataset", "tiny", "--compare", f"UR4Rec,{bad}", "--output", str(out), *cli(overrides)]
    bench = run_ur4rec.main(argv)
    ok, failed = bench["models"]
    assert ok["n_ok"] == 1 and failed["n_ok"] == 0 and failed["n_failed"] == 1
    assert "item_text_fields names 'plot'" in failed["runs"][0]["error"]
    table = (out / "benchmark.md").read_text()
    assert f"| `{bad}` | 0/1 | failed |" in table and "item_text_fields names 'plot'" in table
    record = json.loads((out / "runs" / f"{run_stem(bad, 2020)}.json").read_text())
    assert record["status"] == "failed" and "Traceback" in record["traceback"]
    # a rerun keeps the finished run and tries the failed one again
    ok_file = out / "runs" / f"{run_stem('UR4Rec', 2020)}.json"
    stamp = ok_file.stat().st_mtime_ns
    run_ur4rec.main(argv)
    assert ok_file.stat().st_mtime_ns == stamp


def test_seed_is_not_set_twice(tiny, tmp_path, capsys):
    _, overrides = tiny
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--compare", "SASRec[seed=1]", "--output",
                                                   str(tmp_path), *cli(overrides)]),
                  "seed is set in SASRec\\[seed=1\\]")


def test_split_does_not_depend_on_seed_or_model(tiny):
    _, overrides = tiny
    tests = [build_data({**overrides, "seed": seed}, model=model)[4]
             for model in ("SASRec", "UR4Rec") for seed in (2020, 2021)]
    for other in tests[1:]:
        for field in ("user_id", "item_id", "item_id_list", "item_length"):
            assert torch.equal(tests[0]._dataset.inter_feat[field], other._dataset.inter_feat[field])


@pytest.mark.parametrize("model", ["Pop", "SASRec"])
def test_per_user_ndcg_matches_recbole_in_sampled_evaluation(tiny, model):
    from ur4rec_recbole.run.single import run

    _, overrides = tiny
    mode = "{'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'uni100'}"
    settings = without_backbone_settings(overrides) if model == "Pop" else overrides
    results = run(model, "tiny", cmd_overrides={**settings, "eval_args": mode, "metric_decimal_place": 8},
                  per_user=True)
    per_user = results["per_user_test"]
    assert len(set(per_user["user_id"])) == len(per_user["user_id"]) == 24
    assert np.mean(per_user["ndcg@10"]) == pytest.approx(results["test_result"]["ndcg@10"], abs=1e-6)


def test_topk_from_a_config_file_is_kept(tiny, tmp_path):
    _, overrides = tiny
    settings = tmp_path / "settings.yaml"
    settings.write_text("topk: [5, 10]\n")
    bench = run_ur4rec.main(["--dataset", "tiny", "--compare", "Pop", "--output", str(tmp_path / "bench"),
                             "--config_files", str(settings), *cli(without_backbone_settings(overrides))])
    assert set(bench["models"][0]["runs"][0]["test_result"]) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "hit")
                                                                 for k in (5, 10)}
