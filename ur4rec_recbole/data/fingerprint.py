"""What a model was trained on: the dataset's name and content hashes of its atomic files and vectors.

A checkpoint stores :func:`data_fingerprint`; loading it for recommendations
with other data is refused by :func:`check_same_data`, with one line saying
what differs. Vector tables are hashed by content (tokens and vectors, not the
``.npz`` bytes, whose zip headers carry a time), so a table edited by hand is
caught too. (The names follow the ``--resume`` check of issue 9, which uses
the same functions.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

from ur4rec_recbole.data.atomic import ATOMIC_SUFFIXES
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features import vector_tables
from ur4rec_recbole.features.table import load_vector_table
from ur4rec_recbole.io import file_sha256

PARTS = {"atomic": "atomic file", "vectors": "vector table"}


def table_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a vector table's tokens and float32 vectors."""
    tokens, vectors, _ = load_vector_table(path)
    digest = hashlib.sha256("\n".join(tokens.tolist()).encode())
    digest.update(str(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


def atomic_files(config) -> list[Path]:
    """The dataset's atomic files that exist."""
    folder, name = Path(config["data_path"]), config["dataset"]
    return [folder / f"{name}.{suffix}" for suffix in ATOMIC_SUFFIXES if (folder / f"{name}.{suffix}").is_file()]


def data_fingerprint(config, vectors: bool = True) -> dict:
    """``{"dataset", "atomic": {file: sha256}, "vectors": {file: content sha256}}`` of ``config``'s data.

    ``vectors=False`` fingerprints the atomic files alone (checks before
    anything is built); vector tables a model of RecBole's does not read are
    not listed.
    """
    found = {"dataset": config["dataset"], "atomic": {p.name: file_sha256(p) for p in atomic_files(config)}}
    if vectors:
        found["vectors"] = {p.name: table_sha256(p) for p in vector_tables(config).values() if p.is_file()}
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
        if changed:
            name = changed[0]
            state = "changed" if name in before and name in now else "is missing here" if name in before else \
                "was not used by the checkpoint"
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            return f"{what} {name} {state}{more}"
    return None


def check_same_data(saved: Mapping | None, current: Mapping, path: str | os.PathLike, action: str) -> None:
    """Refuse (one :class:`InputError`) to ``action`` the checkpoint ``path`` when its data differ from ``current``."""
    if saved is None:
        raise InputError(f"{path} records no data fingerprint (written by an older version): cannot {action} it "
                         f"safely; train a new model")
    difference = fingerprint_difference(saved, current)
    if difference is not None:
        raise InputError(f"cannot {action} {path}: it was trained on other data: {difference}; use the data it was "
                         f"trained on (data_path), or train a new model")
