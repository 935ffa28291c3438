"""One train-and-test run, the same for UR4Rec and every RecBole model."""

from __future__ import annotations

import json
import os
import platform
import sys
from logging import getLogger
from pathlib import Path
from time import time
from typing import Any, Callable, Mapping, Sequence

import torch
from recbole.data import data_preparation
from recbole.utils import init_logger, init_seed, set_color

from ur4rec_recbole.benchmark.per_user import per_user_ndcg, random_state, set_random_state
from ur4rec_recbole.config import Config
from ur4rec_recbole.trainer import plain_config, plain_value
from ur4rec_recbole.utils import create_dataset, get_model, get_trainer

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
) -> dict:
    """Train ``model`` on ``dataset`` with RecBole's split and evaluator; return the results.

    ``resume`` continues from a checkpoint written by an earlier run.
    ``callback_fn(epoch_idx, valid_score)`` is RecBole's per-validation hook
    (Ray Tune reports through it); ``per_user`` adds each test user's NDCG@10
    (``per_user_test``) for paired tests between models.
    The returned dict is what ``--results`` writes as JSON.
    """
    start = time()
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if resume is not None:
        trainer.resume_checkpoint(resume)

    fit_start = time()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=callback_fn
    )
    train_seconds = time() - fit_start
    before_test = random_state()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])

    epochs = trainer.epoch_history
    results = {
        "model": config["model"],
        "dataset": config["dataset"],
        "seed": config["seed"],
        "best_valid_score": plain_value(best_valid_score),
        "best_valid_result": plain_value(dict(best_valid_result or {})),
        "test_result": plain_value(dict(test_result or {})),
        "train_seconds": train_seconds,
        "seconds_per_epoch": sum(e["train_seconds"] for e in epochs) / max(len(epochs), 1),
        "epochs_run": len(epochs),
        "best_epoch": best_epoch(epochs, config["valid_metric"], config["valid_metric_bigger"]),
        "machine": machine(),
        "total_seconds": time() - start,
        "checkpoint": trainer.saved_model_file if saved else None,
        "epoch_history": epochs,
        "config": plain_config(config),
    }
    if per_user:
        set_random_state(before_test)  # sampled evaluation then draws the same candidates again
        results["per_user_test"] = per_user_ndcg(trainer, test_data)
    logger.info(set_color("best valid ", "yellow") + f": {results['best_valid_result']}")
    logger.info(set_color("test result", "yellow") + f": {results['test_result']}")
    if results_path is not None:
        write_json(results_path, results)
    return results


def best_epoch(history: Sequence[Mapping], valid_metric: str, bigger: bool) -> int | None:
    """The first epoch of ``history`` with the best validation ``valid_metric`` (as RecBole keeps it)."""
    metric = valid_metric.lower()
    scored = [e for e in history if "valid" in e]
    if not scored:
        return None
    pick = max if bigger else min  # both return the first of equal values
    return pick(scored, key=lambda e: e["valid"][metric])["epoch"]


def machine() -> dict:
    """Where the run happened, for reports: CPU, threads, accelerator."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    os.replace(tmp, path)


def summary_table(results: Mapping[str, Any]) -> str:
    """A short plain-text report of one run for the terminal."""
    lines = [f"{results['model']} on {results['dataset']} (seed {results['seed']})"]
    for split in ("best_valid_result", "test_result"):
        values = results[split]
        shown = "  ".join(f"{m}={values.get(m, float('nan')):.4f}" for m in REPORTED_METRICS)
        lines.append(f"  {split.replace('_result', ''):<10} {shown}")
    lines.append(
        f"  train {results['train_seconds']:.1f}s over {results['epochs_run']} epochs "
        f"({results['seconds_per_epoch']:.1f}s/epoch); wall time {results['total_seconds']:.1f}s"
    )
    return "\n".join(lines)
