"""Staged training: the ``stages`` setting, parsed once (by ``UR4Rec.check_settings``).

A stage names its epochs, the parameter groups that train, and the loss
settings it overrides (``fusion``, ``retriever_weight``); settings it leaves
out take their configured values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ur4rec_recbole.errors import InputError

STAGE_KEYS = {"name", "epochs", "train", "retriever_weight", "fusion"}


def joint_stage(epochs: int) -> dict:
    """The single stage of a run without ``stages``: everything trains for ``epochs``."""
    return {"name": "joint", "epochs": int(epochs), "train": ["all"]}


def parse_stages(stages: Any, groups: tuple[str, ...]) -> list[dict] | None:
    """Validate the ``stages`` setting; ``None`` stays ``None`` (one joint stage of ``epochs``).

    ``groups`` are the parameter groups a stage may train (besides ``all``).
    """
    if stages is None:
        return None
    if not isinstance(stages, list) or not stages:
        raise InputError(f"setting stages={stages!r}: expected a non-empty list of dicts")
    parsed = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping):
            raise InputError(f"setting stages[{i}]={stage!r}: expected a dict")
        unknown = set(stage) - STAGE_KEYS
        if unknown:
            raise InputError(f"setting stages[{i}] has unknown keys {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}")
        if not isinstance(stage.get("epochs"), int) or isinstance(stage["epochs"], bool) or stage["epochs"] < 1:
            raise InputError(f"setting stages[{i}].epochs must be a positive int, got {stage.get('epochs')!r}")
        train = list(stage.get("train", ["all"]))
        bad = set(train) - set(groups) - {"all"}
        if bad:
            raise InputError(f"setting stages[{i}].train names unknown groups {sorted(bad)}; "
                             f"choose from {list(groups)} or 'all'")
        weight = stage.get("retriever_weight", 0.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise InputError(f"setting stages[{i}].retriever_weight must be a number >= 0, got {weight!r}")
        parsed.append({**stage, "name": str(stage.get("name", f"stage{i}")), "train": train})
    return parsed
