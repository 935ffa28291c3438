"""A RecBole ``Config`` that knows this package's models and yaml defaults.

Priority, lowest first: RecBole's own yaml < this package's ``properties/``
(overall; texts and images for this package's models; model; dataset) <
``config_file_list`` < ``config_dict`` < ``cmd_overrides``. ``sys.argv`` is never read: the run script parses its own
flags and passes the ``--key=value`` leftovers explicitly, so the same Config
behaves identically under pytest, Ray workers and notebooks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from recbole.config import Config as RecBoleConfig

from ur4rec_recbole.config.settings import check_cold_items, parse_modalities
from ur4rec_recbole.lookups import get_model

PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"  # shipped inside the package
DEFAULT_DATA_ROOT = "dataset"  # as RecBole: relative to the working directory


class Config(RecBoleConfig):
    """RecBole configuration with ``properties/`` as lowest-priority defaults."""

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: Sequence[str] | None = None,
        config_dict: Mapping[str, Any] | None = None,
        cmd_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self._cmd_overrides = dict(cmd_overrides or {})
        super().__init__(
            model=model,
            dataset=dataset,
            config_file_list=list(config_file_list or []),
            config_dict=dict(config_dict or {}),
        )
        self._check_settings()

    def _check_settings(self) -> None:
        """Parse shared settings once, then let the model check its own (before any data is loaded)."""
        if "modalities" in self.final_config_dict:
            self.final_config_dict["modalities"] = parse_modalities(self.final_config_dict["modalities"])
        check_cold_items(self)
        check = getattr(self.model_class, "check_settings", None)
        if check is not None:
            check(self)

    def _load_cmd_line(self) -> dict:
        # RecBole parses sys.argv here; we take explicit overrides instead.
        return self._convert_config_dict(dict(self._cmd_overrides))

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError("no model given: pass --model NAME or set `model` in a config file")
        model_class = get_model(model) if isinstance(model, str) else model
        model_name = model if isinstance(model, str) else model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise KeyError("no dataset given: pass --dataset NAME or set `dataset` in a config file")
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
