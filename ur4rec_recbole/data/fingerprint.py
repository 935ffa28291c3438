"""What a model was trained on: the dataset's name and content hashes of its atomic files and vectors.

A checkpoint stores :func:`data_fingerprint`; resuming it, testing it
(``test_saved_model``, the hyperparameter search) or loading it for
recommendations with other data is refused by :func:`check_same_data`, with
one line saying what differs. Cheap: the vector tables already carry a
content hash (their ``meta``); only the atomic files are hashed, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features import vector_tables
from ur4rec_recbole.features.table import read_meta
from ur4rec_recbole.io import file_sha256

ATOMIC_SUFFIXES = ("inter", "item", "user", "kg", "link", "net")  # every atomic file RecBole may read
PARTS = {"atomic": "atomic file", "vectors": "vector table"}


def atomic_files(config) -> list[Path]:
    """The dataset's atomic files that exist (benchmark splits ``<name>.<part>.inter`` included)."""
    folder, name = Path(config["data_path"]), config["dataset"]
    names = [f"{name}.{suffix}" for suffix in ATOMIC_SUFFIXES]
    names += [f"{name}.{part}.inter" for part in config["benchmark_filename"] or []]
    return [folder / n for n in names if (folder / n).is_file()]


def data_fingerprint(config, vectors: bool = True) -> dict:
    """``{"dataset", "atomic": {file: sha256}, "vectors": {file: content hash}}`` of ``config``'s data.

    Read the vectors only after the run has built them (``vectors=False``
    fingerprints the atomic files alone, for checks before anything is built).
    """
    found = {"dataset": config["dataset"], "atomic": {p.name: file_sha256(p) for p in atomic_files(config)}}
    if vectors:
        found["vectors"] = {path.name: read_meta(path).get("content_hash") or file_sha256(path)
                            for path in vector_tables(config).values() if path.is_file()}
    return found


def fingerprint_difference(saved: Mapping, current: Mapping) -> str | None:
    """What differs between two fingerprints (the parts both have), in words; None when nothing does."""
    if saved.get("dataset") != current.get("dataset"):
        return f"dataset name differs (checkpoint: {saved.get('dataset')}, here: {current.get('dataset')})"
    for part, what in PARTS.items():
        if part not in saved or part not in current:
            continue
        before, now = saved[part], current[part]
        changed = [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]
        if not changed:
            continue
        name = changed[0]
        if part == "vectors":
            return f"vectors changed ({name})"
        return f"{what} {name} " + ("changed" if name in before and name in now else
                                    "is missing here" if name in before else "was not used by the checkpoint")
    return None


def check_same_data(saved: Mapping | None, current: Mapping, path: str | os.PathLike, action: str) -> None:
    """Refuse (one :class:`InputError`) to ``action`` the checkpoint ``path`` when its data differ from ``current``."""
    if saved is None:
        raise InputError(f"{path} records no data fingerprint (written by an older version): cannot {action} it "
                         f"safely; train a new model")
    difference = fingerprint_difference(saved, current)
    if difference is not None:
        raise InputError(f"cannot {action} {path}: it was trained on other data: {difference}; use the data it was "
                         f"trained on (--dataset, --data_path), or train a new model")
