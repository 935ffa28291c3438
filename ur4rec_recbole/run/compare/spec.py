"""The ``--compare`` list: ``UR4Rec,UR4Rec[retriever_weight=0],SASRec[MAX_ITEM_LIST_LENGTH=20]``.

Models are separated by commas outside brackets; a model's overrides sit in
one pair of brackets, separated by ``;`` (commas may appear inside values,
e.g. ``SASRec[topk=[10,20];n_layers=1]``). Values are strings that the
Config reads as it reads ``--key=value``: as literals, never as code
(docs/security.md). The spec text is the row label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class RunSpec:
    """One model of the comparison: its label, model name and overrides."""

    label: str
    model: str
    overrides: dict[str, str] = field(default_factory=dict)


def _split_top_level(text: str, sep: str, where: str) -> list[str]:
    """Split ``text`` on ``sep`` outside any brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"{where}: unbalanced '{char}' at character {i + 1} of {text!r}")
        elif char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"{where}: unclosed bracket in {text!r}")
    parts.append(text[start:])
    return parts


def parse_spec(text: str) -> RunSpec:
    """``'SASRec[a=1;b=[1,2]]'`` -> ``RunSpec('SASRec[a=1;b=[1,2]]', 'SASRec', {'a': '1', 'b': '[1,2]'})``."""
    text = text.strip()
    name = _NAME.match(text)
    if name is None:
        raise ValueError(f"--compare entry {text!r} must start with a model name")
    rest = text[name.end():]
    overrides: dict[str, str] = {}
    if rest:
        if not (rest.startswith("[") and rest.endswith("]")):
            raise ValueError(f"--compare entry {text!r}: expected MODEL or MODEL[key=value;...]")
        for item in _split_top_level(rest[1:-1], ";", f"--compare entry {text!r}"):
            key, eq, value = item.strip().partition("=")
            if not eq or not _NAME.fullmatch(key.strip()) or not value.strip():
                raise ValueError(f"--compare entry {text!r}: override {item!r} is not key=value")
            if key.strip() in overrides:
                raise ValueError(f"--compare entry {text!r}: {key.strip()} given twice")
            overrides[key.strip()] = value.strip()
    return RunSpec(text, name.group(), overrides)


def parse_specs(text: str) -> list[RunSpec]:
    """Parse a whole ``--compare`` value; labels must be unique."""
    specs = [parse_spec(part) for part in _split_top_level(text, ",", "--compare") if part.strip()]
    if not specs:
        raise ValueError("--compare lists no model")
    labels = [s.label for s in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"--compare lists {duplicates} more than once")
    return specs
