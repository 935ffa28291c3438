"""``SplitDataset``: RecBole's sequential split, each user's training portion, and the cold-item protocol.

Every sequential model without a dataset of its own (RecBole's SASRec,
GRU4Rec, ..., and this package's non-learned baselines) is read through this
class, and ``UR4RecDataset`` extends it, so the training portions, the
training frequencies of the bucket report and the cold items come from one
place for all of them. Without ``cold_items`` the split and every row are
RecBole's, unchanged.

Cold-item protocol (``cold_items: FRACTION``): after RecBole's split, the
chosen items are removed from every model input. They leave every training
portion (so their ID embeddings are never trained and no preference text
mentions them), every training row and every validation/test history; they
stay validation/test targets, which only text or images can score. A
validation or test row whose history held cold items only is left out (it
gives a model no input), and the log says how many.
"""

from __future__ import annotations

from logging import getLogger

import numpy as np
import torch
import recbole.data.dataset
from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import ModelType

from ur4rec_recbole.data.atomic import CheckedAtomicFiles, recbole_dataset_class, with_checked_reading
from ur4rec_recbole.errors import InputError


def choose_cold_items(tokens: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``round(fraction * len(tokens))`` of the raw ``tokens``, drawn without replacement (sorted).

    The draw depends on the sorted token set and ``seed`` alone, so every model
    and every training seed of a dataset gets the same cold items.
    """
    pool = np.sort(np.asarray(tokens, dtype=str))
    count = int(round(fraction * len(pool)))
    picked = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return np.sort(pool[picked])


class SplitDataset(CheckedAtomicFiles, SequentialDataset):
    """RecBole's sequential dataset and split, with training portions and (optionally) cold items.

    Atomic files are checked before RecBole reads them (:class:`CheckedAtomicFiles`).
    """

    cold_items: np.ndarray  # internal ids of the cold items (empty without the protocol)
    training_histories: dict[int, np.ndarray]  # each user's training portion (cold items removed)

    def data_augmentation(self) -> None:
        super().data_augmentation()
        # every field's sequences, while inter_feat still holds all prefix rows by user and time
        self.sequences = {field: self._sequences_from_prefix_rows(field)
                          for field in self.inter_feat if hasattr(self, f"{field}_list_field")}
        self.user_sequences = self.sequences[self.iid_field]

    def _sequences_from_prefix_rows(self, field: str) -> dict[int, np.ndarray]:
        """Each user's full time-ordered sequence of ``field``, rebuilt from RecBole's prefix rows.

        The first row of a user holds the first interaction as its one-item
        history; every row's own value is the next one.
        """
        uids = self.inter_feat[self.uid_field].numpy()
        values = self.inter_feat[field].numpy()
        first = self.inter_feat[getattr(self, f"{field}_list_field")][:, 0].numpy()
        starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
        ends = np.r_[starts[1:], len(uids)]
        return {int(uids[s]): np.r_[first[s : s + 1], values[s:e]] for s, e in zip(starts, ends)}

    def training_portions(self, train_dataset) -> dict[int, np.ndarray]:
        """Each user's history minus the items RecBole holds out for validation and test.

        A user with ``c`` training rows has seen ``c + 1`` training items
        (the first item is only ever history).
        """
        counts = np.bincount(train_dataset.inter_feat[self.uid_field].numpy(), minlength=self.user_num)
        return {uid: seq[: counts[uid] + 1] for uid, seq in self.user_sequences.items()}

    def split_with_portions(self) -> tuple[list, dict[int, np.ndarray]]:
        """RecBole's (train, valid, test) split and each user's training portion, without features.

        The one place the leakage rule lives: text generation (``python -m
        ur4rec_recbole.cli.generate``) and training both take their histories
        from here; under ``cold_items`` the portions and every row are already
        free of the cold items.
        """
        datasets = super().build()
        portions = self.training_portions(datasets[0])
        cold = self._cold_item_ids()
        if cold.size:
            warm = np.ones(self.item_num, dtype=bool)
            warm[cold] = False
            portions = {uid: portion[warm[portion]] for uid, portion in portions.items()}
            self._remove_cold_items(datasets, warm)
        for part in (self, *datasets):
            part.cold_items = cold
        return datasets, portions

    def build(self) -> list:
        datasets, portions = self.split_with_portions()
        for part in (self, *datasets):
            part.training_histories = portions
        return datasets

    # -- cold-item protocol ------------------------------------------------
    def _cold_item_ids(self) -> np.ndarray:
        """Internal ids of the cold items (``cold_items`` of the items that have interactions)."""
        fraction = self.config["cold_items"] or 0.0  # checked by the Config (config/settings.py)
        if not fraction:
            return np.zeros(0, dtype=np.int64)
        seen = np.unique(np.concatenate(list(self.user_sequences.values())))
        tokens = choose_cold_items(self.id2token(self.iid_field, seen), fraction, self.config["cold_items_seed"])
        ids = np.sort(np.asarray(self.token2id(self.iid_field, tokens), dtype=np.int64).reshape(-1))
        getLogger().info(f"cold_items={fraction}: {len(ids)} of {len(seen)} items are cold "
                         f"(cold_items_seed={self.config['cold_items_seed']}); they are removed from every "
                         "training portion and every history and stay validation/test targets")
        return ids

    def _remove_cold_items(self, datasets: list, warm: np.ndarray) -> None:
        """Rebuild every part's rows on the users' sequences without the cold items.

        A row whose target is the ``p``-th interaction of its user gets as
        history the last ``MAX_ITEM_LIST_LENGTH`` warm interactions before it
        (every list field: items, timestamps, ratings ...). Training rows with a
        cold target go; so do rows of any part left without a history.
        """
        list_fields = {f: getattr(self, f"{f}_list_field") for f in self.sequences}
        warm_at = {uid: np.flatnonzero(warm[seq]) for uid, seq in self.user_sequences.items()}  # warm positions
        next_position = dict.fromkeys(self.user_sequences, 1)  # a user's rows run train -> valid -> test in time
        names = ("training", "validation", "test") if len(datasets) == 3 else ("training", "test")
        dropped = {}
        for part, name in zip(datasets, names):
            rows = part.inter_feat
            uids = rows[self.uid_field].numpy()
            keep, picks = [], []
            for r, uid in enumerate(uids):
                position = next_position[uid]  # the row's target is the user's interaction at this position
                next_position[uid] += 1
                before = warm_at[uid][: np.searchsorted(warm_at[uid], position)][-self.max_item_list_len :]
                cold_target = not warm[self.user_sequences[uid][position]]
                if len(before) and not (name == "training" and cold_target):
                    keep.append(r)
                    picks.append(before)
            if name != "training":
                dropped[name] = len(uids) - len(keep)
            kept = rows[torch.tensor(keep, dtype=torch.long)]
            lengths = np.array([len(p) for p in picks], dtype=np.int64)
            columns = {self.item_list_length_field: torch.from_numpy(lengths)}
            for field, list_field in list_fields.items():
                column = torch.zeros_like(kept[list_field])
                for r, (uid, pick) in enumerate(zip(kept[self.uid_field].numpy(), picks)):
                    column[r, : len(pick)] = torch.as_tensor(self.sequences[field][uid][pick])
                columns[list_field] = column
            kept.update(Interaction(columns))
            part.inter_feat = kept
        if any(dropped.values()):
            counts = " and ".join(f"{n} {name}" for name, n in dropped.items())
            getLogger().warning(f"cold_items: {counts} rows had only cold items in their history and are left "
                                "out of evaluation")


def recbole_dataset(config):
    """The dataset of a RecBole model: ``SplitDataset`` for its plain sequential models, else RecBole's choice.

    Either reads checked atomic files (a dataset RecBole saved, ``save_dataset``,
    is RecBole's to load). RecBole's own dataset classes (``DIENDataset``,
    ``KSRDataset``, ...) know nothing of the cold-item protocol, which is then refused.
    """
    own = hasattr(recbole.data.dataset, f"{config['model']}Dataset")
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and not own:
        return SplitDataset(config)
    if config["cold_items"]:
        why = ("reads RecBole's own dataset class" if own else "is not a sequential model") + ", which cannot"
        raise InputError(f"setting cold_items={config['cold_items']}: {config['model']} {why} leave the cold "
                         "items out; use a plain sequential model (SASRec, GRU4Rec, UR4Rec, Transitions, ...) "
                         "or cold_items: 0")
    if config["save_dataset"] or config["dataset_save_path"]:  # RecBole loads (or saves) a pickled dataset
        return recbole_create_dataset(config)
    return with_checked_reading(recbole_dataset_class(config))(config)
