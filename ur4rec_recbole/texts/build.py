"""Texts for a built dataset: written by an on-the-fly backend or read from disk.

``text_source`` selects the files ``<name>.{user_pref,item_know}.<source>.jsonl``.
The ``template`` source is built on every run because it is cheap and
deterministic, and written only when its content changes (so up-to-date
texts in a read-only folder are just read); other sources (LLM backends)
are produced ahead of time.
"""

from __future__ import annotations

from logging import getLogger
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ur4rec_recbole.texts.base import TextBackend, histories_by_token, item_fields
from ur4rec_recbole.texts.profiles import profile_histories, stamp
from ur4rec_recbole.texts.records import ITEM_KIND, USER_KIND, text_path, write_records
from ur4rec_recbole.texts.template import TemplateBackend


def template_fields(config) -> list[str]:
    """The ``.item`` columns the template texts read (``item_text_fields`` then ``user_profile_fields``)."""
    for key in ("item_text_fields", "user_profile_fields"):
        if not isinstance(config[key], list) or not config[key]:
            raise ValueError(
                f"text_source 'template' needs {key} (a list of .item columns) for dataset "
                f"'{config['dataset']}', got {config[key]!r}; set it in a config file or as "
                f"--{key}=\"['col1','col2']\" (see docs/guides/own-dataset.md)"
            )
    return list(dict.fromkeys([*config["item_text_fields"], *config["user_profile_fields"]]))


def template_backend(config) -> TemplateBackend:
    """The template backend configured by ``item_text_fields`` and ``user_profile_fields``."""
    template_fields(config)
    return TemplateBackend(
        item_text_fields=config["item_text_fields"],
        user_profile_fields=config["user_profile_fields"],
        field_labels=config["text_field_labels"],
        profile_top_k=config["profile_top_k"],
        history_window=config["history_window"],
    )


# sources whose texts are built during the run; others must already be on disk
ON_THE_FLY: dict[str, Callable[..., TextBackend]] = {"template": template_backend}


def build_texts(config, dataset, histories: Mapping[int, np.ndarray]) -> tuple[Path, Path]:
    """Return the (user, item) text files for ``config['text_source']``, writing them if needed.

    ``histories`` must hold only each user's training portion (internal ids);
    each user gets up to ``profile_cutoffs`` profiles, one per cut-off
    (:mod:`ur4rec_recbole.texts.profiles`).
    """
    source = config["text_source"]
    user_path = text_path(config["data_path"], config["dataset"], USER_KIND, source)
    item_path = text_path(config["data_path"], config["dataset"], ITEM_KIND, source)
    if source in ON_THE_FLY:
        backend = ON_THE_FLY[source](config)
        fields = sorted(set(config["item_text_fields"]) | set(config["user_profile_fields"]))
        items = item_fields(dataset, fields)
        ranks = profile_histories(histories_by_token(dataset, histories), config["profile_cutoffs"])
        written = [path for path, records in (
            (item_path, backend.item_texts(items)),
            (user_path, [r for rank in ranks for r in stamp(backend.user_texts(rank, items), rank)]),
        ) if write_records(path, records)]
        getLogger().info(f"wrote {source} texts to {' and '.join(map(str, written))}" if written
                         else f"{source} texts in {user_path.parent} are up to date")
        return user_path, item_path
    for path in (user_path, item_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"text_source '{source}' needs {path}, which does not exist; generate it first "
                f"or use text_source: template (built from the .item fields)"
            )
    return user_path, item_path
