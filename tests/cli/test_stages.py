"""Stages a user can run: ``encode --texts`` writes the texts and their vectors, and the run then reads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import fails_clearly

import run_ur4rec
from ur4rec_recbole.cli import encode


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def test_encode_texts_then_run_reads_the_vectors(tiny, tmp_path, capsys):
    root, overrides = tiny
    report = encode.main(["--dataset", "tiny", "--texts", *cli(overrides)])
    tables = {kind: Path(path) for kind, path in report["texts"].items()}
    assert set(tables) == {"item_text", "user_text"}
    assert tables["item_text"] == root / "tiny" / "tiny.item_know.template.npz"
    assert all(path.is_file() for path in tables.values())
    assert (root / "tiny" / "tiny.user_pref.template.jsonl").is_file()  # the texts the vectors were made from
    assert "item_text vectors:" in capsys.readouterr().out
    stamps = {kind: path.stat().st_mtime_ns for kind, path in tables.items()}
    out = tmp_path / "results.json"
    run_ur4rec.main(["--dataset", "tiny", "--results", str(out), *cli(overrides)])
    assert json.loads(out.read_text())["epochs_run"] == 1
    assert {kind: path.stat().st_mtime_ns for kind, path in tables.items()} == stamps  # read, not re-encoded


def test_encode_with_nothing_to_do_is_a_usage_error(tiny, capsys):
    _, overrides = tiny
    with pytest.raises(SystemExit) as stop:
        encode.main(["--dataset", "tiny", *cli(overrides)])
    assert stop.value.code == 2 and "--texts" in capsys.readouterr().err


def test_encode_texts_of_a_missing_llm_source_is_one_line(tiny, capsys):
    _, overrides = tiny
    fails_clearly(capsys, lambda: encode.main(["--dataset", "tiny", "--texts", "--text_source=openai",
                                               *cli(overrides)]), r"tiny\.user_pref\.openai\.jsonl.*generate it first")
