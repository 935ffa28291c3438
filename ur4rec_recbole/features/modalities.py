"""Which item modalities a run uses (config ``modalities``)."""

from __future__ import annotations

from typing import Any

MODALITIES = ("text", "image")  # canonical order: the text model is ("text",)


def parse_modalities(value: Any) -> tuple[str, ...]:
    """``'text,image'`` or ``['image', 'text']`` -> ``('text', 'image')``; anything else is an error."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(name).strip() for name in names if str(name).strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown or not names:
        raise ValueError(
            f"modalities {value!r}: expected a non-empty subset of {list(MODALITIES)}, "
            f"e.g. 'text,image'" + (f" (unknown: {unknown})" if unknown else "")
        )
    return tuple(m for m in MODALITIES if m in names)
