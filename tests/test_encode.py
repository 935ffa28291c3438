"""Sentence vectors: the bundled encoder, the content-hash cache, atomic writes."""

from __future__ import annotations

import numpy as np

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
