"""Datasets of this package; ``lookups.create_dataset`` looks for ``<model>Dataset`` here.

RecBole's own datasets are built through :func:`with_checked_reading`, so every
model reads atomic files the same way.
"""

from ur4rec_recbole.data.atomic import CheckedAtomicFiles, recbole_dataset_class, with_checked_reading
from ur4rec_recbole.data.dataset import UR4RecDataset

__all__ = ["UR4RecDataset", "CheckedAtomicFiles", "recbole_dataset_class", "with_checked_reading"]
