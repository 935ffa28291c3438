"""Atomic files on disk: where they come from and how every dataset reads them.

ml-100k's atomic files ship inside the RecBole wheel; they are copied next to
where this package writes texts and vectors, because the wheel's folder is
not ours to write into.

Every dataset this package builds, UR4Rec's and RecBole's own (SASRec's
``SequentialDataset``, ...), reads its atomic files through
:class:`CheckedAtomicFiles`: each file is checked first
(:func:`ur4rec_recbole.formats.atomic.check_atomic_file`: encoding, header,
rows, numbers), so a bad file is one line naming it, and a file whose text
fields start with a double quote reaches RecBole's reader as a quoted copy
(in a temporary folder, never next to the data). RecBole's reader itself,
its split and its filtering are unchanged.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from logging import getLogger
from pathlib import Path

import numpy as np
import recbole
from recbole.utils import FeatureSource, ModelType

from ur4rec_recbole.formats.atomic import CheckedFile, check_atomic_file, quoted_copy_text
from ur4rec_recbole.config.dataset_files import inter_files
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import atomic_path, data_folder_fix

ATOMIC_SUFFIXES = ("inter", "item", "user")
RECBOLE_DATASETS = {  # RecBole's choice of dataset class by model type (recbole.data.utils.create_dataset)
    ModelType.GENERAL: "Dataset",
    ModelType.SEQUENTIAL: "SequentialDataset",
    ModelType.CONTEXT: "Dataset",
    ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
    ModelType.TRADITIONAL: "Dataset",
    ModelType.DECISIONTREE: "Dataset",
}


def ensure_atomic_files(config) -> None:
    """Copy a dataset bundled with RecBole (ml-100k) into ``data_path`` on first use.

    Other datasets must already be there; a missing one is one clear error.
    """
    target = Path(config["data_path"])
    name = config["dataset"]
    if config["benchmark_filename"]:  # pre-split files: the user's own, never copied
        for path in inter_files(config):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found, but benchmark_filename={config['benchmark_filename']} "
                                        f"names it: put the file in {target}/ or list only the parts you have")
        return
    if (target / f"{name}.inter").is_file():
        return
    bundled = Path(recbole.__file__).parent / "dataset_example" / name
    if not (bundled / f"{name}.inter").is_file():
        raise FileNotFoundError(
            f"{target / (name + '.inter')} not found. Put the RecBole atomic files of "
            f"dataset '{name}' in {target}/ or pass --data_path=DIR (the folder that holds {name}/)."
        )
    for suffix in ATOMIC_SUFFIXES:
        src = bundled / f"{name}.{suffix}"
        if src.is_file():
            with atomic_path(target / f"{name}.{suffix}", fix=data_folder_fix(target)) as tmp:
                shutil.copyfile(src, tmp)
    getLogger().info(f"copied the atomic files of {name} from the RecBole wheel to {target}")


class CheckedAtomicFiles:
    """Mixin for a RecBole ``Dataset``: check each atomic file before RecBole's ``_load_feat`` reads it."""

    def _load_feat(self, filepath, source):
        load_col, unload_col = self._get_load_and_unload_col(source)
        if load_col == set():  # RecBole loads nothing from this file
            return super()._load_feat(filepath, source)
        sep, encoding = self.config["field_separator"], self.config["encoding"]
        required = {FeatureSource.INTERACTION: (self.uid_field, self.iid_field), FeatureSource.USER: (self.uid_field,),
                    FeatureSource.ITEM: (self.iid_field,)}.get(source, ())
        loaded = None if load_col is None else set(load_col) - set(unload_col or ())
        checked = check_atomic_file(filepath, sep, encoding, numeric=loaded,
                                    required=[name for name in required if name])
        if not checked.needs_quoting:
            frame = super()._load_feat(filepath, source)
        else:
            with tempfile.TemporaryDirectory(prefix="ur4rec-atomic-") as folder:
                copy = Path(folder) / Path(filepath).name
                copy.write_text(quoted_copy_text(filepath, sep, encoding), encoding=encoding)
                frame = super()._load_feat(str(copy), source)
        if frame is None:
            return frame
        if source == FeatureSource.INTERACTION:
            return self._without_repeated_rows(frame, checked)
        if source in (FeatureSource.ITEM, FeatureSource.USER):
            refuse_repeated_ids(frame, checked, self.iid_field if source == FeatureSource.ITEM else self.uid_field)
        return frame

    def _without_repeated_rows(self, frame, checked: CheckedFile):
        """Interaction rows identical to an earlier row (every column of the file) removed, and counted in the log.

        A copied row is no new interaction: kept, it gives the leave-one-out
        split a validation or test target that is a copy of its input
        (``drop_duplicate_rows: False`` keeps them). Rows that differ in any
        column (a repeat purchase on another day) are kept (docs/security.md).
        """
        if not checked.repeats or not self.config["drop_duplicate_rows"]:
            return frame
        if len(frame) != checked.rows:  # pandas saw other rows than the check (whitespace-only lines)
            repeated = frame.duplicated(keep="first").to_numpy()
        else:
            repeated = np.zeros(len(frame), dtype=bool)
            repeated[[row for row, _ in checked.repeats]] = True
        row, first = checked.repeats[0]
        getLogger().warning(f"{checked.path}: {int(repeated.sum())} rows repeat an earlier row exactly (e.g. line "
                            f"{checked.row_lines[row]} repeats line {first}) and were removed "
                            "(drop_duplicate_rows: False keeps them)")
        return frame[~repeated].reset_index(drop=True)

    def _load_data(self, token, dataset_path):
        super()._load_data(token, dataset_path)
        log_items_without_row(self, Path(dataset_path) / f"{token}.item")


def refuse_repeated_ids(frame, checked: CheckedFile, field: str | None) -> None:
    """A ``.item`` (``.user``) file gives each id one row: a second row for an id is one :class:`InputError`.

    RecBole keeps the first row and drops the others silently, so the features
    a model reads would depend on the row order of the file.
    """
    if not field or field not in frame:
        return
    repeated = frame[field].duplicated(keep=False).to_numpy()
    if not repeated.any():
        return
    rows = repeated.nonzero()[0]
    value = frame[field].iloc[rows[0]]
    same = [int(r) for r in rows if frame[field].iloc[r] == value][:2]
    lines = [checked.row_lines[r] if len(frame) == checked.rows else r + 2 for r in same]
    raise InputError(f"{checked.path}, line {lines[1]}: {field} {value!r} has a second row (the first is on line "
                     f"{lines[0]}); keep one row per {field} (merge the two rows or remove one)")


def log_items_without_row(dataset, item_path: Path) -> None:
    """Say how many items of the interactions have no row in the ``.item`` file (they get empty item features)."""
    if dataset.item_feat is None or dataset.inter_feat is None or dataset.iid_field not in dataset.item_feat:
        return
    described = set(dataset.item_feat[dataset.iid_field])
    missing = sorted(set(dataset.inter_feat[dataset.iid_field]) - described, key=str)
    if missing:
        shown = ", ".join(repr(t) for t in missing[:3]) + (", ..." if len(missing) > 3 else "")
        getLogger().warning(f"{item_path}: {len(missing)} items of the interactions have no row ({shown}); they keep "
                            "their interactions, with empty item features (and texts): add their rows to the file")


def with_checked_reading(dataset_class: type) -> type:
    """``dataset_class`` with :class:`CheckedAtomicFiles` in front (one class per base, picklable by name)."""
    if issubclass(dataset_class, CheckedAtomicFiles):
        return dataset_class
    name = f"Checked{dataset_class.__name__}"
    if name not in globals():
        globals()[name] = type(name, (CheckedAtomicFiles, dataset_class), {"__module__": __name__})
    return globals()[name]


def recbole_dataset_class(config) -> type:
    """The dataset class RecBole would build for ``config['model']``."""
    datasets = importlib.import_module("recbole.data.dataset")
    special = getattr(datasets, f"{config['model']}Dataset", None)
    return special if special is not None else getattr(datasets, RECBOLE_DATASETS[config["MODEL_TYPE"]])
