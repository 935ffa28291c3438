"""Kept results: summaries and compressed per-user arrays stand in for the raw per-run records.

The committed ``benchmarks/results/compare-*/per_user.json.gz`` must give back every p-value of its
``benchmark.json`` (overall and per bucket), and the tracked results stay small and free of ``runs/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ur4rec_recbole.run.compare import report

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
KEPT = sorted(RESULTS.glob("*/" + report.PER_USER_FILE))
MAX_TRACKED_BYTES = 5 * 1024 * 1024


def record(label, seed, ndcg, bucket=("1-4", ">=20", ">=20"), users=(1, 2, 3)):
    return {"label": label, "seed": seed, "status": "ok",
            "per_user_test": {"user_id": list(users), "item_id": [7, 8, 9], "train_count": [2, 30, 40],
                              "bucket": list(bucket), "cold": [False] * 3,
                              "ndcg@10": list(ndcg), "recall@10": [float(v > 0) for v in ndcg]}}


def test_per_user_file_round_trips_what_the_paired_test_reads(tmp_path):
    records = [record("A", 2020, [0.5, 0.0, 1.0]), record("A", 2021, [0.3, 0.2, 1.0]),
               record("B", 2020, [0.1, 0.0, 0.5]), record("B", 2021, [0.0, 0.1, 0.6]),
               {"label": "C", "seed": 2020, "status": "failed", "error": "x"}]
    path = tmp_path / report.PER_USER_FILE
    report.write_per_user(path, records)
    back = report.read_per_user(path)
    assert set(back) == {"A", "B"} and set(back["A"]) == {2020, 2021}
    assert back["B"][2021]["per_user_test"] == records[3]["per_user_test"]
    by = {label: {r["seed"]: r for r in records if r["label"] == label} for label in ("A", "B")}
    assert report.paired_test(back["A"], back["B"]) == report.paired_test(by["A"], by["B"])
    first = path.read_bytes()
    report.write_per_user(path, records)
    assert path.read_bytes() == first  # no timestamp in the gzip header: rewriting changes nothing


def test_a_run_with_other_users_keeps_its_own(tmp_path):
    records = [record("A", 2020, [0.5, 0.0, 1.0]), record("B", 2020, [0.1, 0.0, 0.5], users=(4, 5, 6))]
    report.write_per_user(tmp_path / "p.json.gz", records)
    assert report.read_per_user(tmp_path / "p.json.gz")["B"][2020]["per_user_test"]["user_id"] == [4, 5, 6]


@pytest.mark.parametrize("path", KEPT, ids=lambda p: p.parent.name)
def test_committed_per_user_arrays_reproduce_the_reported_p_values(path):
    bench = json.loads((path.parent / "benchmark.json").read_text())
    runs = report.read_per_user(path)
    base = bench["baseline"]
    checked = 0
    for model in bench["models"][1:]:
        if not model["n_ok"]:  # a partial table's row with no finished run: nothing to test, nothing kept
            assert model[f"vs {base}"] is None and model["label"] not in runs
            checked += 1
            continue
        want = model[f"vs {base}"]
        got = report.paired_test(runs[base], runs[model["label"]])
        assert got["wilcoxon_p"] == pytest.approx(want["wilcoxon_p"], rel=1e-9, abs=0)
        assert got["n_users"] == want["n_users"]
        for group, entry in model.get("buckets", {}).items():  # round one's file has none
            if entry.get(f"vs {base}"):
                assert report.paired_test(runs[base], runs[model["label"]], group)["wilcoxon_p"] == pytest.approx(
                    entry[f"vs {base}"]["wilcoxon_p"], rel=1e-9, nan_ok=True)
        checked += 1
    assert checked == len(bench["models"]) - 1


def tracked_results() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "benchmarks/results"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / name for name in out.stdout.decode().split("\0") if name]


def test_tracked_results_are_summaries_under_5_mb():
    files = tracked_results()
    assert files and not [f for f in files if "/runs/" in f.as_posix()]
    assert sum(f.stat().st_size for f in files if f.exists()) <= MAX_TRACKED_BYTES
    assert KEPT, "no per_user.json.gz kept"
