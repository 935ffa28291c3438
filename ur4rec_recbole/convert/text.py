"""Text and id values made safe for RecBole's atomic-file reader.

RecBole 1.2.1 reads atomic files with ``pandas.read_csv(sep='\\t',
engine='python')`` and pandas' default CSV quoting: a field that *starts*
with ``"`` opens a quoted field that runs on across tabs and lines until the
next ``"``, and a tab or newline inside a field shifts or splits the row. So
every text value written by a converter goes through :func:`clean_text`
(HTML entities decoded, tags and control characters removed, whitespace
collapsed, ``"`` replaced by ``'``, a word cap), and every id through
:func:`check_id`. ``"`` is replaced everywhere, not only at the start, so
that the output matches ``make_atomic.py`` of the shared amazon-office data.
"""

from __future__ import annotations

import html
import re
from typing import Any, Iterable

TAG = re.compile(r"<[^>]+>")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# strings pandas reads as missing (pandas._libs.parsers.STR_NA_VALUES); an id equal to one would be
# dropped by RecBole's NaN filter, so such ids are refused.
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                       "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def flatten(value: Any) -> list[str]:
    """Strings of ``value`` in order: a string, or nested lists/tuples of them; None and '' dropped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [text for part in value for text in flatten(part)]
    if isinstance(value, dict):  # e.g. a details dict: its values
        return flatten(list(value.values()))
    text = str(value)
    return [text] if text.strip() else []


def clean_text(value: Any, max_words: int | None = None, joiner: str = " ") -> str:
    """One line of plain text: lists joined by ``joiner``, HTML unescaped and stripped, ``"`` -> ``'``.

    At most ``max_words`` whitespace-separated words are kept.
    """
    text = joiner.join(flatten(value))
    text = TAG.sub(" ", html.unescape(text))
    words = CONTROL.sub(" ", text).replace('"', "'").split()
    return " ".join(words[:max_words] if max_words else words)


def clean_list(values: Iterable[Any], max_words: int | None = None) -> list[str]:
    """Each value cleaned; empty ones and repeats dropped, first occurrence kept."""
    seen: dict[str, None] = {}
    for value in values:
        text = clean_text(value, max_words)
        if text:
            seen.setdefault(text, None)
    return list(seen)


def check_id(value: str, what: str) -> str:
    """``value`` stripped, or ValueError when RecBole's reader would not read it back as the same token."""
    token = value.strip()
    if token in PANDAS_NA:
        raise ValueError(f"{what} {value!r} is empty or would be read as missing by RecBole's reader")
    if CONTROL.search(token) or token.startswith('"'):
        raise ValueError(f"{what} {value!r} contains a tab, newline or control character, or starts with '\"'")
    return token
