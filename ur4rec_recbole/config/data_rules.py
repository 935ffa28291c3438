"""Settings derived from the data when nobody set them: the input length, and UR4Rec's backbone size.

A dataset's yaml holds facts about its files; what used to be tuned per
dataset is a rule of the data here, so a dataset nobody tuned on is sized the
way the tuned ones were. Each rule fills a setting that no source gave (no
``--key=value``, ``--config_files``, folder or package dataset yaml); the log
says what it chose and why (``prepare_run``). The rules reproduce what the
validation searches chose on both tuned datasets (docs/guides/protocol.md,
"Defaults that carry over"): amazon-office (p90 length 19, 2,420 items)
``MAX_ITEM_LIST_LENGTH`` 20, hidden size 128, batch 256; ml-100k (p90 length
242, 1,682 items) 50, 64, 64.

- ``MAX_ITEM_LIST_LENGTH`` (every sequential model): the 90th percentile of
  the training-portion lengths (each user's sequence less the two held-out
  items, or the ``.train`` part), rounded up to a multiple of 10, within [10, 50];
- ``hidden_size`` (models with ``sized_from_data``: UR4Rec): 128 from
  :data:`LARGE_CATALOGUE` items, else 64;
- ``train_batch_size`` (the same models): the smallest power of two that
  holds :data:`POSITIONS_PER_BATCH` input positions, so a step reads about the
  same number of positions whatever the length;
- ``selected_features`` (RecBole's feature-aware models: SASRecF, FDSA): the
  dataset's ``user_profile_fields`` (its category/brand-like item tokens),
  instead of RecBole's ``[class]``, which only ml-100k has.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from recbole.utils import ModelType

from ur4rec_recbole.config.dataset_files import inter_files

LENGTH_QUANTILE, LENGTH_STEP, LENGTH_RANGE = 90, 10, (10, 50)
LARGE_CATALOGUE = 2000  # items from which the backbone's hidden size is 128
POSITIONS_PER_BATCH = 64 * 50  # UR4Rec's batch and RecBole's default length: what ml-100k trains with


def mark_derived(config, keys) -> None:
    """Remember which settings the data decided (a run's record lists them: ``settings_from_data``)."""
    config.derived_settings = getattr(config, "derived_settings", set()) | set(keys)


def derived_again(config, key: str) -> bool:
    """Whether ``config`` would decide ``key`` from the data (nobody set it, or it is ``auto``)."""
    given = config.dataset_settings | set(config.external_config_dict)
    return key not in given or config[key] == "auto"


def training_lengths(config) -> tuple[np.ndarray, int]:
    """Each user's training-portion length (approximately, from the files) and the number of items."""
    files = inter_files(config)
    sep, user, item = config["field_separator"], config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]

    def column_of(path: Path) -> pd.DataFrame:  # the user and item columns, named without their types
        frame = pd.read_csv(path, sep=sep, dtype=str, encoding=config["encoding"], quoting=3)
        frame.columns = [str(c).lstrip("\ufeff").split(":")[0] for c in frame.columns]
        return frame[[user, item]]

    frames = [column_of(path) for path in files]
    items = pd.concat(frames)[item].nunique()
    counts = frames[0][user].value_counts().to_numpy()
    held_out = 0 if len(files) > 1 else 2  # own parts: the .train part is the training portion
    return np.maximum(counts - held_out, 1), int(items)


def length_rule(lengths: np.ndarray) -> int:
    """``MAX_ITEM_LIST_LENGTH``: the 90th percentile of the lengths, rounded up to a multiple of 10, in [10, 50]."""
    p90 = float(np.percentile(lengths, LENGTH_QUANTILE))
    return int(min(max(math.ceil(p90 / LENGTH_STEP) * LENGTH_STEP, LENGTH_RANGE[0]), LENGTH_RANGE[1]))


def hidden_rule(n_items: int) -> int:
    return 128 if n_items >= LARGE_CATALOGUE else 64


def batch_rule(length: int) -> int:
    return 1 << math.ceil(math.log2(POSITIONS_PER_BATCH / length))


def feature_rule(config) -> list[str]:
    """``selected_features`` from ``user_profile_fields`` when a model reads it and nobody set it; the log lines."""
    configured = config.dataset_settings | set(config.external_config_dict)
    fields = config["user_profile_fields"]
    if "selected_features" not in config.final_config_dict or "selected_features" in configured or not fields:
        return []
    config["selected_features"] = list(fields)
    mark_derived(config, ["selected_features"])
    return [f"selected_features is not set: {list(fields)}, the dataset's user_profile_fields (its item tokens; "
            "set --selected_features=[...] to override)"]


def apply_data_rules(config) -> list[str]:
    """Fill the unset settings the rules cover; return one log line per setting filled."""
    if config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return []
    features = feature_rule(config)
    configured = config.dataset_settings | set(config.external_config_dict)
    sized = getattr(config.model_class, "sized_from_data", False)
    wanted = [k for k in ("MAX_ITEM_LIST_LENGTH", *(("hidden_size", "train_batch_size") if sized else ()))
              if k not in configured]
    if not wanted or not all(path.is_file() for path in inter_files(config)):
        return features
    lengths, n_items = training_lengths(config)
    p90 = float(np.percentile(lengths, LENGTH_QUANTILE))
    length = length_rule(lengths) if "MAX_ITEM_LIST_LENGTH" in wanted else config["MAX_ITEM_LIST_LENGTH"]
    chosen = {"MAX_ITEM_LIST_LENGTH": (length, f"90th percentile of training lengths {p90:.0f}"),
              "hidden_size": (hidden_rule(n_items), f"{n_items} items ({'>=' if n_items >= LARGE_CATALOGUE else '<'} "
                                                    f"{LARGE_CATALOGUE})"),
              "train_batch_size": (batch_rule(length), f"about {POSITIONS_PER_BATCH} positions of length {length}")}
    notes = []
    for key in wanted:
        value, why = chosen[key]
        config[key] = value
        notes.append(f"{key} is not set: {value} from the data ({why}; set --{key}=N to override)")
    mark_derived(config, wanted)
    return features + notes
