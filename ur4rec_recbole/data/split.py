"""``SplitDataset``: RecBole's sequential split, each user's training portion, and the cold-item protocol.

Every sequential model without a dataset of its own (RecBole's SASRec,
GRU4Rec, ..., and this package's non-learned baselines) is read through this
class, and ``UR4RecDataset`` extends it, so the training portions, the
training frequencies of the bucket report and the cold items come from one
place for all of them. Without ``cold_items`` the split and every row are
RecBole's, unchanged.

Own splits (``benchmark_filename: [train, valid, test]``): the parts are the
files ``<name>.<part>.inter``. In RecBole's sequential format (each row with
its ``item_id_list``) the rows are used as given; plain interaction rows get
their histories here, a training row's from the training part only. Either
way a user's training portion is their ``.train`` part.

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
from recbole.data.interaction import Interaction, cat_interactions
from recbole.utils import ModelType

from ur4rec_recbole.data.reading import CheckedAtomicFiles, recbole_dataset_class, with_checked_reading
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
    rows_given = False  # pre-split files in RecBole's sequential format (each row carries its history)

    def _benchmark_presets(self) -> None:
        # RecBole's pre-split sequential files give each row its history (item_id_list); plain
        # interaction rows get theirs in _split_pre_split_interactions
        self.rows_given = self.iid_field + self.config["LIST_SUFFIX"] in self.inter_feat
        if self.rows_given:
            super()._benchmark_presets()

    def data_augmentation(self) -> None:
        super().data_augmentation()
        if not len(self.inter_feat):  # RecBole's augmentation gives a row per interaction after a user's first
            raise InputError(f"{self.dataset_path}/{self.dataset_name}.inter: no user has two or more interactions "
                             "(after RecBole's filtering), so there is no sequence to train on or to evaluate; "
                             "leave-one-out needs at least 3 interactions per user")
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
        free of the cold items. With ``benchmark_filename`` the parts are the
        user's own files and a training portion is the user's ``.train`` part.
        """
        if self.benchmark_filename_list is None:
            datasets = super().build()
            portions = self.training_portions(datasets[0])
        elif self.rows_given:
            datasets = super().build()  # RecBole's parts, one per file, rows as given
            portions = self._portions_from_given_rows(datasets[0])
        else:
            datasets, portions = self._split_pre_split_interactions()
        cold = self._cold_item_ids()
        if cold.size:
            warm = np.ones(self.item_num, dtype=bool)
            warm[cold] = False
            portions = {uid: portion[warm[portion]] for uid, portion in portions.items()}
            self._remove_cold_items(datasets, warm)
        for part in (self, *datasets):
            part.cold_items = cold
        self._log_repeated_targets(datasets)
        return datasets, portions

    def _log_repeated_targets(self, datasets: list) -> None:
        """Warn about validation/test rows whose target is the item just before it in the user's history.

        Exact duplicate rows are removed when read (``drop_duplicate_rows``);
        what is left is a repeat that differs in some column: real repeat
        consumption (scored as any other target), or a copy made with a new
        timestamp, which would leak the target. The log names the users so
        that the data can be checked.
        """
        counts = {}
        for part, name in zip(datasets[1:], self._part_names(datasets)[1:]):
            rows = part.inter_feat
            lengths = rows[self.item_list_length_field].numpy()
            if not len(lengths):
                continue
            last = rows[self.item_id_list_field].numpy()[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
            same = (lengths > 0) & (last == rows[self.iid_field].numpy())
            if same.any():
                users = self.id2token(self.uid_field, np.unique(rows[self.uid_field].numpy()[same]))
                counts[name] = (int(same.sum()), [str(u) for u in np.atleast_1d(users)[:5]])
        if counts:
            said = " and ".join(f"{n} {name}" for name, (n, _) in counts.items())
            users = sorted({u for _, shown in counts.values() for u in shown})[:5]
            getLogger().warning(f"{said} targets are the same item as the one just before them (users "
                                f"{', '.join(users)}{', ...' if sum(n for n, _ in counts.values()) > len(users) else ''}): "
                                "a repeat purchase is scored as any target, but a copied row with a new time "
                                "leaks the target; check these rows (docs/security.md)")

    def build(self) -> list:
        datasets, portions = self.split_with_portions()
        for part in (self, *datasets):
            part.training_histories = portions
        return datasets

    # -- pre-split files (benchmark_filename) -------------------------------
    def _split_pre_split_interactions(self) -> tuple[list, dict[int, np.ndarray]]:
        """One row per interaction of the files ``<name>.<part>.inter``, in the parts the files make.

        A row's history is the user's earlier interactions (by time; the last
        ``MAX_ITEM_LIST_LENGTH``) from its own part and the parts listed before
        it: a training row sees training interactions only, a validation row
        training and validation ones, a test row all. A user's training portion
        is the ``.train`` part, so no training input and no text holds a
        validation or test item, whatever the files' times. Rows without an
        earlier interaction have no input and are left out (counted in the log).
        """
        part = np.repeat(np.arange(len(self.file_size_list)), self.file_size_list)  # rows are in file order
        self._change_feat_format()
        self._drop_unused_col()
        self._aug_presets()  # a list field per interaction field, as RecBole's augmentation makes
        uids, times = self.inter_feat[self.uid_field].numpy(), self.inter_feat[self.time_field].numpy()
        order = np.lexsort((part, times, uids))
        self.inter_feat, part, uids = self.inter_feat[order], part[order], uids[order]
        starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
        ends = np.r_[starts[1:], len(uids)]
        self.sequences = {field: {int(uids[s]): self.inter_feat[field].numpy()[s:e] for s, e in zip(starts, ends)}
                          for field in self.inter_feat if hasattr(self, f"{field}_list_field")}
        self.user_sequences = self.sequences[self.iid_field]
        rows = [[] for _ in self.file_size_list]  # per part: (row, user, positions of its history)
        for s, e in zip(starts, ends):
            user_part = part[s:e]
            for level in np.unique(user_part):
                visible = np.flatnonzero(user_part <= level)
                for j in np.flatnonzero(user_part == level):
                    before = visible[: np.searchsorted(visible, j)][-self.max_item_list_len :]
                    rows[level].append((s + j, int(uids[s]), before))
        datasets = []
        for picked in rows:
            kept = [(r, uid, before) for r, uid, before in picked if len(before)]
            part_rows = self.inter_feat[torch.tensor([r for r, _, _ in kept], dtype=torch.long)]
            part_rows.update(Interaction(self._history_columns([u for _, u, _ in kept], [b for _, _, b in kept])))
            datasets.append(self.copy(part_rows))
        self._log_rows_left_out({name: len(picked) - len(d.inter_feat) for name, picked, d
                                 in zip(self._part_names(datasets), rows, datasets)}, "had no earlier interaction")
        self.inter_feat = cat_interactions([d.inter_feat for d in datasets])
        portions = {uid: seq[part[s:e] == 0] for (uid, seq), s, e in zip(self.user_sequences.items(), starts, ends)}
        return datasets, portions

    def _portions_from_given_rows(self, train) -> dict[int, np.ndarray]:
        """Each user's training portion from RecBole-format training rows: the first row's history, then each target.

        Rows are taken in time order when they have a time column, else in file order.
        """
        rows = train.inter_feat
        uids = rows[self.uid_field].numpy()
        keys = (rows[self.time_field].numpy(), uids) if self.time_field in rows else (np.arange(len(uids)), uids)
        order = np.lexsort(keys)
        uids, targets = uids[order], rows[self.iid_field].numpy()[order]
        histories = rows[self.item_id_list_field].numpy()[order]
        lengths = rows[self.item_list_length_field].numpy()[order]
        starts = np.flatnonzero(np.r_[True, uids[1:] != uids[:-1]])
        ends = np.r_[starts[1:], len(uids)]
        return {int(uids[s]): np.r_[histories[s, : lengths[s]], targets[s:e]] for s, e in zip(starts, ends)}

    def _history_columns(self, uids, picks) -> dict[str, torch.Tensor]:
        """The list fields and length of rows whose histories are ``picks``: positions in each user's sequences."""
        lengths = np.array([len(pick) for pick in picks], dtype=np.int64)
        columns = {self.item_list_length_field: torch.from_numpy(lengths)}
        for field, sequences in self.sequences.items():
            sample = torch.as_tensor(next(iter(sequences.values())))
            column = torch.zeros((len(picks), self.max_item_list_len, *sample.shape[1:]), dtype=sample.dtype)
            for r, (uid, pick) in enumerate(zip(uids, picks)):
                column[r, : len(pick)] = torch.as_tensor(sequences[uid][pick])
            columns[getattr(self, f"{field}_list_field")] = column
        return columns

    @staticmethod
    def _part_names(datasets: list) -> tuple[str, ...]:
        return ("training", "validation", "test") if len(datasets) == 3 else ("training", "test")

    @staticmethod
    def _log_rows_left_out(dropped: dict[str, int], why: str) -> None:
        """Warn about validation/test rows left out of evaluation (training rows without input are normal)."""
        dropped = {name: n for name, n in dropped.items() if name != "training"}
        if any(dropped.values()):
            counts = " and ".join(f"{n} {name}" for name, n in dropped.items())
            getLogger().warning(f"{counts} rows {why} and are left out of evaluation")

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
        warm_at = {uid: np.flatnonzero(warm[seq]) for uid, seq in self.user_sequences.items()}  # warm positions
        next_position = dict.fromkeys(self.user_sequences, 1)  # a user's rows run train -> valid -> test in time
        dropped = {}
        for part, name in zip(datasets, self._part_names(datasets)):
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
            dropped[name] = len(uids) - len(keep)
            kept = rows[torch.tensor(keep, dtype=torch.long)]
            kept.update(Interaction(self._history_columns(kept[self.uid_field].numpy(), picks)))
            part.inter_feat = kept
        self._log_rows_left_out(dropped, "had only cold items in their history (cold_items)")


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
