"""Look-ups by name that try this package first and fall back to RecBole.

RecBole's own ``get_model``/``create_dataset``/``get_trainer`` only search
``recbole.*`` modules, so external models need these twins (as RecBole-GNN
does). Every model, built-in or ours, goes through the same three functions.
The package's modules are named here, not imported: the look-ups sit on the
ground floor (the Config uses them) and load a model, dataset or trainer
module only when one is asked for.
"""

from __future__ import annotations

import importlib

from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

MODEL_MODULE = "ur4rec_recbole.model"
DATASET_MODULE = "ur4rec_recbole.data"
TRAINER_MODULE = "ur4rec_recbole.training"


def our_models() -> list[str]:
    """Names of the models this package adds to RecBole's."""
    return list(importlib.import_module(MODEL_MODULE).__all__)


def get_model(model_name: str) -> type:
    """Return the model class called ``model_name``, ours first, then RecBole's."""
    module = importlib.import_module(MODEL_MODULE)
    if model_name in module.__all__:
        return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError) as err:  # RecBole's search can trip over optional packages
        raise ValueError(
            f"model {model_name!r} is neither in {MODEL_MODULE} ({', '.join(module.__all__)}) "
            f"nor a RecBole model that can be imported here ({type(err).__name__}: {err})"
        ) from err


def get_trainer(model_type, model_name: str) -> type:
    """Return ``<model>Trainer`` from this package, else RecBole's, with safe checkpoints.

    Every trainer returned saves and loads checkpoints that ``torch.load`` can
    read with ``weights_only=True`` (RecBole's pickle the whole Config).
    """
    module = importlib.import_module(TRAINER_MODULE)
    if hasattr(module, f"{model_name}Trainer"):
        return getattr(module, f"{model_name}Trainer")
    return module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))


def create_dataset(config):
    """Build ``<model>Dataset`` from this package if it exists, else RecBole's choice."""
    module = importlib.import_module(DATASET_MODULE)
    name = f"{config['model']}Dataset"
    if hasattr(module, name):
        return getattr(module, name)(config)
    return recbole_create_dataset(config)
