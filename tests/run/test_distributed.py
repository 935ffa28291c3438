"""RecBole's DDP on CPU processes (gloo): --nproc 2 trains and evaluates as one process does.

Each test spawns processes that import torch and RecBole (about 10-20 s each
on a busy 2-core machine).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PROJECT_ROOT, build_data, fails_clearly, tiny_overrides, write_tiny_dataset
from ur4rec_recbole.run.distributed import run_distributed
from ur4rec_recbole.run.single import run
from ur4rec_recbole.training.trainer import read_checkpoint

# one epoch, the same batches in both runs: no shuffling (DistributedSampler draws its own order), no dropout
SAME_BATCHES = {"shuffle": "False", "hidden_dropout_prob": "0.0", "attn_dropout_prob": "0.0",
                "retriever_dropout": "0.0", "metric_decimal_place": "6"}
TOLERANCE = 1e-5  # largest parameter difference allowed: float sums in another order, over one epoch of Adam


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pth"))


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


def test_two_processes_train_and_evaluate_as_one(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", seed=1, n_users=25)
    overrides = tiny_overrides(root, tmp_path)
    settings = {**overrides, **SAME_BATCHES}
    # an even number of training rows (56: 28 per process; RecBole's DistributedSampler would repeat one of an
    # odd number); UR4Rec's rows hold different numbers of training positions, which the trainer weighs.
    # 25 users: evaluation gives one process 13 and the other 12 plus a repeat, where averaging the processes'
    # metrics (RecBole's _map_reduce) would differ from one process's
    _, _, train, _, test = build_data(settings)
    assert train.sample_size % 2 == 0 and train.sample_size % 16 != 0 and test.sample_size % 2 == 1

    one = run("UR4Rec", "tiny", cmd_overrides={**settings, "checkpoint_dir": str(tmp_path / "one")})
    two = run_distributed("UR4Rec", "tiny", cmd_overrides={**settings, "checkpoint_dir": str(tmp_path / "two")},
                          nproc=2, port=str(free_port()), results_path=tmp_path / "two.json")
    # a different global batch: what a wrong gradient average or batch split would give
    half = run("UR4Rec", "tiny", cmd_overrides={**settings, "train_batch_size": "8",
                                                "checkpoint_dir": str(tmp_path / "half")})

    assert len(checkpoints(tmp_path / "two")) == 1, "rank 0 alone writes the checkpoint"
    assert json.loads((tmp_path / "two.json").read_text())["test_result"] == two["test_result"]
    assert two["config"]["world_size"] == 2 and two["config"]["single_spec"] is False
    params = {name: read_checkpoint(r["checkpoint"])["state_dict"] for name, r in
              (("one", one), ("two", two), ("half", half))}
    assert largest_difference(params["one"], params["two"]) < TOLERANCE
    assert largest_difference(params["one"], params["half"]) > 100 * TOLERANCE
    # every user is evaluated once (not one shard, no repeat), as in one process
    assert two["best_valid_result"] == pytest.approx(one["best_valid_result"], abs=1e-6)
    assert two["test_result"] == pytest.approx(one["test_result"], abs=1e-6)


def test_two_machines_on_loopback_train_a_recbole_model(tiny, tmp_path):
    """Two commands, as on two machines: --world_size 2, one process each, --group_offset 0 and 1."""
    _, overrides = tiny
    port = str(free_port())
    settings = [f"--{k}={v}" for k, v in overrides.items()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(PROJECT_ROOT), os.environ.get("PYTHONPATH"))))}
    commands = [[sys.executable, str(PROJECT_ROOT / "run_ur4rec.py"), "--dataset", "tiny", "--model", "SASRec",
                 "--nproc", "1", "--world_size", "2", "--ip", "127.0.0.1", "--port", port,
                 "--group_offset", str(offset), "--results", str(tmp_path / f"machine{offset}.json"), *settings]
                for offset in (0, 1)]
    machines = [subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for c in commands]
    outputs = [m.communicate(timeout=300)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs
    results = json.loads((tmp_path / "machine0.json").read_text())
    assert results["model"] == "SASRec" and results["config"]["world_size"] == 2
    assert not (tmp_path / "machine1.json").exists(), "only global rank 0 writes --results"
    assert len(checkpoints(Path(overrides["checkpoint_dir"]))) == 1
    assert "test" in outputs[0] and "the machine with --group_offset 0 reports the results" in outputs[1]


@pytest.mark.parametrize("flags, match", [
    (["--nproc", "2", "--world_size", "3", "--group_offset", "2"], "--group_offset 2 with --nproc 2 does not fit"),
    (["--nproc", "0"], "--nproc \\(0\\) and --world_size \\(0\\) must be at least 1"),
])
def test_bad_process_counts_are_one_line(tiny, capsys, flags, match):
    import run_ur4rec

    _, overrides = tiny
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", *flags,
                                                   *[f"--{k}={v}" for k, v in overrides.items()]]), match)


def test_a_bad_setting_in_the_processes_is_one_line(tiny, capsys):
    import run_ur4rec

    _, overrides = tiny
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--nproc", "2", "--port", str(free_port()),
                                                   "--learning_rat=0.1",
                                                   *[f"--{k}={v}" for k, v in overrides.items()]]),
                  "unknown setting --learning_rat; did you mean --learning_rate")


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="needs exactly one visible GPU")
def test_more_processes_than_gpus_is_refused(tiny, capsys):
    import run_ur4rec

    _, overrides = tiny
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--nproc", "2",
                                                   *[f"--{k}={v}" for k, v in overrides.items()]]),
                  "--nproc 2 needs 2 GPUs and 1 are visible")


def test_a_stage_that_freezes_a_group_trains_under_ddp(tiny, tmp_path):
    """DDP fixes the parameters it synchronises when built: a stage that freezes the retriever wraps the model again."""
    _, overrides = tiny
    stages = "[{'name': 'backbone', 'epochs': 1, 'train': ['backbone'], 'fusion': 'none', 'retriever_weight': 0}]"
    two = run_distributed("UR4Rec", "tiny", cmd_overrides={**overrides, "stages": stages}, nproc=2,
                          port=str(free_port()))
    assert [e["stage"] for e in two["epoch_history"]] == ["backbone"]
    assert two["test_result"]["ndcg@10"] > 0
