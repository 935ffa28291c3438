"""Settings of this package's models, parsed and checked once, when the Config is built.

The Config normalises what every part reads (``modalities`` becomes a tuple)
and then calls the model class's ``check_settings(config)`` hook, so a bad
value (a negative loss weight, zero proxies, an unknown fusion) stops the run
before any data is loaded, and the model, the features and the trainer read
parsed values instead of parsing them again.
"""

from __future__ import annotations

import ast
import codecs
import difflib
import os
import re
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


class SettingsLoader(yaml.SafeLoader):
    """YAML's safe loader (no ``!!python/...`` tags: no object is built, no code runs) plus RecBole's float rule.

    RecBole reads yaml with ``FullLoader`` and adds a resolver so that ``1e-3``
    is a float (plain YAML 1.1 reads it as a string); the same resolver is
    added here, to the safe loader only, so every file reads as RecBole reads it.
    """


SettingsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:
         [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)

LITERAL_TYPES = (str, int, float, list, tuple, dict, bool)  # what a setting's value may be (None too)
CODE_NODES = (ast.Call, ast.Lambda, ast.NamedExpr, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
              ast.Await, ast.Yield, ast.YieldFrom)


def looks_like_code(text: str) -> bool:
    """Whether ``text`` is a Python expression that would run something (a call, a lambda, a dunder name)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, CODE_NODES):
            return True
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("__"):
            return True
    return False


def parse_setting(key: str, text: str, where: str = "setting") -> Any:
    """A setting's string value as the literal it spells; never evaluated as code.

    RecBole's ``Config`` ``eval()``s every string value (``--key=value``, a
    checkpoint's stored configuration, ``--compare`` entries), so a value could
    run code. Here numbers, strings, lists, dicts, tuples, ``True``/``False``/
    ``None`` are read with :func:`ast.literal_eval`; ``true``/``false`` in any
    case are booleans (as RecBole reads them); any other text stays a string,
    except text that is Python code (a call, a lambda, a dunder name), which is
    refused naming ``key``.
    """
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if looks_like_code(text):
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise InputError(f"{where} {key}={shown!r} is Python code, and settings are never run: give a literal "
                             "(a number, a string, a list [a, b], a dict {'k': v}, True, False or None)") from None
        return text
    if value is not None and not isinstance(value, LITERAL_TYPES):  # a set, bytes, a complex number: as RecBole
        return text
    return value


def read_settings_file(path: str | os.PathLike, loader=SettingsLoader) -> dict:
    """One ``--config_files`` yaml file as a dict; a missing file, bad YAML or a non-mapping is one error.

    ``loader`` must be safe (:class:`SettingsLoader`, the Config's ``yaml_loader``).
    """
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
        if isinstance(err, yaml.constructor.ConstructorError) and "python/" in problem:
            tag = problem.rsplit(" ", 1)[-1].strip("'").replace("tag:yaml.org,2002:", "!!")
            raise InputError(f"{where}: the tag {tag} would build a Python object, and settings files are never "
                             "run: give a literal value (a number, a string, a list, a dict)") from None
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


# RecBole's numeric settings every run reads: (key, int?, lowest, lowest excluded). Checked when the
# Config is built, so ``--epochs=-1`` or ``--seed=abc`` stops the run before any data is read.
RECBOLE_NUMBERS = (
    ("epochs", True, 1, False),
    ("seed", True, None, False),
    ("train_batch_size", True, 1, False),
    ("eval_batch_size", True, 1, False),
    ("stopping_step", True, 1, False),
    ("learning_rate", False, 0, True),
    ("weight_decay", False, 0, False),
    ("MAX_ITEM_LIST_LENGTH", True, 1, False),
)
EXAMPLES = {"epochs": 50, "seed": 2020, "train_batch_size": 2048, "eval_batch_size": 4096, "stopping_step": 5,
            "learning_rate": 0.001, "weight_decay": 0.0, "MAX_ITEM_LIST_LENGTH": 50}


def check_recbole_numbers(config) -> None:
    """RecBole's numeric settings (:data:`RECBOLE_NUMBERS`) have the right type and range.

    Integers from hyperopt or numpy (``numbers.Integral``) count as ints.
    """
    import numbers

    for key, integer, low, strict in RECBOLE_NUMBERS:
        if key not in config.final_config_dict or config[key] is None:
            continue
        value = config[key]
        ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
        if not integer and isinstance(value, numbers.Real) and not isinstance(value, bool):
            ok = ok and value == value  # not NaN
        if ok and low is not None:
            ok = value > low if strict else value >= low
        bound = "" if low is None else f" {'>' if strict else '>='} {low}"
        require(config, key, ok, f"{'an int' if integer else 'a number'}{bound}, e.g. --{key}="
                                 f"{EXAMPLES[key]}")
