"""Datasets of this package; ``lookups.create_dataset`` looks for ``<Model>Dataset`` here.

The look-up tries the model's class, then its base classes; a RecBole model
gets :func:`recbole_dataset` (``SplitDataset`` for its sequential models).
"""

from ur4rec_recbole.data.dataset import TextKNNDataset, UR4RecDataset
from ur4rec_recbole.data.split import SplitDataset, recbole_dataset

__all__ = ["SplitDataset", "TextKNNDataset", "UR4RecDataset", "recbole_dataset"]
