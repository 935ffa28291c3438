"""Hyperparameter search with Ray Tune: parallel trials, ASHA early stopping on validation.

Each trial trains through :func:`ur4rec_recbole.run.single.run` and reports
its validation score after every validation (RecBole's ``callback_fn``);
ASHA stops trials whose *validation* score lags at a rung. A trial that
finishes reports its best validation result and its checkpoint; no trial
computes test metrics. Trials stopped by ASHA are listed but never chosen. The
best finished trial is chosen on validation only, and its checkpoint is tested
once, after the search.

Locally, ``ray.init(num_cpus=...)`` starts a private Ray whose workers import
this checkout (``PYTHONPATH`` in the runtime environment). With
``--ray_address HOST:PORT`` (or ``RAY_ADDRESS``) the search attaches to a
running cluster instead, and the package must be importable on every node.
The trials then never read the driver's data folder: the dataset folder
(atomic files, texts, vectors), built once on the driver, travels through
Ray's object store and each node unpacks it once (:func:`unpack_dataset`), or
``--shared_data DIR`` copies it into a folder every node mounts at that path.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import ur4rec_recbole
from ur4rec_recbole.errors import InputError, require
from ur4rec_recbole.io import plain_config
from ur4rec_recbole.run.hyper.search import base_config, check_overlap
from ur4rec_recbole.run.hyper.space import Param, tune_space
from ur4rec_recbole.run.hyper.trials import trial_record, write_outputs
from ur4rec_recbole.run.prepare import prepare_run
from ur4rec_recbole.run.single import test_saved_model

ALGORITHMS = ("random", "exhaustive")
SCORE = "valid_score"


def _absolute(cmd_overrides: Mapping[str, str]) -> dict:
    # trials run in their own folders (Ray changes the working directory)
    overrides = dict(cmd_overrides)
    if "data_path" in overrides:
        overrides["data_path"] = os.path.abspath(overrides["data_path"])
    return overrides


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` where nothing listens, in one line, before ``ray.init`` tries to join it."""
    if address == "auto" or "://" in address:  # Ray's own look-up, Ray Client
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray_address {address!r} is not HOST:PORT (the head node's GCS address, port 6379 "
                         f"by default, as `ray start --head` prints it)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise InputError(f"--ray_address {address}: no Ray cluster answers there ({err.strerror or err}); "
                         f"start one with `ray start --head --port {port}` or give the head node's address") from None


def pack_dataset(data_root: str | os.PathLike, dataset: str) -> tuple[str, bytes]:
    """``data_root/<dataset>/`` as a tar archive and its content hash (where each node unpacks it)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(Path(data_root) / dataset, arcname=dataset)
    payload = buffer.getvalue()
    return hashlib.sha256(payload).hexdigest()[:16], payload


def unpack_dataset(digest: str, payload: bytes, cache: str | os.PathLike | None = None) -> str:
    """The data root holding the shipped dataset on this node: unpacked once per node, by one trial.

    Trials on one node share the copy under ``cache`` (default: the node's
    temporary folder); an unpacking trial writes a private folder first and
    renames it, so no trial reads a half-unpacked dataset.
    """
    root = Path(cache or tempfile.gettempdir()) / "ur4rec-recbole-data" / digest
    if root.is_dir():
        return str(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{digest}-", dir=root.parent))
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        tar.extractall(work, filter="data")
    try:
        work.rename(root)
    except OSError:  # another trial on this node renamed its copy first
        shutil.rmtree(work, ignore_errors=True)
    return str(root)


def _trial(config: dict, model: str, dataset: str, config_files: list[str] | None, cmd_overrides: dict,
           shipped: tuple | None = None) -> None:
    """One Ray Tune trial: train, report validation every epoch, then the final results.

    ``shipped``: (content hash, object ref) of the dataset folder when the
    search runs on a cluster; the trial reads its node's copy of it.
    """
    import ray
    from ray.air import session

    import ur4rec_recbole
    from ur4rec_recbole.run.single import run

    if shipped is not None:
        digest, ref = shipped
        cmd_overrides = {**cmd_overrides, "data_path": unpack_dataset(digest, ray.get(ref))}
    overrides = {
        **cmd_overrides,
        "checkpoint_dir": os.path.join(session.get_trial_dir(), "checkpoints"),
        # RecBole writes gpu_id into CUDA_VISIBLE_DEVICES: give it the GPUs Ray assigned ("" = CPU)
        "gpu_id": ",".join(str(g) for g in ray.get_gpu_ids()),
    }

    def report(epoch_idx: int, valid_score: float) -> None:
        session.report({SCORE: float(valid_score), "epoch": epoch_idx + 1})

    results = run(model, dataset, config_file_list=config_files, config_dict=config, cmd_overrides=overrides,
                  callback_fn=report, test=False)
    last = results["epoch_history"][-1]["epoch"] + 1 if results["epoch_history"] else 0
    session.report({
        SCORE: float(results["best_valid_score"]), "epoch": last, "final": True,
        "best_valid_score": float(results["best_valid_score"]),
        "best_valid_result": results["best_valid_result"], "checkpoint": results["checkpoint"],
        "best_epoch": results["best_epoch"], "epochs_run": results["epochs_run"],
        "train_seconds": results["train_seconds"], "package": ur4rec_recbole.__file__,
        "node": ray.get_runtime_context().get_node_id(), "data_root": results["config"]["data_root"],
    })


def _record(index: int, result, names: Sequence[str], bigger: bool) -> dict:
    """A trials.json row from one Ray ``Result``."""
    params = {n: result.config[n] for n in names}
    metrics = result.metrics or {}
    if result.error is not None:
        error = str(result.error).strip().splitlines()
        return trial_record(index, params, status="failed", error=error[-1] if error else repr(result.error))
    if metrics.get("final"):
        record = trial_record(index, params, metrics)
        record.update(package=metrics.get("package"), node=metrics.get("node"), data_root=metrics.get("data_root"))
        return record
    # stopped by ASHA: its best validation so far, no test
    history = result.metrics_dataframe
    scores = [] if history is None or SCORE not in history else history[SCORE].dropna().tolist()
    record = trial_record(index, params, status="stopped by ASHA")
    if scores:
        record["best_valid_score"] = max(scores) if bigger else min(scores)
        record["epochs_run"] = int(metrics.get("epoch", len(scores)))
    return record


def search_ray(params: Sequence[Param], model: str, dataset: str, output: str | Path, max_evals: int,
               algo: str = "random", config_files: Sequence[str] | None = None,
               cmd_overrides: Mapping[str, str] | None = None, address: str | None = None,
               num_cpus: int | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0, test: bool = True,
               grace_period: int = 1, reduction_factor: int = 2, max_concurrent: int | None = None,
               seed: int = 2020, shared_data: str | os.PathLike | None = None) -> dict:
    """Run the trials on Ray Tune (local, or the cluster at ``address``); write trials.json/md and best.yaml.

    ASHA may stop a trial after ``grace_period`` epochs when its validation score is
    below the top ``1 / reduction_factor`` of the trials that reached the same epoch.
    ``address`` defaults to ``RAY_ADDRESS``; on a cluster the trials get the data
    through the object store, or from ``shared_data`` (a folder every node mounts).
    """
    require("ray.tune", "hyper", "--hyper --tool ray")
    import ray
    from ray import air, tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if algo not in ALGORITHMS:
        raise ValueError(f"--algo {algo!r} unknown for ray; choose from {', '.join(ALGORITHMS)}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and not ray.is_initialized():
        check_reachable(address)
    if shared_data is not None and address is None:
        raise InputError("--shared_data is for a Ray cluster (--ray_address or RAY_ADDRESS); a local search reads "
                         "the data folder itself")
    output = Path(output).resolve()
    cmd_overrides = _absolute(cmd_overrides or {})
    check_overlap(params, cmd_overrides)
    config_files = [os.path.abspath(f) for f in config_files or []]
    base = base_config(model, dataset, config_files, cmd_overrides, params, output)
    valid_metric, bigger = base["valid_metric"].lower(), bool(base["valid_metric_bigger"])
    searched_data = bool({p.name for p in params} & {"data_path", "data_root"})
    if not searched_data:
        # trials run in their own folders: give them the data root as an absolute path
        cmd_overrides.setdefault("data_path", base["data_root"])
        # atomic files, texts and vectors are made here once, so parallel trials only read them
        # (a search over text or encoder settings still writes them in the trials: --max-concurrent 1)
        prepare_run(model, dataset, config_files, cmd_overrides=cmd_overrides).dataset.build()
    if shared_data is not None and not searched_data:  # the driver's folder may not exist on the other nodes
        target = Path(shared_data).resolve()
        shutil.copytree(Path(cmd_overrides["data_path"]) / dataset, target / dataset, dirs_exist_ok=True)
        cmd_overrides["data_path"] = str(target)

    started = not ray.is_initialized()
    if started:
        package_root = Path(ur4rec_recbole.__file__).resolve().parent.parent  # workers import this copy
        path = os.pathsep.join(p for p in (str(package_root), os.environ.get("PYTHONPATH")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": path}}
        if address:
            ray.init(address=address, runtime_env=runtime_env)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env)
    try:
        shipped = None
        if address is not None and shared_data is None and not searched_data:
            digest, payload = pack_dataset(cmd_overrides["data_path"], dataset)
            shipped = (digest, ray.put(payload))  # each node fetches it once from the object store
        trainable = tune.with_resources(
            partial(_trial, model=model, dataset=dataset, config_files=config_files or None,
                    cmd_overrides=cmd_overrides, shipped=shipped),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
        exhaustive = algo == "exhaustive"
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(list(params), grid=exhaustive),
            tune_config=tune.TuneConfig(
                metric=SCORE, mode="max" if bigger else "min", num_samples=1 if exhaustive else max_evals,
                search_alg=BasicVariantGenerator(max_concurrent=max_concurrent or 0, random_state=seed),
                # max_t past the last epoch: ASHA would otherwise end a trial at its last
                # validation, before the final report with the checkpoint
                scheduler=ASHAScheduler(time_attr="epoch", max_t=int(base["epochs"]) + 1,
                                        grace_period=grace_period, reduction_factor=reduction_factor),
            ),
            run_config=air.RunConfig(name="tune", storage_path=str(output / "ray"), verbose=1),
        )
        grid = tuner.fit()
        names = [p.name for p in params]
        trials = [_record(i, grid[i], names, bigger) for i in range(len(grid))]
    finally:
        if started:
            ray.shutdown()
    for t in trials:
        if t["status"] == "failed":
            print(f"trial {t['trial']} failed: {t['error']}")
    return write_outputs(output, tool=f"ray ({algo}, ASHA on validation)", model=model, dataset=dataset,
                         valid_metric=valid_metric, bigger=bigger, trials=trials, cmd_overrides=cmd_overrides,
                         fixed_config=plain_config(base), config_files=config_files,
                         test_chosen=(lambda best: test_saved_model(
                             model, dataset, best["checkpoint"], config_files, best["params"], cmd_overrides))
                             if test else None)
