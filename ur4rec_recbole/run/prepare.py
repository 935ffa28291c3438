"""The one setup path before every job: configuration, seed, logger, dataset.

Training (:mod:`ur4rec_recbole.run.single`), ``--compare``, ``--hyper`` (hyperopt
and Ray workers), LLM text generation, image encoding, recommendation and the
benchmark scripts all start here, so a dataset configured by yaml is read with
the same settings by every command.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, Sequence

from recbole.utils import init_logger, init_seed

from ur4rec_recbole.config import Config
from ur4rec_recbole.data.atomic import ensure_atomic_files
from ur4rec_recbole.lookups import create_dataset

_installed_handlers: list[logging.Handler] = []  # what the last init_logger added to the root logger


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
    """Config (package yaml < dataset yaml < files < dict < overrides), seed, logger, then the dataset.

    ``build_dataset=False`` stops after making sure the atomic files exist
    (tools that need only the configuration, e.g. image encoding).
    ``before_data(config)`` runs once the atomic files exist and before any is
    read (loading a checkpoint checks the dataset's fingerprint there).
    ``also_known``: settings the Config accepts although ``model`` does not know them.
    """
    config = Config(model, dataset, config_file_list, config_dict, cmd_overrides, also_known=also_known)
    init_seed(config["seed"], config["reproducibility"])
    logger = start_logging(config)
    logger.info(config)
    ensure_atomic_files(config)
    if before_data is not None:
        before_data(config)
    if not build_dataset:
        return Prepared(config)
    data = create_dataset(config)
    logger.info(data)
    return Prepared(config, data)
