"""The leaderboard command: every row under one protocol, paired tests against UR4Rec, a partial run named."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("leaderboard", PROJECT_ROOT / "benchmarks" / "leaderboard.py")
leaderboard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(leaderboard)

ROWS = "UR4Rec,UniSRec,SASRec,BERT4Rec,TransitionsTextKNN"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    from conftest import tiny_overrides, write_tiny_dataset

    tmp = tmp_path_factory.mktemp("board")
    root = write_tiny_dataset(tmp / "data")
    overrides = {**tiny_overrides(root, tmp), "epochs": "1"}
    out = tmp / "board"
    argv = ["--dataset", "tiny", "--seeds", "2", "--output", str(out), "--rows", ROWS,
            *(f"--{k}={v}" for k, v in overrides.items())]
    return leaderboard.main(argv), out, argv


def test_every_row_ran_under_the_same_protocol(board):
    bench, out, _ = board
    assert [m["label"] for m in bench["models"]] == [leaderboard.ROWS[r] for r in ROWS.split(",")]
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert len(records) == 10 and all(r["status"] == "ok" for r in records)
    protocols = {json.dumps({k: r["protocol"][k] for k in ("split", "ranking", "exclude_history")}) for r in records}
    assert len(protocols) == 1 and bench["same_protocol"]
    assert "Protocol (every row, from each run's JSON)" in (out / "benchmark.md").read_text()
    bert = next(r for r in records if r["model"] == "BERT4Rec")  # its loss cannot take the training mask
    assert bert["protocol"]["train_exclude_history"] is False


def test_each_peer_is_tested_against_ur4rec_over_users_and_seeds(board):
    bench = board[0]
    for entry in bench["models"][1:]:
        vs = entry["vs UR4Rec"]
        assert vs["seeds"] == [2020, 2021] and "wilcoxon_p" in vs and "seed_ttest_p" in vs
        assert {"test ndcg@20", "test mrr@10", "seconds_per_epoch"} <= set(entry["summary"])
    assert "p (seeds, t)" in (board[1] / "benchmark.md").read_text()


def test_unmasked_rows_differ_in_protocol_and_the_report_says_so(board, tmp_path):
    bench, out, argv = board
    settings = argv[argv.index("--rows") + 2:]
    unmasked = leaderboard.main(["--dataset", "tiny", "--seeds", "1", "--output", str(tmp_path / "unmasked"),
                                 "--rows", "UR4Rec,TransitionsTextKNN", "--unmasked", *settings])
    assert unmasked["same_protocol"] and unmasked["protocol"]["exclude_history"] is False
    assert unmasked["protocol"]["masks_set_as"] == {"exclude_history": False, "train_exclude_history": False}
    masked = json.loads(next((out / "runs").glob("TransitionsTextKNN*seed2020.json")).read_text())
    assert masked["protocol"]["masks_set_as"]["exclude_history"] == "auto"


def test_an_unknown_row_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        leaderboard.main(["--dataset", "tiny", "--output", "x", "--rows", "UR4Rec,SASrec"])
    assert stop.value.code == 2 and "unknown row 'SASrec'" in capsys.readouterr().err


def test_report_only_writes_the_table_from_finished_runs_and_trains_nothing(board, tmp_path):
    """A partial table (a row with fewer seeds) is written from what finished and says what did not run."""
    import shutil

    _, out, argv = board
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (next((partial / "runs").glob("UniSRec*seed2021.json"))).unlink()  # one row lost a seed
    for run in (partial / "runs").glob("BERT4Rec*.json"):  # and one row every seed
        run.unlink()
    failed = next((partial / "runs").glob("TransitionsTextKNN*seed2021.json"))  # and one run had failed
    failed.write_text(json.dumps({**json.loads(failed.read_text()), "status": "failed", "error": "OSError: disk"}))
    before = sorted(p.name for p in (partial / "runs").iterdir())
    settings = argv[argv.index("--rows") + 2:]
    bench = leaderboard.main(["--dataset", "tiny", "--seeds", "2", "--output", str(partial), "--rows", ROWS,
                              "--report_only", *settings])
    assert sorted(p.name for p in (partial / "runs").iterdir()) == before  # nothing trained, nothing written
    unisrec = next(m for m in bench["models"] if m["model"] == "UniSRec")
    assert (unisrec["n_ok"], unisrec["n_failed"]) == (1, 1)
    assert unisrec["vs UR4Rec"]["seeds"] == [2020]
    assert {m["label"]: m["n_ok"] for m in bench["models"] if m["model"] not in ("UniSRec", "BERT4Rec")} == {
        leaderboard.ROWS[r]: 1 if r == "TransitionsTextKNN" else 2 for r in ROWS.split(",")
        if r not in ("UniSRec", "BERT4Rec")}
    text = (partial / "benchmark.md").read_text()
    assert "| `UniSRec` | 1/2 |" in text and "seed 2021: not run (report only)" in text
    assert "| `BERT4Rec` | 0/2 | not run |" in text
    assert "`TransitionsTextKNN` seed 2021: OSError: disk" in text  # a failure stays a failure


def test_every_finished_row_is_reused_bert4rec_included(board, tmp_path):
    """BERT4Rec writes field names into its config while it runs; a finished run must still be reused."""
    import shutil

    _, out, argv = board
    moved = tmp_path / "moved"  # a copied folder is reused too: paths are not settings
    shutil.copytree(out, moved)
    settings = argv[argv.index("--rows") + 2:]
    bench = leaderboard.main(["--dataset", "tiny", "--seeds", "2", "--output", str(moved), "--rows", ROWS,
                              "--report_only", *settings])
    assert {m["label"]: m["n_ok"] for m in bench["models"]} == {leaderboard.ROWS[r]: 2 for r in ROWS.split(",")}
