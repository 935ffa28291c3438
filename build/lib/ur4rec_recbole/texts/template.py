"""The deterministic ``template`` backend: no model, same input gives same text.

Item knowledge lists the configured ``.item`` fields. A user's preference
profile summarises *tastes* over the training portion of the history: the
share of each category value (genres, decades, ...) overall and in the most
recent ``history_window`` items. It never names items, so the retriever
cannot look its training targets up in the profile.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

from ur4rec_recbole.texts.base import Histories, ItemFields, join_values
from ur4rec_recbole.texts.records import TextRecord

TEMPLATE_VERSION = "template-v1"


def _label(field: str, labels: Mapping[str, str]) -> str:
    return labels.get(field, field.replace("_", " "))


def _bucket(value: str, width: int) -> str:
    """Integers are grouped (years by decade: ``1994`` -> ``1990s``); other values stay."""
    if width <= 1 or not value.lstrip("-").isdigit():
        return value
    low = int(value) // width * width
    return f"{low}s" if width == 10 and 1000 <= low <= 2999 else f"{low}-{low + width - 1}"


class TemplateBackend:
    """Texts from ``.item`` fields and training histories by fixed templates."""

    name = "template"
    version = TEMPLATE_VERSION

    def __init__(
        self,
        item_text_fields: Sequence[str],
        user_profile_fields: Sequence[str],
        field_labels: Mapping[str, str] | None = None,
        profile_top_k: int = 5,
        history_window: int = 20,
        numeric_bucket: int = 10,
    ) -> None:
        self.item_text_fields = list(item_text_fields)
        self.user_profile_fields = list(user_profile_fields)
        self.labels = dict(field_labels or {})
        self.top_k = profile_top_k
        self.window = history_window
        self.numeric_bucket = numeric_bucket

    def item_texts(self, items: ItemFields) -> list[TextRecord]:
        records = []
        for token, fields in items.items():
            parts = [
                f"{_label(name, self.labels)}: {self._join(name, fields[name])}."
                for name in self.item_text_fields
                if fields.get(name)
            ]
            if parts:
                records.append(TextRecord(token, " ".join(parts), self.name, self.version))
        return records

    def _join(self, name: str, values: Sequence[str]) -> str:
        return join_values(values, categorical=name in self.user_profile_fields)

    def _shares(self, history: Sequence[str], items: ItemFields, name: str) -> list[tuple[str, float]]:
        counts: Counter[str] = Counter()
        for item in history:
            for value in items.get(item, {}).get(name, ()):
                counts[_bucket(value, self.numeric_bucket)] += 1
        total = sum(counts.values())
        # ties broken by value so the text is deterministic
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_k]
        return [(value, count / total) for value, count in ranked]

    def user_texts(self, histories: Histories, items: ItemFields) -> list[TextRecord]:
        records = []
        for token, history in histories.items():
            if not history:
                continue
            parts = []
            for name in self.user_profile_fields:
                shares = self._shares(history, items, name)
                if shares:
                    listed = ", ".join(f"{value} ({share:.0%})" for value, share in shares)
                    parts.append(f"Preferred {_label(name, self.labels)}: {listed}.")
            recent = history[-self.window :]
            for name in self.user_profile_fields:
                shares = self._shares(recent, items, name)[:3]
                if shares:
                    parts.append(f"Lately {_label(name, self.labels)}: {', '.join(v for v, _ in shares)}.")
            if parts:
                extra = {"history_len": len(history)}
                records.append(TextRecord(token, " ".join(parts), self.name, self.version, extra))
        return records
