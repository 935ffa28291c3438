"""Datasets of this package; ``registry.create_dataset`` looks for ``<Model>Dataset`` here.

The look-up tries the model's class, then its base classes; a RecBole model
gets :func:`recbole_dataset` (``SplitDataset`` for its sequential models).
Every one of them reads its atomic files through ``CheckedAtomicFiles``.
"""

from ur4rec_recbole.data.reading import CheckedAtomicFiles, with_checked_reading
from ur4rec_recbole.data.dataset import TextKNNDataset, UniSRecDataset, UR4RecDataset
from ur4rec_recbole.data.split import SplitDataset, recbole_dataset

__all__ = ["CheckedAtomicFiles", "SplitDataset", "TextKNNDataset", "UniSRecDataset", "UR4RecDataset", "recbole_dataset",
           "with_checked_reading"]
