"""RecBole's params-file format, read once, turned into hyperopt or Ray Tune spaces.

One parameter per line, ``name type values`` (``#`` starts a comment)::

    learning_rate loguniform -8,-5       # exp(uniform(-8, -5)), as hyperopt's loguniform
    hidden_size choice [32,64]
    retriever_weight uniform 0,0.5
    train_stride quniform 5,20,5

``loguniform`` bounds are natural logs of the values, as in RecBole/hyperopt;
the Ray space uses the same distribution (``tune.loguniform(e^lo, e^hi)``).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

from ur4rec_recbole.errors import require

TYPES = ("choice", "uniform", "quniform", "loguniform")
_BOUNDS = {"uniform": 2, "quniform": 3, "loguniform": 2}


@dataclass(frozen=True)
class Param:
    """One searched parameter: its name, distribution type and values or bounds."""

    name: str
    kind: str
    values: tuple


def read_params(path: str | Path) -> list[Param]:
    """Parse a params file; every bad line is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} does not exist")
    params: list[Param] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}, line {number}"
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"{where}: expected 'name type values', got {raw.strip()!r}")
        name, kind, text = parts[0], parts[1], "".join(parts[2].split())
        if kind not in TYPES:
            raise ValueError(f"{where}: type {kind!r} unknown; use one of {', '.join(TYPES)}")
        if any(p.name == name for p in params):
            raise ValueError(f"{where}: {name} is already searched on an earlier line")
        if kind == "choice":
            try:
                values = ast.literal_eval(text)
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"{where}: choice values must be a Python list literal, got {text!r}") from err
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: choice values must be a non-empty list, got {text!r}")
        else:
            try:
                values = [float(v) for v in text.split(",")]
            except ValueError as err:
                raise ValueError(f"{where}: {kind} bounds must be numbers, got {text!r}") from err
            if len(values) != _BOUNDS[kind] or values[0] >= values[1]:
                raise ValueError(f"{where}: {kind} expects {_BOUNDS[kind]} numbers low,high"
                                 f"{',q' if kind == 'quniform' else ''} with low < high, got {text!r}")
        params.append(Param(name, kind, tuple(values)))
    if not params:
        raise ValueError(f"{path} defines no parameter")
    return params


def hyperopt_space(params: list[Param]) -> dict:
    """The space RecBole's ``HyperTuning`` builds from the same file."""
    hp = require("hyperopt.hp", "hyper", "--hyper --tool hyperopt")

    build = {
        "choice": lambda p: hp.choice(p.name, list(p.values)),
        "uniform": lambda p: hp.uniform(p.name, *p.values),
        "quniform": lambda p: hp.quniform(p.name, *p.values),
        "loguniform": lambda p: hp.loguniform(p.name, *p.values),
    }
    return {p.name: build[p.kind](p) for p in params}


def tune_space(params: list[Param], grid: bool) -> dict:
    """A Ray Tune ``param_space``; ``grid`` makes every ``choice`` a grid axis (each value tried)."""
    tune = require("ray.tune", "hyper", "--hyper --tool ray")

    build = {
        "choice": lambda p: (tune.grid_search if grid else tune.choice)(list(p.values)),
        "uniform": lambda p: tune.uniform(*p.values),
        "quniform": lambda p: tune.quniform(*p.values),
        "loguniform": lambda p: tune.loguniform(math.exp(p.values[0]), math.exp(p.values[1])),
    }
    return {p.name: build[p.kind](p) for p in params}


def grid_size(params: list[Param]) -> int:
    """Number of combinations of the ``choice`` parameters."""
    return math.prod(len(p.values) for p in params if p.kind == "choice")
