"""Trainers of this package; ``registry.get_trainer`` looks for ``<Model>Trainer`` here (or its base class's)."""

from ur4rec_recbole.training.trainer import (NonLearnedTrainer, SafeCheckpointMixin, UR4RecTrainer,
                                             with_safe_checkpoints)

__all__ = ["NonLearnedTrainer", "SafeCheckpointMixin", "UR4RecTrainer", "with_safe_checkpoints"]
