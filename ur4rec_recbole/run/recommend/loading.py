"""A trained model back from its checkpoint alone: configuration, dataset, weights.

Checkpoints store the run's whole configuration as plain values
(``training/trainer.py``). The settings the user chose are handed back to
:func:`~ur4rec_recbole.run.prepare.prepare_run` (the one setup path); the
values RecBole derives from them are left for it to derive again, and the
rebuilt configuration must equal the stored one. The dataset folder the
checkpoint names must hold the atomic files and vector tables it was trained
on (``data/fingerprint.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Any

import torch

from ur4rec_recbole.data.fingerprint import check_same_data, data_fingerprint
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import plain_config
from ur4rec_recbole.run.prepare import build_model, prepare_run
from ur4rec_recbole.training.trainer import read_checkpoint

# values RecBole derives from the others (or from the machine): never handed back as settings
DERIVED = ("MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_metric_bigger", "device", "single_spec",
           "local_rank", "valid_neg_sample_args", "test_neg_sample_args", "eval_neg_sample_args",
           "data_path", "dataset", "model")
# settings that may differ between training and serving without changing a score
SERVING = ("use_gpu", "gpu_id", "state", "show_progress", "data_root", "data_path", "checkpoint_dir", "device")
# per model, settings added after its checkpoints were first written, with the value that gives an older
# checkpoint the behaviour it was trained with (its weights fit only that), not today's default
ADDED_LATER = {"UR4Rec": {"retriever_scoring": "proxies"}}


@dataclass
class Loaded:
    """A model ready to score, with what it was built from."""

    config: Any  # the rebuilt Config
    dataset: Any  # the built RecBole dataset (all interactions; ids as in training)
    model: torch.nn.Module  # in eval mode, on config["device"]
    checkpoint: Path


def settings_from(saved: dict) -> dict:
    """The stored configuration minus what RecBole derives, ready for ``prepare_run``."""
    settings = {k: v for k, v in saved.items() if k not in DERIVED}
    negatives = saved.get("train_neg_sample_args")
    if isinstance(negatives, dict) and negatives.get("distribution") == "none":
        settings["train_neg_sample_args"] = None  # RecBole's spelling of "no sampling" after it expands None
    return settings


def check_rebuilt(saved: dict, rebuilt: dict, checkpoint: Path) -> None:
    """The rebuilt configuration must hold every stored value (serving settings aside)."""
    differ = sorted(k for k in saved if k not in SERVING and rebuilt.get(k) != saved[k])
    if differ:
        shown = ", ".join(f"{k}: {saved[k]!r} -> {rebuilt.get(k)!r}" for k in differ[:5])
        raise InputError(f"{checkpoint}: the configuration rebuilt from the checkpoint differs from the one it "
                         f"stores ({shown}); was it written by another version of ur4rec-recbole?")
    added = sorted(set(rebuilt) - set(saved))
    if added:
        getLogger().warning(f"{checkpoint}: settings unknown when it was trained take their defaults: {added}")


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint, or the ``--results`` JSON of the run that saved one (its ``checkpoint``)."""
    path = Path(path)
    if path.suffix != ".json":
        return path
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    saved = json.loads(path.read_text(encoding="utf-8")).get("checkpoint")
    if not saved:
        raise InputError(f"{path} names no checkpoint (its run was not saved); pass the checkpoint itself")
    return Path(saved)


def load_model(checkpoint: str | os.PathLike, data_path: str | os.PathLike | None = None,
               device: str = "cpu") -> Loaded:
    """Rebuild the model of ``checkpoint`` with its configuration and its dataset folder.

    ``checkpoint`` may also be the ``--results`` JSON of the run that saved it.
    ``data_path`` is the folder that holds ``<dataset>/`` when it moved since
    training (default: where it was). Raises :class:`InputError` (one line)
    when the folder's atomic files or vector tables differ from the ones the
    model was trained on.
    """
    checkpoint = checkpoint_path(checkpoint)
    state = read_checkpoint(checkpoint, device)  # one InputError for a missing, foreign or old file
    saved, fingerprint = state["config"], state.get("data")
    settings = {**settings_from(saved), "use_gpu": device != "cpu", "state": "WARNING", "show_progress": False}
    older = {k: v for k, v in ADDED_LATER.get(saved["model"], {}).items() if k not in saved}
    if older:
        getLogger().warning(f"{checkpoint}: written before these settings existed; read as it was trained: {older}")
        settings.update(older)
    if data_path is not None:
        settings["data_root"] = os.path.abspath(data_path)

    def unchanged_atomic_files(config) -> None:
        check_same_data(fingerprint, data_fingerprint(config, vectors=False), checkpoint, "recommend from")

    prepared = prepare_run(saved["model"], saved["dataset"], config_dict=settings, before_data=unchanged_atomic_files)
    config, dataset = prepared.config, prepared.dataset
    check_rebuilt({**older, **saved}, plain_config(config), checkpoint)
    splits = dataset.build()  # this package's datasets align their vectors here
    check_same_data(fingerprint, data_fingerprint(config), checkpoint, "recommend from")
    model = build_model(config, splits[0])
    model.load_state_dict(state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    return Loaded(config, dataset, model.eval(), checkpoint)
