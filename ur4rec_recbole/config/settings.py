"""Settings of this package's models, parsed and checked once, when the Config is built.

The Config normalises what every part reads (``modalities`` becomes a tuple)
and then calls the model class's ``check_settings(config)`` hook, so a bad
value (a negative loss weight, zero proxies, an unknown fusion) stops the run
before any data is loaded, and the model, the features and the trainer read
parsed values instead of parsing them again.
"""

from __future__ import annotations

import codecs
import difflib
import os
from pathlib import Path
from typing import Any, Collection

import yaml

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


HISTORY_MASKS = ("exclude_history", "train_exclude_history")  # run/protocol.py applies them to every model


def check_history_masks(config) -> None:
    """``exclude_history``/``train_exclude_history`` are True, False or auto (every model; ``run/protocol.py``)."""
    for key in HISTORY_MASKS:
        value = config[key]
        if not (value == "auto" or isinstance(value, bool)):
            raise InputError(f"setting {key}={value!r}: expected True, False or auto (auto: on when no user "
                             "repeats an item in their training portion)")


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
    """``config[key]`` is one of ``choices`` (a near miss is named)."""
    near = suggest(str(config[key]), [str(c) for c in choices]) if config[key] not in choices else None
    require(config, key, config[key] in choices, f"one of {sorted(choices)}" + (f"; did you mean {near!r}?" if near else ""))


def read_settings_file(path: str | os.PathLike, loader) -> dict:
    """One ``--config_files`` yaml file as a dict; a missing file, bad YAML or a non-mapping is one error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} (--config_files) does not exist: check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
        loaded = yaml.load(text, Loader=loader)
    except UnicodeDecodeError as err:
        raise InputError(f"config file {path}: byte {err.start} is not UTF-8; save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{where}: {problem} (YAML); write one `key: value` per line, lists as [a, b]") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(f"config file {path}: expected `key: value` lines, got a YAML {type(loaded).__name__}")
    return loaded


def line_of_key(path: str | os.PathLike, key: str) -> int | None:
    """The line of ``path`` where the top-level ``key:`` is set (for error messages)."""
    for number, line in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        if line.split(":", 1)[0].strip() == key and not line[:1].isspace():
            return number
    return None


def suggest(name: str, known: Collection[str]) -> str | None:
    """The known name closest to ``name`` (case-insensitive), or None."""
    lowered = {k.lower(): k for k in known}
    near = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[near[0]] if near else None


def parse_encoding(value: Any) -> str:
    """The codec of the atomic files; UTF-8 becomes ``utf-8-sig`` so that a byte-order mark is skipped."""
    try:
        name = codecs.lookup(str(value or "utf-8")).name
    except LookupError:
        raise InputError(f"setting encoding={value!r}: unknown encoding; e.g. utf-8, latin-1, cp1252") from None
    return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


def check_cold_items(config) -> None:
    """``cold_items`` is a fraction in [0, 1) and ``cold_items_seed`` an int (the protocol: data/split.py)."""
    if config["cold_items"] is None:
        config["cold_items"] = 0.0
    require_number(config, "cold_items", 0, 1)
    require(config, "cold_items", config["cold_items"] < 1, "a fraction of the items in [0, 1), e.g. 0.2")
    require_number(config, "cold_items_seed", integer=True)
    if config["cold_items"] and config["benchmark_filename"]:
        raise InputError(f"setting cold_items={config['cold_items']} needs RecBole's split, but "
                         f"benchmark_filename={config['benchmark_filename']} gives the parts: leave the cold items "
                         "out of your .train file yourself, or set cold_items: 0")


ENCODER_PRECISIONS = ("auto", "fp32", "bf16")  # of the sentence encoder (features/text_vectors.py)


def check_encoder_settings(config) -> None:
    """The sentence encoder's settings (``texts.yaml``)."""
    require_choice(config, "encoder_precision", ENCODER_PRECISIONS)
    require_number(config, "encoder_batch_size", 1, integer=True)
    require_number(config, "encoder_batch_tokens", 1, integer=True)
    if config["encoder_max_length"] is not None:
        require_number(config, "encoder_max_length", 1, integer=True)
