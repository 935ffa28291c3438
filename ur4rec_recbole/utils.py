"""Look-ups that try this package first and fall back to RecBole.

RecBole's own ``get_model``/``create_dataset``/``get_trainer`` only search
``recbole.*`` modules, so external models need these twins (as RecBole-GNN
does). Every model, built-in or ours, goes through the same three functions.
"""

from __future__ import annotations

import importlib
import shutil
from logging import getLogger
from pathlib import Path

import recbole
from recbole.data import create_dataset as recbole_create_dataset
from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

_MODEL_MODULE = "ur4rec_recbole.model"
_DATASET_MODULE = "ur4rec_recbole.data"
_TRAINER_MODULE = "ur4rec_recbole.trainer"
_ATOMIC_SUFFIXES = ("inter", "item", "user")


def get_model(model_name: str) -> type:
    """Return the model class called ``model_name``, ours first, then RecBole's."""
    module = importlib.import_module(_MODEL_MODULE)
    if hasattr(module, model_name):
        return getattr(module, model_name)
    try:
        return recbole_get_model(model_name)
    except (ValueError, ImportError) as err:  # RecBole's search can trip over optional packages
        raise ValueError(
            f"model {model_name!r} is neither in {_MODEL_MODULE} ({', '.join(module.__all__)}) "
            f"nor a RecBole model that can be imported here ({type(err).__name__}: {err})"
        ) from err


def get_trainer(model_type, model_name: str) -> type:
    """Return ``<model>Trainer`` from this package, else RecBole's, with safe checkpoints.

    Every trainer returned saves and loads checkpoints that ``torch.load`` can
    read with ``weights_only=True`` (RecBole's pickle the whole Config).
    """
    from ur4rec_recbole.trainer import with_safe_checkpoints

    module = importlib.import_module(_TRAINER_MODULE)
    if hasattr(module, f"{model_name}Trainer"):
        return getattr(module, f"{model_name}Trainer")
    return with_safe_checkpoints(recbole_get_trainer(model_type, model_name))


def ensure_atomic_files(config) -> None:
    """Copy ml-100k's atomic files out of the RecBole wheel on first use.

    Texts and vectors are written next to the atomic files, and the wheel's
    folder is not ours to write into; other datasets must already be there.
    """
    target = Path(config["data_path"])
    name = config["dataset"]
    if (target / f"{name}.inter").is_file():
        return
    bundled = Path(recbole.__file__).parent / "dataset_example" / name
    if not (bundled / f"{name}.inter").is_file():
        raise FileNotFoundError(
            f"{target / (name + '.inter')} not found. Put the RecBole atomic files of "
            f"dataset '{name}' in {target}/ or pass --data_path=DIR (the folder that holds {name}/)."
        )
    target.mkdir(parents=True, exist_ok=True)
    for suffix in _ATOMIC_SUFFIXES:
        src = bundled / f"{name}.{suffix}"
        if src.is_file():
            tmp = target / f".{name}.{suffix}.tmp"
            shutil.copyfile(src, tmp)
            tmp.replace(target / f"{name}.{suffix}")
    getLogger().info(f"copied the atomic files of {name} from the RecBole wheel to {target}")


def create_dataset(config):
    """Build ``<model>Dataset`` from this package if it exists, else RecBole's choice."""
    ensure_atomic_files(config)
    module = importlib.import_module(_DATASET_MODULE)
    name = f"{config['model']}Dataset"
    if hasattr(module, name):
        return getattr(module, name)(config)
    return recbole_create_dataset(config)
