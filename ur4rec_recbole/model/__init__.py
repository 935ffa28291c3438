"""Models of this package; ``registry.get_model`` looks here before RecBole."""

from ur4rec_recbole.model.baselines import ImageKNN, TextKNN, Transitions, TransitionsTextKNN
from ur4rec_recbole.model.unisrec import UniSRec
from ur4rec_recbole.model.ur4rec import UR4Rec

__all__ = ["UR4Rec", "Transitions", "TextKNN", "TransitionsTextKNN", "ImageKNN", "UniSRec"]
