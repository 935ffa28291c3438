"""A RecBole ``Config`` that knows this package's models and yaml defaults.

Priority, lowest first: RecBole's own yaml < this package's ``properties/``
(overall; texts and images for this package's models; model; dataset) <
``config_file_list`` < ``config_dict`` < ``cmd_overrides``. ``sys.argv`` is never read: the run script parses its own
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

import yaml
from recbole.config import Config as RecBoleConfig

from ur4rec_recbole.config.settings import (check_cold_items, line_of_key, parse_encoding, parse_modalities,
                                            read_settings_file, suggest)
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.lookups import get_model

PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"  # shipped inside the package
DEFAULT_DATA_ROOT = "dataset"  # as RecBole: relative to the working directory
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
        self.final_config_dict["encoding"] = parse_encoding(self.final_config_dict.get("encoding"))
        if "modalities" in self.final_config_dict:
            self.final_config_dict["modalities"] = parse_modalities(self.final_config_dict["modalities"])
        check_cold_items(self)
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
        for path in reversed(self._config_files):
            if key in read_settings_file(path, self.yaml_loader):
                line = line_of_key(path, key)
                return f"{path}, line {line}" if line else path
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
                    self.parameters["Dataset"] += [
                        k for k in loaded if k not in self.parameters["Dataset"]
                    ]

    def _set_default_parameters(self) -> None:
        super()._set_default_parameters()
        # RecBole pins ml-100k to the copy inside its wheel; we keep every
        # dataset, ml-100k included, under one root so that texts and vectors
        # live next to the atomic files they were built from.
        root = self.final_config_dict.get("data_root")
        if root is None:
            root = self.external_config_dict.get("data_path") or DEFAULT_DATA_ROOT
        self.final_config_dict["data_root"] = os.path.abspath(str(root))
        self.final_config_dict["data_path"] = os.path.join(
            self.final_config_dict["data_root"], self.dataset
        )
