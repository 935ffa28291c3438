"""Whether users repeat items: what ``auto`` history masks are decided from (``run/protocol.py``).

Read from the training portions only (``SplitDataset.training_histories``),
so the decision never looks at a validation or test interaction.
"""

from __future__ import annotations

from logging import getLogger
from typing import Mapping

import numpy as np

from ur4rec_recbole.config.data_rules import mark_derived
from ur4rec_recbole.config.settings import HISTORY_MASKS as MASKS


def repeating_users(portions: Mapping[int, np.ndarray]) -> int:
    """How many users hold an item twice in their training portion."""
    return sum(len(np.unique(p)) < len(p) for p in portions.values())


def decide_masks(config, dataset) -> dict[str, bool]:
    """Resolve ``auto`` on ``dataset`` (a training split) and write the booleans into ``config``; log one line."""
    values = {key: config[key] for key in MASKS}
    if "auto" in values.values():
        portions = getattr(dataset, "training_histories", None)
        if portions is None:  # not a sequential split: nothing to mask
            repeat, why = True, "the dataset has no input sequences"
        else:
            count = repeating_users(portions)
            repeat = count > 0
            why = (f"{count} of {len(portions)} users repeat an item in their training portion" if repeat
                   else f"no user of {len(portions)} repeats an item in their training portion")
        auto = [key for key, value in values.items() if value == "auto"]
        for key in auto:
            values[key] = not repeat
        getLogger().info(f"{' and '.join(auto)}=auto -> {not repeat}: {why}")
        mark_derived(config, auto)
    for key, value in values.items():
        config[key] = value
    return values
