"""Hyperparameter search with Ray Tune: parallel trials, ASHA early stopping on validation.

Each trial trains through :func:`ur4rec_recbole.run.single.run` and reports
its validation score after every validation (RecBole's ``callback_fn``);
ASHA stops trials whose *validation* score lags at a rung. A trial that
finishes reports its best validation result and its checkpoint; no trial
computes test metrics. Trials stopped by ASHA are listed but never chosen. The
best finished trial is chosen on validation only, and its checkpoint is tested
once, after the search.

Locally, ``ray.init(num_cpus=...)`` starts a private Ray whose workers import
this checkout (``PYTHONPATH`` in the runtime environment); with
``--ray-address`` the package must be importable on every node.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import ur4rec_recbole
from ur4rec_recbole.errors import require
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


def _trial(config: dict, model: str, dataset: str, config_files: list[str] | None, cmd_overrides: dict) -> None:
    """One Ray Tune trial: train, report validation every epoch, then the final results."""
    import ray
    from ray.air import session

    import ur4rec_recbole
    from ur4rec_recbole.run.single import run

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
        record["package"] = metrics.get("package")
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
               seed: int = 2020) -> dict:
    """Run the trials on Ray Tune (local or ``address``); write trials.json/md and best.yaml.

    ASHA may stop a trial after ``grace_period`` epochs when its validation score is
    below the top ``1 / reduction_factor`` of the trials that reached the same epoch.
    """
    require("ray.tune", "hyper", "--hyper --tool ray")
    import ray
    from ray import air, tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if algo not in ALGORITHMS:
        raise ValueError(f"--algo {algo!r} unknown for ray; choose from {', '.join(ALGORITHMS)}")
    output = Path(output).resolve()
    cmd_overrides = _absolute(cmd_overrides or {})
    check_overlap(params, cmd_overrides)
    config_files = [os.path.abspath(f) for f in config_files or []]
    base = base_config(model, dataset, config_files, cmd_overrides, params, output)
    valid_metric, bigger = base["valid_metric"].lower(), bool(base["valid_metric_bigger"])
    if not {p.name for p in params} & {"data_path", "data_root"}:
        # trials run in their own folders: give them the data root as an absolute path
        cmd_overrides.setdefault("data_path", base["data_root"])
        # atomic files, texts and vectors are made here once, so parallel trials only read them
        # (a search over text or encoder settings still writes them in the trials: --max-concurrent 1)
        prepare_run(model, dataset, config_files, cmd_overrides=cmd_overrides).dataset.build()

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
        trainable = tune.with_resources(
            partial(_trial, model=model, dataset=dataset, config_files=config_files or None,
                    cmd_overrides=cmd_overrides),
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
