"""Trainers of this package; ``lookups.get_trainer`` looks for ``<model>Trainer`` here."""

from ur4rec_recbole.training.trainer import SafeCheckpointMixin, UR4RecTrainer, with_safe_checkpoints

__all__ = ["SafeCheckpointMixin", "UR4RecTrainer", "with_safe_checkpoints"]
