"""Atomic files on disk: where they come from and how they are read.

ml-100k's atomic files ship inside the RecBole wheel; they are copied next to
where this package writes texts and vectors, because the wheel's folder is
not ours to write into.
"""

from __future__ import annotations

import shutil
from logging import getLogger
from pathlib import Path

import recbole

from ur4rec_recbole.io import atomic_path

ATOMIC_SUFFIXES = ("inter", "item", "user")


def ensure_atomic_files(config) -> None:
    """Copy a dataset bundled with RecBole (ml-100k) into ``data_path`` on first use.

    Other datasets must already be there; a missing one is one clear error.
    """
    target = Path(config["data_path"])
    name = config["dataset"]
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
            with atomic_path(target / f"{name}.{suffix}") as tmp:
                shutil.copyfile(src, tmp)
    getLogger().info(f"copied the atomic files of {name} from the RecBole wheel to {target}")
