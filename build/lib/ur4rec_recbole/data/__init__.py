"""Datasets of this package; ``lookups.create_dataset`` looks for ``<model>Dataset`` here."""

from ur4rec_recbole.data.dataset import UR4RecDataset

__all__ = ["UR4RecDataset"]
