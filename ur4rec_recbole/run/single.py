"""One train-and-test run, the same for UR4Rec and every RecBole model."""

from __future__ import annotations

import os
import sys
from logging import getLogger
from time import time
from typing import Any, Callable, Collection, Mapping, Sequence

from recbole.data import data_preparation
from recbole.utils import init_seed, set_color

from ur4rec_recbole.data.fingerprint import data_fingerprint
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import machine, plain_config, plain_value, write_json
from ur4rec_recbole.registry import get_trainer
from ur4rec_recbole.outputs import check_outside_dataset
from ur4rec_recbole.ranks import is_writer, writer_first
from ur4rec_recbole.run.metrics import (bucket_report, per_user_metrics, random_state, set_random_state,
                                        target_groups, training_counts)
from ur4rec_recbole.run.prepare import build_model, prepare_run
from ur4rec_recbole.training.trainer import check_checkpoint, read_checkpoint

REPORTED_METRICS = ("recall@10", "ndcg@10", "mrr@10", "hit@10")


def run(
    model: str = "UR4Rec",
    dataset: str = "ml-100k",
    config_file_list: Sequence[str] | None = None,
    config_dict: Mapping[str, Any] | None = None,
    cmd_overrides: Mapping[str, str] | None = None,
    results_path: str | os.PathLike | None = None,
    saved: bool = True,
    resume: str | os.PathLike | None = None,
    callback_fn: Callable[[int, float], None] | None = None,
    per_user: bool = False,
    test: bool = True,
    also_known: Collection[str] = (),
) -> dict:
    """Train ``model`` on ``dataset`` with RecBole's split and evaluator; return the results.

    ``resume`` continues from a checkpoint written by an earlier run on the
    same data (this run writes its own checkpoint; the source is never
    overwritten). ``also_known``: settings accepted although ``model`` does
    not know them (``--compare``: known to another model of the list).
    ``callback_fn(epoch_idx, valid_score)`` is RecBole's per-validation hook
    (Ray Tune reports through it). Every tested run reports test NDCG@10 and
    Recall@10 per bucket of the target's training frequency (``test_buckets``,
    :mod:`ur4rec_recbole.run.metrics`); ``per_user`` adds each test user's values
    (``per_user_test``) for paired tests between models. ``test=False`` stops
    after training and validation (hyperparameter trials never read the test set).
    The returned dict is what ``--results`` writes as JSON.
    """
    start = time()
    source = read_checkpoint(resume) if resume is not None else None  # not a checkpoint: one line, before any setup

    def before_data(config) -> None:  # the outputs and the checkpoint to resume, before any data is read
        check_outputs(config, results_path)
        if source is not None:  # another model or dataset, changed atomic files, nothing left to train: refused
            check_checkpoint(source, config, resume, "resume", data_fingerprint(config, vectors=False))
            check_resume_epochs(source, config, resume)

    prepared = prepare_run(model, dataset, config_file_list, config_dict, cmd_overrides, also_known=also_known,
                           before_data=before_data)
    config, logger = prepared.config, getLogger()
    logger.info(sys.argv)
    with writer_first(config):  # building the splits writes texts and vectors: rank 0 first, the others read
        train_data, valid_data, test_data = data_preparation(config, prepared.dataset)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = build_model(config, train_data._dataset)
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if resume is not None:
        trainer.resume_checkpoint(resume)

    fit_start = time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=callback_fn
    )
    train_seconds = time() - fit_start
    test_result = None
    if test:
        before_test = random_state()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    epochs = trainer.epoch_history
    results = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "protocol": net.protocol,  # split, ranking and the history masks actually applied (run/protocol.py)
        "best_valid_score": plain_value(best_valid_score),
        "best_valid_result": plain_value(dict(best_valid_result or {})),
        "test_result": plain_value(dict(test_result)) if test_result is not None else None,
        "train_seconds": train_seconds,
        "seconds_per_epoch": sum(e["train_seconds"] for e in epochs) / max(len(epochs), 1),
        "epochs_run": len(epochs),
        "best_epoch": best_epoch(epochs, config["valid_metric"], config["valid_metric_bigger"]),
        "machine": machine(),
        "total_seconds": time() - start,
        "checkpoint": trainer.saved_model_file if saved else None,
        "epoch_history": epochs,
        "config": plain_config(config),
        "settings_from_data": sorted(getattr(config, "derived_settings", ())),  # decided by the data, not given
    }
    if test and config["single_spec"]:  # under DDP each process holds only its share of the users
        set_random_state(before_test)  # sampled evaluation then draws the same candidates again
        users = per_user_metrics(trainer, test_data)
        train_split = train_data._dataset
        users.update(target_groups(users["item_id"], training_counts(train_split),
                                   getattr(train_split, "cold_items", [])))
        results["test_buckets"] = bucket_report(users, with_cold=bool(config["cold_items"]))
        if per_user:
            results["per_user_test"] = users
    logger.info(set_color("best valid ", "yellow") + f": {results['best_valid_result']}")
    if test:
        logger.info(set_color("test result", "yellow") + f": {results['test_result']}")
    if results_path is not None and is_writer(config):
        write_json(results_path, results)
    return results


def check_outputs(config, results_path: str | os.PathLike | None) -> None:
    """``--results`` and ``checkpoint_dir`` lie outside the dataset folder; ``checkpoint_dir`` is no file."""
    check_outside_dataset(results_path, config["data_path"], "--results")
    check_outside_dataset(config["checkpoint_dir"], config["data_path"], "setting checkpoint_dir")
    if os.path.exists(config["checkpoint_dir"]) and not os.path.isdir(config["checkpoint_dir"]):
        raise InputError(f"setting checkpoint_dir={config['checkpoint_dir']} is an existing file: name a folder")


def check_resume_epochs(state: Mapping, config, path: str | os.PathLike) -> None:
    """Resuming must leave epochs to train: ``epochs`` above the epochs the checkpoint has already trained."""
    done = int(state["epoch"]) + 1  # epochs are counted from 0
    if config["epochs"] <= done:
        raise InputError(f"setting epochs={config['epochs']}: {path} has trained {done} epoch(s), so resuming "
                         f"would train nothing; pass --epochs greater than {done} (the total, not the extra epochs)")


def test_saved_model(model: str, dataset: str, checkpoint: str | os.PathLike,
                     config_file_list: Sequence[str] | None = None, config_dict: Mapping[str, Any] | None = None,
                     cmd_overrides: Mapping[str, str] | None = None) -> dict:
    """Test a checkpoint saved by :func:`run` once, with the configuration it was trained with.

    A hyperparameter search tests only its chosen trial, at the end, this way.
    A checkpoint of another model or trained on other data is refused.
    """
    source = read_checkpoint(checkpoint)
    prepared = prepare_run(model, dataset, config_file_list, config_dict, cmd_overrides)
    config = prepared.config
    check_checkpoint(source, config, checkpoint, "test", data_fingerprint(config, vectors=False))
    train_data, _, test_data = data_preparation(config, prepared.dataset)
    net = build_model(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    return plain_value(dict(trainer.evaluate(test_data, model_file=checkpoint, show_progress=False)))


def best_epoch(history: Sequence[Mapping], valid_metric: str, bigger: bool) -> int | None:
    """The first epoch of ``history`` with the best validation ``valid_metric`` (as RecBole keeps it)."""
    metric = valid_metric.lower()
    scored = [e for e in history if "valid" in e]
    if not scored:
        return None
    pick = max if bigger else min  # both return the first of equal values
    return pick(scored, key=lambda e: e["valid"][metric])["epoch"]


def summary_table(results: Mapping[str, Any]) -> str:
    """A short plain-text report of one run for the terminal."""
    lines = [f"{results['model']} on {results['dataset']} (seed {results['seed']})"]
    for split in ("best_valid_result", "test_result"):
        values = results[split]
        if values is None:  # test=False
            continue
        shown = "  ".join(f"{m}={values.get(m, float('nan')):.4f}" for m in REPORTED_METRICS)
        lines.append(f"  {split.replace('_result', ''):<10} {shown}")
    buckets = results.get("test_buckets")
    if buckets:
        shown = "  ".join(f"{name}: {'-' if b['ndcg@10'] is None else format(b['ndcg@10'], '.4f')} ({b['users']} users)"
                          for name, b in buckets.items())
        lines.append(f"  test ndcg@10 by the target's training count: {shown}")
    lines.append(
        f"  train {results['train_seconds']:.1f}s over {results['epochs_run']} epochs "
        f"({results['seconds_per_epoch']:.1f}s/epoch); wall time {results['total_seconds']:.1f}s"
    )
    return "\n".join(lines)
