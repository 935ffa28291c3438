"""From a built dataset to aligned feature matrices: texts -> vectors -> tables.

Each table comes from an explicit file when the config names one
(``item_vector_file``, ``user_vector_file``, ``image_vector_file``) and is
otherwise produced here: texts from ``text_source``, then sentence vectors.
Image vectors are loaded when ``modalities`` includes ``image``: encoded from
the dataset's images (cached by content hash) when it has any, otherwise read
from the image table.
"""

from __future__ import annotations

from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ur4rec_recbole.features.text_vectors import encode_records
from ur4rec_recbole.features.images import encode_item_images, has_image_source, image_vector_path
from ur4rec_recbole.features.table import align_vectors, atomic_tokens, load_vector_table
from ur4rec_recbole.texts.build import build_texts
from ur4rec_recbole.texts.records import read_records


@dataclass
class FeatureSet:
    """Frozen side features aligned to RecBole's internal ids (row 0 = padding)."""

    item_text: torch.Tensor  # [n_items, D] item knowledge vectors, zeros where missing
    item_text_mask: torch.Tensor  # [n_items] bool, True where an item has a knowledge text
    user_text: torch.Tensor  # [n_users, D] preference vectors, zeros where missing
    user_text_mask: torch.Tensor  # [n_users] bool
    item_image: torch.Tensor | None = None  # [n_items, D_img] or None
    item_image_mask: torch.Tensor | None = None  # [n_items] bool or None


def _vector_path(config, kind: str) -> Path:
    return Path(config["data_path"]) / f"{config['dataset']}.{kind}.{config['text_source']}.npz"


def vector_tables(config) -> dict[str, Path]:
    """The vector tables a run of this package's models reads: ``item_text``, ``user_text`` (+ ``item_image``).

    Empty for models without texts (RecBole's: ``text_source`` is not set).
    """
    if not config["text_source"]:
        return {}
    tables = {"item_text": Path(config["item_vector_file"] or _vector_path(config, "item_know")),
              "user_text": Path(config["user_vector_file"] or _vector_path(config, "user_pref"))}
    if "image" in (config["modalities"] or ()):
        tables["item_image"] = image_vector_path(config)
    return tables


def _aligned(config, dataset, path: Path, field: str, suffixes: tuple[str, ...], what: str, dim: int | None,
             section: str = "Missing texts", table: tuple | None = None):
    tokens, vectors, _ = table or load_vector_table(path)
    known = atomic_tokens(config["data_path"], config["dataset"], field, suffixes, config["field_separator"],
                          config["encoding"])
    matrix, mask = align_vectors(path, tokens, vectors, dataset.field2id_token[field], known, what, dim)
    missing = int((~mask[1:]).sum())
    if missing:
        getLogger().warning(
            f"{missing} of {len(mask) - 1} {what}s have no vector in {path.name}; "
            f"they use the fallback (zero vector, masked: see README, '{section}')"
        )
    return torch.from_numpy(matrix), torch.from_numpy(mask)


def prepare_features(config, dataset, histories: Mapping[int, np.ndarray]) -> FeatureSet:
    """Texts, vectors and aligned matrices for ``dataset`` (built, RecBole-split).

    ``histories`` holds each user's training portion only (internal ids), so
    no validation or test item reaches a preference text.
    """
    item_file, user_file = config["item_vector_file"], config["user_vector_file"]
    # tables from elsewhere are read (and checked) first: a bad one stops the run before anything is written
    explicit = {kind: load_vector_table(path) for kind, path in (("item", item_file), ("user", user_file)) if path}
    if item_file is None or user_file is None:
        user_texts, item_texts = build_texts(config, dataset, histories)
        # encode only what no explicit vector file replaces
        for texts, kind, given in ((item_texts, "item_know", item_file), (user_texts, "user_pref", user_file)):
            if given is None:
                encode_records(read_records(texts), _vector_path(config, kind), config["text_encoder"],
                               config["encoder_batch_size"], config["encoder_device"], config["show_progress"])
    tables = vector_tables(config)
    item_path, user_path = tables["item_text"], tables["user_text"]
    item_text, item_mask = _aligned(config, dataset, item_path, dataset.iid_field, ("inter", "item"), "item", None,
                                    table=explicit.get("item"))
    user_text, user_mask = _aligned(config, dataset, user_path, dataset.uid_field, ("inter", "user"), "user",
                                    item_text.shape[1], table=explicit.get("user"))
    features = FeatureSet(item_text, item_mask, user_text, user_mask)
    if "image" in config["modalities"]:
        image_path = tables["item_image"]
        if config["image_vector_file"] is None and has_image_source(config):
            encode_item_images(config)
        elif not image_path.is_file():
            raise FileNotFoundError(
                f"modalities include 'image' but {image_path} does not exist and {Path(config['data_path'])} "
                f"has no images/ folder (nor item_image_field): add images or set image_vector_file"
            )
        features.item_image, features.item_image_mask = _aligned(
            config, dataset, image_path, dataset.iid_field, ("inter", "item"), "item image", None, "Item images"
        )
    return features
