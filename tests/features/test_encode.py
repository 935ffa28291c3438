"""Sentence vectors: the bundled encoder, the content-hash cache, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from ur4rec_recbole.features import text_vectors as encode
from ur4rec_recbole.features.table import load_vector_table, read_meta
from ur4rec_recbole.texts.records import TextRecord


def records(**texts):
    return {k: TextRecord(k, v, "template", "v1") for k, v in texts.items()}


def test_encode_then_cache_then_reencode_on_change(tmp_path, monkeypatch):
    out = tmp_path / "v.npz"
    texts = records(a="a quiet drama about family", b="a loud action film with explosions")
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2") is True
    tokens, vectors, meta = load_vector_table(out)
    assert list(tokens) == ["a", "b"] and vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert meta["encoder"] == "all-MiniLM-L6-v2" and meta["texts"] == ["template/v1"]

    calls = []
    real_load = encode._load
    monkeypatch.setattr(encode, "_load", lambda *a: calls.append(a) or real_load(*a))
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2") is False  # cached
    assert calls == []
    changed = records(a="a quiet drama about family", b="a romantic comedy")
    assert encode.encode_records(changed, out, "all-MiniLM-L6-v2") is True
    assert encode.encode_records(changed, out, "sentence-transformers/all-MiniLM-L6-v2") is True  # other encoder
    assert len(calls) == 2
    assert read_meta(out)["encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert not list(tmp_path.glob(".*.tmp"))


def test_hash_ignores_order_but_not_content():
    one = records(a="x", b="y")
    two = {"b": one["b"], "a": one["a"]}
    assert encode.records_hash(one, "e") == encode.records_hash(two, "e")
    assert encode.records_hash(one, "e") != encode.records_hash(records(a="x", b="z"), "e")
    assert encode.records_hash(one, "e") != encode.records_hash(one, "f")


TEXTS = [
    "a quiet drama about family",
    "title: Stapler. brand: Swingline. categories: Office Products, Staplers. description: " + "sturdy metal " * 40,
    "Preferred category: Pens (40%), Paper (30%). Lately brand: Pilot.",
    "x",
    "title: Desk lamp. " * 20,
]


def test_length_batches_cover_every_text_once_within_the_token_budget():
    lengths = [5, 300, 40, 40, 7, 120, 1]
    batches = encode.length_batches(lengths, batch_tokens=100, batch_size=3)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for batch in batches:
        widest = lengths[batch[0]]
        assert len(batch) <= 3 and (len(batch) * widest <= 100 or len(batch) == 1)


def test_batched_vectors_equal_one_by_one():
    """fp32: batching (padding, length order) changes no vector by more than 1e-5 per coordinate."""
    batched = encode.encode_texts(TEXTS, "all-MiniLM-L6-v2", "cpu", "fp32", batch_tokens=4096, progress=False)
    alone = np.stack([encode.encode_texts([t], "all-MiniLM-L6-v2", "cpu", "fp32", progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # narrow batches (one text per batch through the token budget) too
    narrow = encode.encode_texts(TEXTS, "all-MiniLM-L6-v2", "cpu", "fp32", batch_tokens=1, progress=False)
    np.testing.assert_allclose(narrow, alone, atol=1e-5)


def test_bf16_vectors_stay_within_cosine_0999_of_fp32():
    """bf16 autocast (runs on any CPU; fast only where bf16 is native) keeps every vector's direction."""
    fp32 = encode.encode_texts(TEXTS, "all-MiniLM-L6-v2", "cpu", "fp32", progress=False)
    bf16 = encode.encode_texts(TEXTS, "all-MiniLM-L6-v2", "cpu", "bf16", progress=False)
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, rtol=1e-5)
    assert (fp32 * bf16).sum(1).min() >= 0.999


def test_cache_key_covers_precision_and_length_but_not_batching(tmp_path):
    texts = records(a="a quiet drama about family")
    keys = {encode.records_hash(texts, "e", None, "fp32"), encode.records_hash(texts, "e", None, "bf16"),
            encode.records_hash(texts, "e", 128, "fp32")}
    assert len(keys) == 3
    out = tmp_path / "v.npz"
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2", precision="fp32") is True
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2", precision="fp32", batch_size=1, batch_tokens=8) is False
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2", precision="bf16") is True
    assert read_meta(out)["precision"] == "bf16"
    assert encode.encode_records(texts, out, "all-MiniLM-L6-v2", precision="bf16", max_seq_length=16) is True
    assert read_meta(out)["max_seq_length"] == 16


def test_auto_precision_is_bf16_only_where_native(monkeypatch):
    monkeypatch.setattr(encode, "native_bf16", lambda device: False)
    assert encode.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(encode, "native_bf16", lambda device: True)
    assert encode.resolve_precision("auto", "cpu") == "bf16"
    assert encode.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="encoder precision 'fp16'"):
        encode.resolve_precision("fp16", "cpu")
