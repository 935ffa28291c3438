"""Recommendations as values, and as the files and tables a person reads.

A :class:`Recommendation` is one user's ranked items. With explanations each
item names the proxy whose match gave its retriever score and the memory
slots that proxy attended to most: the preference text, or history items
with their titles, with attention weights (over all the slots the proxy
sees, they sum to 1) and each slot's effect: how much the item's retriever
score falls when that slot is taken out of the memory (attention alone is
not evidence that a slot mattered; the effect is measured).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import atomic_path

FORMATS = (".jsonl", ".csv")


@dataclass
class Slot:
    """One memory slot a proxy attended to."""

    kind: str  # "preference", or "history" ("history image" for an item's image slot)
    weight: float  # the proxy's attention on it, averaged over heads
    item: str | None = None  # history slots: the item's token
    title: str | None = None
    position: int | None = None  # history slots: index in the history, 0 = oldest
    effect: float | None = None  # the item's retriever score minus its score without this slot (> 0: it supports the item)

    def label(self) -> str:
        """Short name for tables: the title (or token) of a history item, or "preference"."""
        if self.kind == "preference":
            return "preference"
        name = self.title or self.item
        return f"{name} [image]" if self.kind == "history image" else str(name)


@dataclass
class Explanation:
    """Why the retriever scored an item as it did."""

    proxy: int  # the proxy whose match is the item's retriever score
    slots: list[Slot]  # what that proxy attended to, highest weight first


@dataclass
class RecommendedItem:
    rank: int  # 1 = first
    item: str  # raw token
    title: str | None
    score: float  # the fused score items are ranked by
    sequence: float  # the sequence scorer's part
    retriever: float | None  # the retriever's part (None for models without one)
    explanation: Explanation | None = None


@dataclass
class Recommendation:
    """One user's ranked items."""

    user: str | None  # token of a known user; None for a history given in the request
    history_length: int  # items observed (all of them are excluded unless exclude_history=False)
    preference: str | None  # the preference text the retriever read (None: none, or masked)
    items: list[RecommendedItem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def output_format(path: str | os.PathLike) -> str:
    """``.jsonl`` or ``.csv`` from a file name; anything else is an error naming the fix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"--output {path}: unknown format {suffix or '(no suffix)'!r}; name a .jsonl or .csv file")
    return suffix


CSV_COLUMNS = ("user", "rank", "item", "title", "score", "sequence", "retriever", "proxy", "attended", "preference")


def csv_row(rec: Recommendation, item: RecommendedItem) -> dict:
    """One CSV row per recommended item; ``attended`` lists slots as ``name (weight)`` joined by ``; ``."""
    explanation = item.explanation
    return {
        "user": rec.user if rec.user is not None else "", "rank": item.rank, "item": item.item,
        "title": item.title or "", "score": item.score, "sequence": item.sequence,
        "retriever": "" if item.retriever is None else item.retriever,
        "proxy": "" if explanation is None else explanation.proxy,
        "attended": "" if explanation is None else "; ".join(f"{s.label()} ({s.weight:.3f}{_effect(s)})" for s in explanation.slots),
        "preference": rec.preference or "",
    }


def _effect(slot: Slot) -> str:
    return "" if slot.effect is None else f", effect {slot.effect:+.3f}"


def write_recommendations(path: str | os.PathLike, recs: Iterable[Recommendation]) -> int:
    """Write ``recs`` as JSONL (one user per line) or CSV (one item per row), atomically; return users written."""
    suffix, count = output_format(path), 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS) if suffix == ".csv" else None
        if writer is not None:
            writer.writeheader()
        for rec in recs:
            if writer is None:
                handle.write(json.dumps(rec.as_dict(), ensure_ascii=False) + "\n")
            else:
                writer.writerows(csv_row(rec, item) for item in rec.items)
            count += 1
    return count


def _cut(text: str | None, width: int) -> str:
    text = text or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(rec: Recommendation, title_width: int = 40) -> str:
    """A readable block for the terminal: the user, then one line per item (and its reasons)."""
    who = f"user {rec.user}" if rec.user is not None else "history given"
    lines = [f"{who} ({rec.history_length} items observed)"]
    if rec.preference:
        lines.append(f"  preference: {rec.preference}")
    has_retriever = any(item.retriever is not None for item in rec.items)
    header = f"  {'rank':>4}  {'item':<10} {'title':<{title_width}} {'score':>9} {'sequence':>9}"
    lines.append(header + (f" {'retriever':>9}" if has_retriever else ""))
    for item in rec.items:
        line = (f"  {item.rank:>4}  {_cut(item.item, 10):<10} {_cut(item.title, title_width):<{title_width}} "
                f"{item.score:>9.4f} {item.sequence:>9.4f}")
        lines.append(line + (f" {item.retriever:>9.4f}" if item.retriever is not None else ""))
        if item.explanation is not None:
            attended = "; ".join(f"{_cut(s.label(), 30)} {s.weight:.2f}{_effect(s)}" for s in item.explanation.slots)
            lines.append(f"        proxy {item.explanation.proxy} attended to: {attended}")
    return "\n".join(lines)
