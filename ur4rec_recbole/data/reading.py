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

import recbole
from recbole.utils import FeatureSource, ModelType

from ur4rec_recbole.formats.atomic import check_atomic_file, quoted_copy_text
from ur4rec_recbole.config.dataset_files import inter_files
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
            return super()._load_feat(filepath, source)
        with tempfile.TemporaryDirectory(prefix="ur4rec-atomic-") as folder:
            copy = Path(folder) / Path(filepath).name
            copy.write_text(quoted_copy_text(filepath, sep, encoding), encoding=encoding)
            return super()._load_feat(str(copy), source)


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
