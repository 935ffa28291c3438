"""Frozen vector tables keyed by raw RecBole tokens, and their alignment to internal ids.

File format (``.npz``, loadable with ``allow_pickle=False``):

- ``tokens``: ``[N]`` unicode array of raw tokens (as in the atomic files);
- ``vectors``: ``[N, D]`` float32 matrix, row ``r`` belongs to ``tokens[r]``;
- ``meta``: a JSON string (encoder, content hash, provenance);
- preference-profile tables also have ``cutoffs`` (``[N]`` int: how many
  training-portion items row ``r``'s profile summarises; a token has one row
  per cut-off) and ``fingerprints`` (``[N]`` str: of those items). A user
  table without them holds one vector per user that no run can check.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from logging import getLogger
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ur4rec_recbole.formats.atomic import read_columns, read_header
from ur4rec_recbole.io import data_folder_fix, write_bytes


PROFILE_COLUMNS = ("cutoffs", "fingerprints")


def save_vector_table(path: str | os.PathLike, tokens: Sequence[str], vectors: np.ndarray, meta: dict,
                      cutoffs: Sequence[int] | None = None, fingerprints: Sequence[str] | None = None) -> None:
    """Write a table atomically (temp file, then rename); profiles also give ``cutoffs`` and ``fingerprints``."""
    path = Path(path)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(tokens) != vectors.shape[0]:
        raise ValueError(f"{path}: {len(tokens)} tokens for a vector array of shape {vectors.shape}")
    profile = {}
    if cutoffs is not None:
        profile = {"cutoffs": np.asarray(cutoffs, dtype=np.int64), "fingerprints": np.asarray(fingerprints, dtype=str)}
    buffer = io.BytesIO()
    np.savez(buffer, tokens=np.asarray(tokens, dtype=str), vectors=vectors, meta=np.asarray(json.dumps(meta)),
             **profile)
    write_bytes(path, buffer.getvalue(), fix=data_folder_fix(path.parent))


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` of a table, or ``{}`` when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}


def is_current(path: str | os.PathLike, key: str) -> bool:
    """Whether the table at ``path`` was written for the content hash ``key`` (the cache check of every table).

    A table whose bytes were damaged since (a zip member fails its CRC-32) is
    not current: the caller builds it again, and the log says so.
    """
    if read_meta(path).get("content_hash") != key:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as err:  # zipfile, zlib and OS errors alike: the cache cannot be trusted
        damaged = f"{type(err).__name__}: {err}"
    if damaged is not None:
        getLogger().warning(f"{path}: the cached table is damaged ({damaged} fails its check); building it again")
        return False
    return True


def load_vector_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read and check a table: tokens, float32 vectors ``[N, D]``, meta."""
    tokens, vectors, meta, _ = load_table(path)
    return tokens, vectors, meta


def load_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict, dict[str, np.ndarray] | None]:
    """:func:`load_vector_table` plus the profile columns (``None`` for a table without them)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("tokens", "vectors", "meta", *PROFILE_COLUMNS)
                      if name in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable .npz vector table ({str(err).splitlines()[0]}); write it with "
                         f"numpy.savez(path, tokens=<[N] str>, vectors=<[N, D] float>), or, if this package built it, delete "
                         f"it and run again to rebuild it") from err
    missing = {"tokens", "vectors"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: expected arrays 'tokens' and 'vectors', missing {sorted(missing)}")
    tokens, vectors = arrays["tokens"].astype(str), arrays["vectors"]
    meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    present = [name for name in PROFILE_COLUMNS if name in arrays]
    if present and len(present) < len(PROFILE_COLUMNS):
        raise ValueError(f"{path}: has {present[0]!r} without {(set(PROFILE_COLUMNS) - set(present)).pop()!r}; "
                         "a profile table needs both")
    profile = {name: arrays[name] for name in present} or None
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
    if profile is not None:
        if profile["cutoffs"].shape != tokens.shape or profile["fingerprints"].shape != tokens.shape:
            raise ValueError(f"{path}: 'cutoffs' and 'fingerprints' must have one entry per token ({len(tokens)})")
        if not np.issubdtype(profile["cutoffs"].dtype, np.integer) or (profile["cutoffs"] < 1).any():
            raise ValueError(f"{path}: 'cutoffs' must be positive integers")
        profile["fingerprints"] = profile["fingerprints"].astype(str)
        keys = np.char.add(np.char.add(tokens, "@"), profile["cutoffs"].astype(str))
    else:
        keys = tokens
    unique, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        what = "token@cutoff" if profile is not None else "token"
        raise ValueError(f"{path}: {what} {unique[counts > 1][0]!r} has more than one row")
    return tokens, vectors.astype(np.float32, copy=False), meta, profile


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
