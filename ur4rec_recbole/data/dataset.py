"""``UR4RecDataset``: RecBole's sequential dataset plus text/image vectors.

RecBole's split and its validation/test rows are kept exactly. Two things
are added in ``build``:

1. each user's *training portion* (the history minus the items RecBole put
   in validation and test) is derived from the split itself and handed to
   the text builder, so no evaluation item can leak into a preference text;
2. with ``train_all_positions`` (default), the training rows are replaced by
   whole training sequences cut into windows of ``MAX_ITEM_LIST_LENGTH + 1``
   items, and the model learns from every position under a causal mask (as
   in the SASRec paper), instead of one row per prefix.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

from ur4rec_recbole.features import FeatureSet, prepare_features

TRAIN_FROM = "train_from"  # first position of a training window that carries a loss


def full_sequences(dataset: SequentialDataset) -> dict[int, np.ndarray]:
    """Each user's whole time-ordered item sequence (training, validation and test items).

    Rebuilt from the prefix rows of RecBole's data augmentation: the first row
    of a user holds the first item as its one-item history, and every row's
    target is the next item. Rows are grouped by user with a stable sort, so
    this holds before and after ``build`` reorders them (RecBole's sorts are
    stable). A user with one interaction has no row and no sequence.
    """
    feat = dataset.inter_feat
    uids = feat[dataset.uid_field].numpy()
    order = np.argsort(uids, kind="stable")
    uids = uids[order]
    targets = feat[dataset.iid_field].numpy()[order]
    first_items = feat[dataset.item_id_list_field][:, 0].numpy()[order]
    starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
    ends = np.r_[starts[1:], len(uids)]
    return {int(uids[s]): np.r_[first_items[s], targets[s:e]] for s, e in zip(starts, ends)}


class UR4RecDataset(SequentialDataset):
    """Sequential dataset whose ``features`` hold aligned text (and image) vectors."""

    features: FeatureSet

    def data_augmentation(self) -> None:
        super().data_augmentation()
        self.user_sequences = full_sequences(self)

    def training_portions(self, train_dataset) -> dict[int, np.ndarray]:
        """Each user's history minus the items RecBole holds out for validation and test.

        A user with ``c`` training rows has seen ``c + 1`` training items
        (the first item is only ever history).
        """
        counts = np.bincount(train_dataset.inter_feat[self.uid_field].numpy(), minlength=self.user_num)
        return {uid: seq[: counts[uid] + 1] for uid, seq in self.user_sequences.items()}

    def _window_rows(self, portions: dict[int, np.ndarray]) -> Interaction:
        """Cut each training portion into windows of at most ``L + 1`` items, newest first.

        Windows end every ``S = min(train_stride, L)`` items; a window's loss covers
        only its last ``S`` positions (``TRAIN_FROM`` marks the first), so every
        training item but the first is a target exactly once while ``S < L``
        gives each target at least ``L - S`` items of context.
        """
        length = self.max_item_list_len
        stride = min(self.config["train_stride"] or length, length)  # checked by UR4Rec.check_settings
        users, histories, lengths, targets, starts = [], [], [], [], []
        for uid, seq in portions.items():
            for end in range(len(seq), 1, -stride):
                window = seq[max(0, end - length - 1) : end]
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
        })

    def split_with_portions(self) -> tuple[list, dict[int, np.ndarray]]:
        """RecBole's (train, valid, test) split and each user's training portion, without features.

        The one place the leakage rule lives: text generation (``python -m
        ur4rec_recbole.cli.generate``) and training both take their histories from here.
        """
        datasets = super().build()
        return datasets, self.training_portions(datasets[0])

    def build(self) -> list:
        datasets, portions = self.split_with_portions()
        train = datasets[0]
        features = prepare_features(self.config, self, portions)
        for part in (self, *datasets):
            part.features = features
            part.training_histories = portions
        if self.config["train_all_positions"]:
            train.inter_feat = self._window_rows(portions)
        return datasets
