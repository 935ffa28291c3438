"""``UR4RecDataset``: RecBole's sequential dataset plus text/image vectors.

RecBole's split and its validation/test rows are kept exactly
(:class:`~ur4rec_recbole.data.split.SplitDataset`). Two things are added in ``build``:

1. each user's *training portion* (the history minus the items RecBole put
   in validation and test, and minus the cold items under ``cold_items``) is
   derived from the split itself and handed to the text builder, so no
   evaluation item can leak into a preference text;
2. with ``train_all_positions`` (default), the training rows are replaced by
   whole training sequences cut into windows of ``MAX_ITEM_LIST_LENGTH + 1``
   items, and the model learns from every position under a causal mask (as
   in the SASRec paper), instead of one row per prefix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from recbole.data.interaction import Interaction

from ur4rec_recbole.formats.atomic import read_header
from ur4rec_recbole.config.settings import suggest
from ur4rec_recbole.data.split import SplitDataset
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features import FeatureSet, prepare_features
from ur4rec_recbole.texts.build import template_fields

TRAIN_FROM = "train_from"  # first position of a training window that carries a loss
HISTORY_START = "history_start"  # index in the user's training portion of a training row's first history item


def check_text_inputs(config) -> None:
    """Before any atomic file is read: the template texts' columns exist in ``.item`` and are loaded."""
    if config["text_source"] != "template" or (config["item_vector_file"] and config["user_vector_file"]):
        return
    path = Path(config["data_path"]) / f"{config['dataset']}.item"
    if not path.is_file():  # first: without it there is nothing to choose text fields from (zero-config)
        named = [*(config["item_text_fields"] or []), *(config["user_profile_fields"] or [])]
        raise InputError(
            f"{path} does not exist, but the template texts read item_text_fields and user_profile_fields "
            f"({', '.join(dict.fromkeys(named)) or 'unset'}) from it: add the .item file (item_id:token plus "
            f"columns such as title:token_seq), or set item_vector_file and user_vector_file"
        )
    fields = template_fields(config)
    columns = [c.name for c in read_header(path, config["field_separator"], config["encoding"])]
    loaded = (config["load_col"] or {}).get("item") if isinstance(config["load_col"], dict) else None
    for name in fields:
        key = "item_text_fields" if name in config["item_text_fields"] else "user_profile_fields"
        if name not in columns:
            near = suggest(name, columns)
            raise InputError(f"setting {key} names {name!r}, which is not a column of {path} "
                             f"({'did you mean ' + repr(near) + '? ' if near else ''}columns: {', '.join(columns)})")
        if loaded is not None and name not in loaded:
            raise InputError(f"setting {key} names {name!r}, but load_col does not load it from {path.name}: "
                             f"add it to load_col's item list ({loaded})")


class UR4RecDataset(SplitDataset):
    """Sequential dataset whose ``features`` hold aligned text (and image) vectors."""

    features: FeatureSet

    def __init__(self, config) -> None:
        check_text_inputs(config)
        super().__init__(config)

    def _window_rows(self, portions: dict[int, np.ndarray]) -> Interaction:
        """Cut each training portion into windows of at most ``L + 1`` items, newest first.

        Windows end every ``S = min(train_stride, L)`` items; a window's loss covers
        only its last ``S`` positions (``TRAIN_FROM`` marks the first), so every
        training item but the first is a target exactly once while ``S < L``
        gives each target at least ``L - S`` items of context.
        """
        length = self.max_item_list_len
        stride = min(self.config["train_stride"] or length, length)  # checked by UR4Rec.check_settings
        users, histories, lengths, targets, starts, offsets = [], [], [], [], [], []
        for uid, seq in portions.items():
            for end in range(len(seq), 1, -stride):
                window = seq[max(0, end - length - 1) : end]
                offsets.append(max(0, end - length - 1))
                users.append(uid)
                histories.append(np.pad(window[:-1], (0, length - len(window) + 1)))
                lengths.append(len(window) - 1)
                targets.append(window[-1])
                starts.append(max(0, len(window) - 1 - stride))
        return Interaction({
            self.uid_field: torch.tensor(users, dtype=torch.long),
            self.item_id_list_field: torch.tensor(np.array(histories).reshape(-1, length), dtype=torch.long),
            self.item_list_length_field: torch.tensor(lengths, dtype=torch.long),
            self.iid_field: torch.tensor(targets, dtype=torch.long),
            TRAIN_FROM: torch.tensor(starts, dtype=torch.long),
            HISTORY_START: torch.tensor(offsets, dtype=torch.long),
        })

    def _mark_history_starts(self, rows: Interaction) -> None:
        """Add ``HISTORY_START`` to RecBole's prefix rows (``train_all_positions: False``).

        A user's training rows run in time order and their targets are the
        portion's items ``1..n-1`` (also under ``cold_items``, which drops the
        rows of cold targets from rows and portion alike), so the ``p``-th row's
        history ends at portion index ``p``.
        """
        uids = rows[self.uid_field].numpy()
        first = np.r_[True, uids[1:] != uids[:-1]]
        run_start = np.maximum.accumulate(np.where(first, np.arange(len(uids)), 0))
        rank = np.arange(len(uids)) - run_start  # p: the row's rank within its user
        starts = rank + 1 - rows[self.item_list_length_field].numpy()
        rows.update(Interaction({HISTORY_START: torch.from_numpy(starts.astype(np.int64))}))

    def build(self) -> list:
        datasets = super().build()  # the split, with training_histories on every part
        portions = self.training_histories
        features = prepare_features(self.config, self, portions)
        for part in (self, *datasets):
            part.features = features
        if self.config["train_all_positions"]:
            datasets[0].inter_feat = self._window_rows(portions)
        else:
            self._mark_history_starts(datasets[0].inter_feat)
        return datasets


class TextKNNDataset(UR4RecDataset):
    """The text vectors UR4Rec reads (``features``), for the text baselines (``model/baselines.py``).

    Their configs leave ``train_all_positions`` unset: nothing is trained, so
    the training rows stay RecBole's.
    """


class UniSRecDataset(UR4RecDataset):
    """The frozen item text vectors UniSRec adapts (``features``; ``model/unisrec.py``).

    Its config leaves ``train_all_positions`` unset: it trains on RecBole's
    prefix rows, as the paper's SASRec-style fine-tuning does.
    """
