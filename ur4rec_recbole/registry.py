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

import difflib
import importlib
import importlib.util
from pathlib import Path

from recbole.utils import get_trainer as recbole_get_trainer

from ur4rec_recbole.errors import InputError

MODEL_MODULE = "ur4rec_recbole.model"
DATASET_MODULE = "ur4rec_recbole.data"
TRAINER_MODULE = "ur4rec_recbole.training"
RECBOLE_MODEL_GROUPS = ("general_recommender", "context_aware_recommender", "sequential_recommender",
                        "knowledge_aware_recommender", "exlib_recommender")  # as recbole.utils.get_model


def our_models() -> list[str]:
    """Names of the models this package adds to RecBole's."""
    return list(importlib.import_module(MODEL_MODULE).__all__)


def recbole_model_modules() -> dict[str, str]:
    """RecBole's model modules by file name (``sasrec`` -> ``recbole.model.sequential_recommender.sasrec``).

    Listed from the files, not imported: importing ``exlib_recommender`` needs
    lightgbm and xgboost, which only those two models use.
    """
    root = Path(importlib.util.find_spec("recbole.model").origin).parent
    return {path.stem: f"recbole.model.{group}.{path.stem}"
            for group in RECBOLE_MODEL_GROUPS for path in sorted((root / group).glob("*.py"))
            if path.stem != "__init__"}


def _class_named(module_name: str, lowered: str) -> str:
    """The model class of a RecBole module (the class whose lower-case name is the file name)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return lowered
    return next((name for name in dir(module) if name.lower() == lowered), lowered)


def get_model(model_name: str) -> type:
    """Return the model class called ``model_name``, ours first, then RecBole's.

    An unknown name is one :class:`InputError` with the closest model name.
    """
    module = importlib.import_module(MODEL_MODULE)
    if model_name in module.__all__:
        return getattr(module, model_name)
    modules = recbole_model_modules()
    path = modules.get(model_name.lower())
    if path is None or model_name.lower() in (name.lower() for name in module.__all__):
        ours = {name.lower(): name for name in module.__all__}
        near = difflib.get_close_matches(model_name.lower(), [*ours, *modules], n=1, cutoff=0.6)
        proper = (ours.get(near[0]) or _class_named(modules[near[0]], near[0])) if near else None
        hint = f"did you mean {proper}? " if proper else ""
        raise InputError(f"unknown model {model_name!r}: {hint}--model takes {', '.join(module.__all__)} "
                         f"or a RecBole model name (e.g. SASRec, GRU4Rec, BERT4Rec), spelt as RecBole spells it")
    try:
        found = importlib.import_module(path)
    except ImportError as err:
        raise InputError(f"model {model_name!r} needs the package {err.name}: pip install {err.name}") from err
    if not hasattr(found, model_name):
        raise InputError(f"unknown model {model_name!r}: did you mean {_class_named(path, model_name.lower())}? "
                         f"(model names are case-sensitive)")
    return getattr(found, model_name)


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
