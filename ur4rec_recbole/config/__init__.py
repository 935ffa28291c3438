"""A RecBole ``Config`` that knows this package's models and yaml defaults.

Priority, lowest first: RecBole's own yaml < this package's ``properties/``
(overall; texts and images for this package's models; model; dataset) < the
dataset's own yaml next to its atomic files (``DIR/<name>/<name>.yaml``, DIR =
``data_path``) < ``config_file_list`` < ``config_dict`` < ``cmd_overrides``.
Dataset settings nobody sets are filled in from the atomic files' headers
(:mod:`ur4rec_recbole.config.dataset_files`), so a folder of atomic files runs
without any yaml. ``sys.argv`` is never read: the run script parses its own
flags and passes the ``--key=value`` leftovers explicitly, so the same Config
behaves identically under pytest, Ray workers and notebooks.

Every setting a user gives (files, dict, overrides) must be known to RecBole,
to this package or to the chosen model; a misspelt one is refused with a
"did you mean" suggestion instead of being silently ignored.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import recbole
import yaml
from recbole.config import Config as RecBoleConfig

from ur4rec_recbole.config.dataset_files import complete_dataset_settings, dataset_yaml_path
from ur4rec_recbole.config.settings import (SettingsLoader, check_cold_items, check_encoder_settings,
                                            check_history_masks, check_recbole_numbers, line_of_key, parse_encoding,
                                            parse_modalities, parse_setting, read_settings_file, suggest)
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.registry import get_model

PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"  # shipped inside the package
DEFAULT_DATA_ROOT = "dataset"  # as RecBole: relative to the working directory
RECBOLE_DATASET_DIR = Path(recbole.__file__).resolve().parent / "properties" / "dataset"
NOT_IN_DATASET_YAML = ("data_path", "data_root")  # the dataset's yaml is found through them
PACKAGE_YAML = ("overall.yaml", "texts.yaml", "images.yaml")  # this package's settings, known for every model
# set by RecBole's Config itself (or ours: data_root), never by a yaml file
DERIVED_SETTINGS = ("model", "dataset", "data_root", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
                    "single_spec", "valid_neg_sample_args", "test_neg_sample_args", "valid_metric_bigger")
# read by RecBole 1.2.1 (DDP, data transforms) but declared in none of its yaml files
RECBOLE_UNDECLARED = ("local_rank", "nproc", "world_size", "ip", "port", "offset", "MASK_ITEM_SEQ", "POS_ITEMS",
                      "NEG_ITEMS", "MASK_INDEX", "CROP_ITEM_SEQ", "CROP_ITEM_SEQ_LEN", "REORDER_ITEM_SEQ",
                      "INVERSE_ITEM_SEQ", "mask_ratio", "ft_ratio", "eta", "tail_ratio", "convert_token_to_onehot",
                      "token_num_threshold")


@lru_cache(maxsize=None)
def yaml_keys(path: Path) -> frozenset[str]:
    """Top-level keys of one of this package's yaml files."""
    return frozenset(yaml.safe_load(path.read_text()) or {})


def package_settings() -> frozenset[str]:
    """Settings of this package that every model accepts (atomic files, texts, images)."""
    return frozenset().union(*(yaml_keys(PROPERTIES_DIR / name) for name in PACKAGE_YAML))


def model_settings() -> dict[str, frozenset[str]]:
    """Each model of this package -> the settings its yaml declares."""
    return {path.stem: yaml_keys(path) for path in sorted((PROPERTIES_DIR / "model").glob("*.yaml"))}


class Config(RecBoleConfig):
    """RecBole configuration with ``properties/`` as lowest-priority defaults.

    ``also_known`` are settings accepted although the chosen model does not
    know them (``--compare``: a common setting known to another listed model).
    """

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: Sequence[str] | None = None,
        config_dict: Mapping[str, Any] | None = None,
        cmd_overrides: Mapping[str, str] | None = None,
        also_known: Collection[str] = (),
    ) -> None:
        self._cmd_overrides = dict(cmd_overrides or {})
        self._config_files = [str(f) for f in config_file_list or []]
        self.dataset_yaml: Path | None = None  # DIR/<name>/<name>.yaml when there is one
        self.dataset_yaml_dict: dict = {}  # its settings
        self.dataset_settings: set[str] = set()  # settings some dataset yaml (RecBole's, ours, the folder's) gives
        self.dataset_notes: list[str] = []  # settings filled in from the atomic files (prepare_run logs them)
        super().__init__(
            model=model,
            dataset=dataset,
            config_file_list=self._config_files,
            config_dict=dict(config_dict or {}),
        )
        self._check_settings(also_known)

    def _check_settings(self, also_known: Collection[str] = ()) -> None:
        """Refuse unknown settings, parse shared ones once, let the model check its own (before any data loads)."""
        given = set(self.file_config_dict) | set(self.variable_config_dict) | set(self.cmd_config_dict)
        self.reject_unknown(given - set(also_known))
        # a dataset's yaml serves every model: a setting of another of this package's models is not a typo
        self.reject_unknown(set(self.dataset_yaml_dict),
                            known=self.known_settings().union(*model_settings().values()))
        check_recbole_numbers(self)
        self.final_config_dict["encoding"] = parse_encoding(self.final_config_dict.get("encoding"))
        configured = self.dataset_settings | set(self.external_config_dict)
        self.dataset_notes = complete_dataset_settings(self, configured)
        if "modalities" in self.final_config_dict:
            self.final_config_dict["modalities"] = parse_modalities(self.final_config_dict["modalities"])
        check_cold_items(self)
        check_history_masks(self)
        if "encoder_precision" in self.final_config_dict:  # texts.yaml: this package's models
            check_encoder_settings(self)
        check = getattr(self.model_class, "check_settings", None)
        if check is not None:
            check(self)

    def known_settings(self) -> set[str]:
        """Settings RecBole, this package and the chosen model know (what a user may set)."""
        known = set(self.internal_config_dict) | package_settings() | set(DERIVED_SETTINGS)
        known |= set(RECBOLE_UNDECLARED) | {key for keys in self.parameters.values() for key in keys}
        return known

    def reject_unknown(self, keys: Collection[str], where: str | None = None, known: Collection[str] | None = None,
                       models: str | None = None) -> None:
        """Raise one :class:`InputError` for the first of ``keys`` not in ``known``, with a suggestion.

        ``known`` defaults to :meth:`known_settings`, ``models`` (named in the
        message) to this Config's model. ``where`` says where the keys came
        from; by default the Config finds out (a ``--config_files`` file and
        line, the command line, the dict).
        """
        known = self.known_settings() if known is None else set(known)
        models = models or self.model
        unknown = sorted(key for key in keys if key not in known)
        if not unknown:
            return
        key = unknown[0]
        origin = where or self._origin(key)
        owners = [name for name, keys in model_settings().items() if key in keys and name not in models.split(", ")]
        if owners:
            hint = f"it is a setting of {', '.join(owners)}, not of {models}: drop it, or run {owners[0]}"
        else:
            near = suggest(key, known)
            dash = "--" if origin == f"--{key}" else ""
            hint = (f"did you mean {dash}{near}?" if near else "check the spelling") + \
                f" (known: RecBole's settings, this package's and {models}'s)"
        more = f" ({len(unknown) - 1} more unknown: {', '.join(unknown[1:4])})" if len(unknown) > 1 else ""
        named = f"--{key}" if origin == f"--{key}" else repr(key)
        prefix = f"unknown setting {named}" if origin == f"--{key}" else f"{origin}: unknown setting {named}"
        raise InputError(f"{prefix}; {hint}{more}")

    def _origin(self, key: str) -> str:
        if key in self.cmd_config_dict:
            return f"--{key}"
        if key in self.variable_config_dict:
            return "config_dict"
        for path in [*reversed(self._config_files), *([self.dataset_yaml] if self.dataset_yaml else [])]:
            if key in read_settings_file(path, self.yaml_loader):
                line = line_of_key(path, key)
                return f"{path}, line {line}" if line else str(path)
        return "settings"

    def _load_config_files(self, file_list):
        # RecBole's reader names neither a missing file nor the file of a YAML error
        loaded: dict = {}
        for path in file_list or []:
            loaded.update(read_settings_file(path, self.yaml_loader))
        return loaded

    def _load_cmd_line(self) -> dict:
        # RecBole parses sys.argv here; we take explicit overrides instead.
        return self._convert_config_dict(dict(self._cmd_overrides))

    def _build_yaml_loader(self):
        # RecBole's is yaml.FullLoader (python tags build objects); ours is safe, with RecBole's float rule
        return SettingsLoader

    def _convert_config_dict(self, config_dict: dict) -> dict:
        """String values (``--key=value``, ``config_dict``: a checkpoint's stored settings) as literals.

        Replaces RecBole's, which ``eval()``s them: nothing a setting holds is ever run.
        """
        return {key: parse_setting(key, value) if isinstance(value, str) else value
                for key, value in config_dict.items()}

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise InputError("no model given: pass --model NAME or set `model` in a config file")
        model_class = get_model(model) if isinstance(model, str) else model
        model_name = model if isinstance(model, str) else model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise InputError("no dataset given: pass --dataset NAME or set `dataset` in a config file")
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset) -> None:
        super()._load_internal_config_dict(model, model_class, dataset)
        ours = model_class.__module__.startswith(f"{__package__.rsplit('.', 1)[0]}.")  # a model of this package
        for path in (
            PROPERTIES_DIR / "overall.yaml",
            *((PROPERTIES_DIR / "texts.yaml", PROPERTIES_DIR / "images.yaml") if ours else ()),
            PROPERTIES_DIR / "model" / f"{model}.yaml",
            PROPERTIES_DIR / "dataset" / f"{dataset}.yaml",
        ):
            if path.is_file():
                loaded = self._update_internal_config_dict(str(path))
                if path.parent.name == "dataset" and loaded:
                    self._dataset_parameters(loaded)
        recbole_yaml = RECBOLE_DATASET_DIR / f"{dataset}.yaml"  # RecBole's own (ml-100k, ...)
        if recbole_yaml.is_file():
            self.dataset_settings |= set(read_settings_file(recbole_yaml, self.yaml_loader))
        self._load_dataset_yaml(dataset)

    def _load_dataset_yaml(self, dataset: str) -> None:
        """``DIR/<name>/<name>.yaml``: above the package's dataset yaml, below every file and flag the user gives.

        Kept apart from the internal (default) settings so that its keys are
        checked for typos like the user's other files.
        """
        path = dataset_yaml_path(self._data_root(), dataset)
        if not path.is_file():
            return
        loaded = read_settings_file(path, self.yaml_loader)
        for key in NOT_IN_DATASET_YAML:
            if key in loaded:
                raise InputError(f"{path}, line {line_of_key(path, key)}: {key} cannot be set in the dataset's own "
                                 f"yaml (it is found through {key}); pass --{key}=DIR or set it in a --config_files yaml")
        self.dataset_yaml, self.dataset_yaml_dict = path, loaded
        self.dataset_settings |= set(loaded)  # not among RecBole's "Dataset" parameters: those count as known

    def _dataset_parameters(self, loaded: Mapping[str, Any]) -> None:
        self.dataset_settings |= set(loaded)
        # a new list: RecBole's category lists are module globals shared by every Config
        known = self.parameters["Dataset"]
        self.parameters["Dataset"] = known + [k for k in loaded if k not in known]

    def _get_final_config_dict(self) -> dict:
        return {**self.internal_config_dict, **self.dataset_yaml_dict, **self.external_config_dict}

    def _data_root(self) -> str:
        """The folder that holds ``<dataset>/`` (``data_path``, default ``dataset/`` under the working directory)."""
        given = self.external_config_dict
        return os.path.abspath(str(given.get("data_root") or given.get("data_path") or DEFAULT_DATA_ROOT))

    def _init_device(self) -> None:
        """RecBole's, except that a DDP process without CUDA joins its group with gloo on the CPU.

        RecBole 1.2.1 always uses NCCL and ``cuda:<local_rank>`` under DDP
        (``local_rank`` set by ``run/distributed.py``), so a machine without GPUs
        (or ``use_gpu=False``) could not run ``--nproc``. With GPUs nothing changes.
        """
        settings = self.final_config_dict
        if "local_rank" not in settings:
            return super()._init_device()
        gpu_id = settings["gpu_id"]
        settings["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        os.environ["CUDA_VISIBLE_DEVICES"] = settings["gpu_id"]  # as RecBole: before CUDA is first asked
        import torch

        if settings["use_gpu"] and settings["gpu_id"] and torch.cuda.is_available():
            return super()._init_device()  # NCCL, cuda:<local_rank>
        rank = settings["local_rank"] + settings["offset"]
        torch.distributed.init_process_group(backend="gloo", rank=rank, world_size=settings["world_size"],
                                             init_method=f"tcp://{settings['ip']}:{settings['port']}")
        settings.update(device=torch.device("cpu"), single_spec=False)
        if rank != 0:  # as RecBole's quiet ranks (it tests local_rank: every machine's first process talked)
            settings.update(state="error", show_progress=False, verbose=False)

    def _set_default_parameters(self) -> None:
        super()._set_default_parameters()
        # RecBole pins ml-100k to the copy inside its wheel; we keep every
        # dataset, ml-100k included, under one root so that texts and vectors
        # live next to the atomic files they were built from.
        self.final_config_dict["data_root"] = self._data_root()
        self.final_config_dict["data_path"] = os.path.join(
            self.final_config_dict["data_root"], self.dataset
        )
