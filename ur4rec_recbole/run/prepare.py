"""The one setup path before every job: configuration, seed, logger, dataset.

Training (:mod:`ur4rec_recbole.run.single`), ``--compare``, ``--hyper`` (hyperopt
and Ray workers), LLM text generation, image encoding, recommendation and the
benchmark scripts all start here, so a dataset configured by yaml is read with
the same settings by every command; :func:`build_model` is where they build their model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

import torch
from recbole.utils import init_logger, init_seed

from ur4rec_recbole.config import Config
from ur4rec_recbole.data.reading import ensure_atomic_files
from ur4rec_recbole.registry import create_dataset, get_model
from ur4rec_recbole.model.dropout import use_same_mask_dropout
from ur4rec_recbole.ranks import writer_first
from ur4rec_recbole.config.data_rules import apply_data_rules
from ur4rec_recbole.data.repeats import decide_masks
from ur4rec_recbole.run.protocol import MASKS, apply_protocol

_installed_handlers: list[logging.Handler] = []  # what the last init_logger added to the root logger


def autograd_without_anomaly_checks() -> None:
    """Switch off autograd's anomaly detection, which importing RecBole switches on for the whole process.

    ``recbole/model/sequential_recommender/sine.py`` calls ``torch.autograd.set_detect_anomaly(True)``
    when it is imported (with every sequential model, SASRec included): every backward then checks
    each gradient for NaN and every forward records a stack trace, which made an ml-100k epoch
    about 4x slower on the CPU. Nothing learned depends on it (RecBole's trainer still stops on a NaN loss).
    """
    torch.autograd.set_detect_anomaly(False)


def set_torch_threads(threads: int | None) -> None:
    """``torch_threads`` intra-op threads (None: torch's default, one per core it may use).

    The OpenMP wait policy is read when torch loads, so the entry points
    (``run_ur4rec.py``, ``python -m ur4rec_recbole``) set it; see docs/results/speed.md.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))


@dataclass
class Prepared:
    """A configured job: its Config and (unless asked not to) its RecBole dataset, not yet split."""

    config: Config
    dataset: Any = None


def reset_logging() -> None:
    """Remove the handlers RecBole's ``init_logger`` added for the previous job.

    ``init_logger`` calls ``logging.basicConfig``, a no-op once the root logger
    has handlers: without this every job after the first in one process would
    log into the first job's file. Handlers installed by others (pytest) stay.
    """
    root = logging.getLogger()
    for handler in _installed_handlers:
        root.removeHandler(handler)
        handler.close()
    _installed_handlers.clear()


def start_logging(config: Config) -> logging.Logger:
    """RecBole's logger (file in ``log/``, console) for this job, replacing the previous job's."""
    reset_logging()
    root = logging.getLogger()
    before = set(root.handlers)
    # RecBole's ensure_dir checks then creates: two processes started together (one per
    # machine of a distributed run) race on ./log/<model> and the checkpoint folder, and
    # the loser dies with EEXIST. Creating them here, race-free, leaves RecBole nothing to do.
    os.makedirs(os.path.join("log", str(config["model"])), exist_ok=True)
    if config["checkpoint_dir"]:
        os.makedirs(str(config["checkpoint_dir"]), exist_ok=True)
    init_logger(config)
    _installed_handlers.extend(h for h in root.handlers if h not in before)
    return logging.getLogger()


def prepare_run(
    model: str | type,
    dataset: str,
    config_file_list: Sequence[str] | None = None,
    config_dict: Mapping[str, Any] | None = None,
    cmd_overrides: Mapping[str, str] | None = None,
    *,
    build_dataset: bool = True,
    before_data: Callable[[Config], None] | None = None,
    also_known: Collection[str] = (),
) -> Prepared:
    """Config (package yaml < the dataset's own yaml < files < dict < overrides), seed, logger, then the dataset.

    Dataset settings nobody gave are filled in from the atomic files' headers;
    the log says which (``config.dataset_notes``).

    ``build_dataset=False`` stops after making sure the atomic files exist
    (tools that need only the configuration, e.g. image encoding).
    ``before_data(config)`` runs once the atomic files exist and before any is
    read (loading a checkpoint checks the dataset's fingerprint there).
    ``also_known``: settings the Config accepts although ``model`` does not know them.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides, also_known=also_known)
    set_torch_threads(config["torch_threads"])
    autograd_without_anomaly_checks()  # after the Config: it imports RecBole's models
    init_seed(config["seed"], config["reproducibility"])
    logger = start_logging(config)
    logger.info(config)
    for note in config.dataset_notes:  # dataset settings filled in from the atomic files
        logger.info(note)
    with writer_first(config):  # under DDP rank 0 writes the atomic files (and any cache), the others wait
        ensure_atomic_files(config)
        if before_data is not None:  # outputs and a checkpoint to resume: checked before the data is read
            before_data(config)
        for note in apply_data_rules(config):  # settings nobody set, derived from the data (config/data_rules.py)
            logger.info(note)
        data = create_dataset(config) if build_dataset else None
    if not build_dataset:
        return Prepared(config)
    logger.info(data)
    return Prepared(config, data)


def build_model(config: Config, dataset) -> torch.nn.Module:
    """The model ``config["model"]`` built on ``dataset`` (a training split) and on ``config["device"]``.

    Every run mode builds its model here, so built-in RecBole models get what
    ours have: the history masks, ``auto`` decided on ``dataset`` (one protocol,
    ``run/protocol.py``; the model's ``protocol`` attribute records it), and
    dropout layers that give torch's results sooner on the CPU
    (``model/dropout.py``; UR4Rec converts its own when built).
    """
    given = getattr(config, "masks_given", None) or {key: config[key] for key in MASKS}
    config.masks_given = given  # as the user set them (True / False / auto), before auto is decided
    decide_masks(config, dataset)
    model = apply_protocol(get_model(config["model"])(config, dataset), config, given)
    use_same_mask_dropout(model)
    return model.to(config["device"])
