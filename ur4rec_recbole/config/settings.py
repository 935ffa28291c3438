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


ENCODER_PRECISIONS = ("auto", "fp32", "bf16")  # of the sentence encoder (features/text_vectors.py)


def check_encoder_settings(config) -> None:
    """The sentence encoder's settings (``texts.yaml``)."""
    require_choice(config, "encoder_precision", ENCODER_PRECISIONS)
    require_number(config, "encoder_batch_size", 1, integer=True)
    require_number(config, "encoder_batch_tokens", 1, integer=True)
    if config["encoder_max_length"] is not None:
        require_number(config, "encoder_max_length", 1, integer=True)
