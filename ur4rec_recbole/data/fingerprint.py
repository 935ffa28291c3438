"""What a trained model's inputs were: a fingerprint of the dataset folder, stored in checkpoints.

A checkpoint records the SHA-256 of every atomic file of its dataset and of
the content of every vector table the model read (tokens and vectors, not the
``.npz`` bytes, whose zip headers carry a time). Loading a checkpoint for
recommendation compares them with the folder as it is now, so a model is
never served with data other than the data it was trained on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ur4rec_recbole.data.atomic import ATOMIC_SUFFIXES
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.pipeline import vector_files
from ur4rec_recbole.features.table import load_vector_table
from ur4rec_recbole.io import file_sha256

ATOMIC = "atomic"
VECTORS = "vectors"


def _name(path: Path, data_path: Path) -> str:
    """A file's name in the fingerprint: relative to the dataset folder when inside it."""
    try:
        return str(path.resolve().relative_to(data_path.resolve()))
    except ValueError:
        return str(path.resolve())


def table_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a vector table's tokens and float32 vectors (independent of the file's zip metadata)."""
    tokens, vectors, _ = load_vector_table(path)
    digest = hashlib.sha256("\n".join(tokens.tolist()).encode())
    digest.update(str(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()


def atomic_fingerprint(config) -> dict[str, str]:
    """File name -> SHA-256 of each atomic file of the dataset (``.inter``, ``.item``, ``.user``) that exists."""
    data_path = Path(config["data_path"])
    paths = (data_path / f"{config['dataset']}.{suffix}" for suffix in ATOMIC_SUFFIXES)
    return {_name(p, data_path): file_sha256(p) for p in paths if p.is_file()}


def vector_fingerprint(config) -> dict[str, str]:
    """File name -> content hash of each vector table the model reads (none for RecBole's models)."""
    data_path = Path(config["data_path"])
    return {_name(p, data_path): table_sha256(p) if p.is_file() else "missing"
            for p in vector_files(config).values()}


def dataset_fingerprint(config) -> dict[str, dict[str, str]]:
    """``{"atomic": {...}, "vectors": {...}}`` for the dataset folder of ``config`` as it is now."""
    return {ATOMIC: atomic_fingerprint(config), VECTORS: vector_fingerprint(config)}


def check_unchanged(saved: dict[str, str], current: dict[str, str], what: str, where: str) -> None:
    """Raise one :class:`InputError` naming every file of ``saved`` that changed, vanished or appeared."""
    changed = sorted(name for name in saved if current.get(name) != saved[name])
    added = sorted(set(current) - set(saved))
    if changed or added:
        parts = [f"changed or missing: {', '.join(changed)}"] if changed else []
        parts += [f"new: {', '.join(added)}"] if added else []
        raise InputError(
            f"the {what} in {where} differ from those the checkpoint was trained on ({'; '.join(parts)}); "
            f"restore them, or retrain on the folder as it is now"
        )
