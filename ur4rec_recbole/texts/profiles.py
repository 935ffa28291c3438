"""Causal preference profiles: which prefixes of a training portion get a profile, and their fingerprints.

A profile summarises a *prefix* of the user's training portion: the first
``cutoff`` items. Each user gets at most ``profile_cutoffs`` of them, at
cut-offs spread evenly over the portion and always including the whole
portion (:func:`cutoffs`). At training position ``t`` (the model has read the
portion's items ``0..t``) the memory holds the newest profile whose cut-off is
``<= t + 1``, so no profile a position reads mentions an item after it; at
evaluation the whole portion's profile is used. Keeping the count small bounds
the number of texts to write and encode (users x ``profile_cutoffs``).

The fingerprint of a profile hashes the exact items it was written from; a
run recomputes it from its own split and refuses texts or vectors written from
other histories (``ur4rec_recbole.features.pipeline``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Mapping, Sequence

from ur4rec_recbole.texts.base import Histories
from ur4rec_recbole.texts.records import TextRecord


def cutoffs(length: int, count: int) -> list[int]:
    """``count`` cut-offs spread evenly over a portion of ``length`` items, the last equal to ``length``.

    ``ceil(length * j / count)`` for ``j = 1..count``, without repeats (a short
    portion has fewer): ``cutoffs(7, 4) == [2, 4, 6, 7]``, ``cutoffs(2, 4) == [1, 2]``.
    """
    if length < 1:
        return []
    return sorted({math.ceil(length * j / count) for j in range(1, count + 1)})


def history_fingerprint(items: Sequence[str]) -> str:
    """Fingerprint of a history (raw item tokens, oldest first): 16 hex digits of SHA-256."""
    return hashlib.sha256("\x1f".join(items).encode("utf-8")).hexdigest()[:16]


def profile_histories(histories: Histories, count: int) -> list[dict[str, list[str]]]:
    """Per cut-off rank ``j``, each user's prefix at their ``j``-th cut-off (users with fewer cut-offs left out).

    Backends write one text per (user, prefix); rank ``j`` of one user and of
    another are different cut-offs, so every list element is a plain
    ``token -> history`` mapping a backend's ``user_texts`` takes as it is.
    """
    ranks: list[dict[str, list[str]]] = [{} for _ in range(count)]
    for token, history in histories.items():
        for rank, cut in enumerate(cutoffs(len(history), count)):
            ranks[rank][token] = list(history[:cut])
    return [rank for rank in ranks if rank]


def expected_fingerprints(histories: Histories, count: int) -> dict[str, dict[int, str]]:
    """``user token -> {cutoff: fingerprint}`` that this split's training portions give."""
    return {token: {cut: history_fingerprint(history[:cut]) for cut in cutoffs(len(history), count)}
            for token, history in histories.items() if len(history)}


def stamp(records: Sequence[TextRecord], histories: Mapping[str, Sequence[str]]) -> list[TextRecord]:
    """The records of one cut-off rank with their ``cutoff`` and ``fingerprint`` set from ``histories``."""
    return [replace(r, cutoff=len(histories[r.token]), fingerprint=history_fingerprint(histories[r.token]))
            for r in records]
