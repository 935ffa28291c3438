"""Settings of this package's models, parsed and checked once, when the Config is built.

The Config normalises what every part reads (``modalities`` becomes a tuple)
and then calls the model class's ``check_settings(config)`` hook, so a bad
value (a negative loss weight, zero proxies, an unknown fusion) stops the run
before any data is loaded, and the model, the features and the trainer read
parsed values instead of parsing them again.
"""

from __future__ import annotations

from typing import Any

from ur4rec_recbole.errors import InputError

MODALITIES = ("text", "image")  # canonical order: the text model is ("text",)


def parse_modalities(value: Any) -> tuple[str, ...]:
    """``'text,image'`` or ``['image', 'text']`` -> ``('text', 'image')``; anything else is an error."""
    names = value.split(",") if isinstance(value, str) else list(value or [])
    names = [str(name).strip() for name in names if str(name).strip()]
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown or not names:
        raise InputError(
            f"setting modalities={value!r}: expected a non-empty subset of {list(MODALITIES)}, "
            f"e.g. 'text,image'" + (f" (unknown: {unknown})" if unknown else "")
        )
    return tuple(m for m in MODALITIES if m in names)


def require(config, key: str, ok: bool, expected: str) -> None:
    """Raise one clear error for setting ``key`` unless ``ok``."""
    if not ok:
        raise InputError(f"setting {key}={config[key]!r}: expected {expected}")


def require_number(config, key: str, low: float | None = None, high: float | None = None,
                   integer: bool = False, strict_low: bool = False) -> None:
    """``config[key]`` is a number (an int when ``integer``) within the bounds."""
    value = config[key]
    kind = "an int" if integer else "a number"
    numeric = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = numeric and not isinstance(value, bool)
    if ok and low is not None:
        ok = value > low if strict_low else value >= low
    if ok and high is not None:
        ok = value <= high
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if strict_low else '>='} {low}")
    if high is not None:
        bounds.append(f"<= {high}")
    require(config, key, ok, f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}")


def require_choice(config, key: str, choices) -> None:
    """``config[key]`` is one of ``choices``."""
    require(config, key, config[key] in choices, f"one of {sorted(choices)}")


def check_cold_items(config) -> None:
    """``cold_items`` is a fraction in [0, 1) and ``cold_items_seed`` an int (the protocol: data/split.py)."""
    if config["cold_items"] is None:
        config["cold_items"] = 0.0
    require_number(config, "cold_items", 0, 1)
    require(config, "cold_items", config["cold_items"] < 1, "a fraction of the items in [0, 1), e.g. 0.2")
    require_number(config, "cold_items_seed", integer=True)
