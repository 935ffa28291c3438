"""Look-ups by name that try this package first and fall back to RecBole.

RecBole's own ``get_model``/``create_dataset``/``get_trainer`` only search
``recbole.*`` modules, so external models need these twins (as RecBole-GNN
does). Every model, built-in or ours, goes through the same three functions.
A trainer or dataset is found by RecBole's naming rule, ``<Model>Trainer`` and
``<Model>Dataset``, tried for the model's class and then its base classes, so
related models share one (the non-learned baselines: ``NonLearnedTrainer``).
The package's modules are named here, not imported: the look-ups sit on the
ground floor (the Config uses them) and load a model, dataset or trainer
module only when one is asked for.
"""

from __future__ import annotations

import importlib

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


def _ours(module_name: str, model_class: type, suffix: str):
    """``<Class><suffix>`` of ``module_name`` for the nearest class in ``model_class``'s MRO, or None."""
    module = importlib.import_module(module_name)
    for cls in model_class.__mro__:
        found = getattr(module, f"{cls.__name__}{suffix}", None)
        if found is not None:
            return found
    return None


def get_trainer(model_type, model_name: str) -> type:
    """Return this package's ``<model>Trainer`` (or its base class's), else RecBole's, with safe checkpoints.

    Every trainer returned saves and loads checkpoints that ``torch.load`` can
    read with ``weights_only=True`` (RecBole's pickle the whole Config).
    """
    ours = _ours(TRAINER_MODULE, get_model(model_name), "Trainer")
    if ours is not None:
        return ours
    module = importlib.import_module(TRAINER_MODULE)
    return module.with_safe_checkpoints(recbole_get_trainer(model_type, model_name))


def create_dataset(config):
    """Build this package's ``<model>Dataset`` (or its base class's), else the one for a RecBole model.

    RecBole's sequential models get ``SplitDataset`` (RecBole's split plus the
    training portions and the cold-item protocol), the others RecBole's choice.
    """
    ours = _ours(DATASET_MODULE, config.model_class, "Dataset")
    if ours is not None:
        return ours(config)
    return importlib.import_module(DATASET_MODULE).recbole_dataset(config)
