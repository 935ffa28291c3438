"""Frozen vector tables keyed by raw RecBole tokens, and their alignment to internal ids.

File format (``.npz``, loadable with ``allow_pickle=False``):

- ``tokens``: ``[N]`` unicode array of raw tokens (as in the atomic files);
- ``vectors``: ``[N, D]`` float32 matrix, row ``r`` belongs to ``tokens[r]``;
- ``meta``: a JSON string (encoder, content hash, provenance).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from logging import getLogger
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ur4rec_recbole.atomic_format import read_columns, read_header
from ur4rec_recbole.io import data_folder_fix, write_bytes


def save_vector_table(path: str | os.PathLike, tokens: Sequence[str], vectors: np.ndarray, meta: dict) -> None:
    """Write a table atomically (temp file, then rename)."""
    path = Path(path)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(tokens) != vectors.shape[0]:
        raise ValueError(f"{path}: {len(tokens)} tokens for a vector array of shape {vectors.shape}")
    buffer = io.BytesIO()
    np.savez(buffer, tokens=np.asarray(tokens, dtype=str), vectors=vectors, meta=np.asarray(json.dumps(meta)))
    write_bytes(path, buffer.getvalue(), fix=data_folder_fix(path.parent))


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` of a table, or ``{}`` when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def is_current(path: str | os.PathLike, key: str) -> bool:
    """Whether the table at ``path`` was written for the content hash ``key`` (the cache check of every table)."""
    return read_meta(path).get("content_hash") == key


def load_vector_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read and check a table: tokens, float32 vectors ``[N, D]``, meta."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("tokens", "vectors", "meta") if name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz vector table ({str(err).splitlines()[0]}); write it with "
                         f"numpy.savez(path, tokens=<[N] str>, vectors=<[N, D] float>)") from err
    missing = {"tokens", "vectors"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: expected arrays 'tokens' and 'vectors', missing {sorted(missing)}")
    tokens, vectors = arrays["tokens"].astype(str), arrays["vectors"]
    meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    if tokens.ndim != 1:
        raise ValueError(f"{path}: 'tokens' must be 1-D, got shape {tokens.shape}")
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise ValueError(f"{path}: 'vectors' must be a 2-D float matrix, got {vectors.dtype} {vectors.shape}")
    if vectors.shape[0] != tokens.shape[0]:
        raise ValueError(
            f"{path}: misaligned table, {tokens.shape[0]} tokens but {vectors.shape[0]} vector rows"
        )
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        r = int(bad[0])
        raise ValueError(f"{path}: row {r} (token {tokens[r]!r}) holds NaN or inf ({bad.size} such rows)")
    unique, counts = np.unique(tokens, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: token {unique[counts > 1][0]!r} has more than one row")
    return tokens, vectors.astype(np.float32, copy=False), meta


def atomic_tokens(data_path: str | os.PathLike, dataset: str, field: str, suffixes: Iterable[str], sep: str = "\t",
                  encoding: str = "utf-8-sig") -> set[str]:
    """All raw values of ``field`` in the given atomic files, before any RecBole filtering."""
    found: set[str] = set()
    for suffix in suffixes:
        path = Path(data_path) / f"{dataset}.{suffix}"
        if path.is_file() and field in {c.name for c in read_header(path, sep, encoding)}:
            found.update(read_columns(path, [field], sep, encoding)[field].tolist())
    return found


def align_vectors(
    path: str | os.PathLike,
    tokens: np.ndarray,
    vectors: np.ndarray,
    vocab: Sequence[str],
    known_tokens: set[str],
    what: str,
    expected_dim: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder table rows to RecBole's internal ids.

    Returns ``matrix [len(vocab), D]`` (zeros where no vector) and
    ``mask [len(vocab)]`` (True where a vector was given). A token that is
    not in the atomic files at all is an error; one that RecBole filtered
    out is skipped.
    """
    dim = vectors.shape[1]
    if expected_dim is not None and dim != expected_dim:
        raise ValueError(
            f"{path}: {what} vectors have dimension {dim}, expected {expected_dim} "
            f"(the item vectors' dimension: both live in one text space)"
        )
    index = {str(token): i for i, token in enumerate(vocab)}
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    mask = np.zeros(len(vocab), dtype=bool)
    filtered = 0
    for row, token in enumerate(tokens):
        position = index.get(token)
        if position is None or position == 0:
            if token not in known_tokens or position == 0:
                raise ValueError(
                    f"{path}: row {row} has {what} token {token!r}, which is not a {what} of the atomic files"
                )
            filtered += 1
            continue
        matrix[position] = vectors[row]
        mask[position] = True
    if filtered:
        getLogger().debug(f"{path}: {filtered} {what} rows skipped (filtered out by RecBole)")
    return matrix, mask
