"""--hyper --tool ray on a running Ray cluster: --ray_address (or RAY_ADDRESS) attaches instead of starting one."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import pytest

from conftest import fails_clearly
import run_ur4rec

pytest.importorskip("ray.tune")  # the [hyper] extra


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def two_node_cluster():
    """A head and a worker node, one CPU each (two raylets on this machine)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.parametrize("shared", [False, True], ids=["object store", "shared folder"])
def test_search_attaches_to_a_cluster_and_trials_run_on_both_nodes(tiny, tmp_path, two_node_cluster, shared):
    import ray

    root, overrides = tiny
    space = tmp_path / "ur4rec.hyper"
    space.write_text("retriever_weight choice [0.0, 0.1]\n")
    out = tmp_path / "search"
    shared_flags = ["--shared_data", str(tmp_path / "shared")] if shared else []
    summary = run_ur4rec.main(["--dataset", "tiny", "--hyper", str(space), "--tool", "ray", "--algo", "exhaustive",
                               "--ray_address", two_node_cluster.address, "--output", str(out), "--asha-grace", "2",
                               *shared_flags, *cli(overrides)])
    assert not ray.is_initialized()  # detached; the cluster itself stays up (the fixture stops it)
    trials = summary["trials"]
    assert [t["status"] for t in trials] == ["ok", "ok"]
    nodes = {n["NodeID"] for n in ray_nodes(two_node_cluster.address)}
    assert {t["node"] for t in trials} == nodes and len(nodes) == 2  # one trial on each node
    # the trials read the copy shipped through the object store (or put in the shared folder), not the driver's
    for t in trials:
        if shared:
            assert Path(t["data_root"]) == tmp_path / "shared"
        else:
            assert Path(t["data_root"]).parent == Path(tempfile.gettempdir()) / "ur4rec-recbole-data"
        assert (Path(t["data_root"]) / "tiny" / "tiny.inter").read_bytes() == (root / "tiny" / "tiny.inter").read_bytes()
    assert json.loads((out / "trials.json").read_text())["chosen_trial"] == summary["chosen_trial"]
    chosen = next(t for t in trials if t["trial"] == summary["chosen_trial"])
    assert chosen["test_result"] is not None  # the chosen trial's checkpoint, tested once on the driver


def ray_nodes(address: str) -> list[dict]:
    import ray

    ray.init(address=address)
    try:
        return [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()


@pytest.mark.parametrize("through_env", [False, True])
def test_an_unreachable_cluster_is_one_line(tiny, tmp_path, capsys, monkeypatch, through_env):
    _, overrides = tiny
    space = tmp_path / "ur4rec.hyper"
    space.write_text("retriever_weight choice [0.0, 0.1]\n")
    address = f"127.0.0.1:{closed_port()}"
    flags = ["--dataset", "tiny", "--hyper", str(space), "--tool", "ray", "--output", str(tmp_path / "out")]
    if through_env:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        flags += ["--ray_address", address]
    fails_clearly(capsys, lambda: run_ur4rec.main([*flags, *cli(overrides)]),
                  f"--ray_address {address}: no Ray cluster answers there .*ray start --head")
