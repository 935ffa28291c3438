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
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.table import align_vectors, atomic_tokens, load_table, load_vector_table
from ur4rec_recbole.texts.base import histories_by_token
from ur4rec_recbole.texts.build import build_texts
from ur4rec_recbole.texts.profiles import expected_fingerprints
from ur4rec_recbole.texts.records import read_records


NO_PROFILE = 2**62  # the cut-off of a padding entry in ``profile_cutoffs``: never reached


@dataclass
class FeatureSet:
    """Frozen side features aligned to RecBole's internal ids (row 0 = padding).

    Preference profiles: user ``u``'s ``j``-th profile (cut-offs ascending) is
    row ``profile_rows[u, j]`` of ``profile_text`` and summarises the first
    ``profile_cutoffs[u, j]`` items of the training portion; unused entries
    have row 0 (a zero vector) and cut-off ``NO_PROFILE``. A profile with
    cut-off 0 (a user vector file without cut-offs) is visible everywhere.
    """

    item_text: torch.Tensor  # [n_items, D] item knowledge vectors, zeros where missing
    item_text_mask: torch.Tensor  # [n_items] bool, True where an item has a knowledge text
    profile_text: torch.Tensor  # [R + 1, D] preference-profile vectors, row 0 zeros
    profile_rows: torch.Tensor  # [n_users, C] long, rows of profile_text by ascending cut-off (0: none)
    profile_cutoffs: torch.Tensor  # [n_users, C] long, training items each profile summarises (NO_PROFILE: none)
    item_image: torch.Tensor | None = None  # [n_items, D_img] or None
    item_image_mask: torch.Tensor | None = None  # [n_items] bool or None

    @property
    def user_text_mask(self) -> torch.Tensor:
        """Users with at least one profile. ``[n_users]`` bool"""
        return (self.profile_rows > 0).any(dim=1)


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
             section: str = "docs/architecture.md#missing-texts", table: tuple | None = None):
    tokens, vectors, _ = table or load_vector_table(path)
    known = atomic_tokens(config["data_path"], config["dataset"], field, suffixes, config["field_separator"],
                          config["encoding"])
    matrix, mask = align_vectors(path, tokens, vectors, dataset.field2id_token[field], known, what, dim)
    missing = int((~mask[1:]).sum())
    if missing:
        getLogger().warning(
            f"{missing} of {len(mask) - 1} {what}s have no vector in {path.name}; "
            f"they use the fallback (zero vector, masked: see {section})"
        )
    return torch.from_numpy(matrix), torch.from_numpy(mask)


def check_profiles(config, dataset, histories: Mapping[int, np.ndarray], path: Path,
                   found: Mapping[str, Mapping[int, str]], sources: list[str] | None,
                   given: bool) -> dict[str, dict[int, str]]:
    """Stop with one line unless every profile in ``found`` (user -> {cut-off: fingerprint}) is one this split gives.

    A profile may be missing (a backend writes none from a history without
    the profile fields; it is masked like any missing text); one of a cut-off
    or fingerprint this run does not expect means the text was written under
    another split, filter or ``profile_cutoffs``. Returns the expected
    ``user -> {cut-off: fingerprint}``.
    """
    expected = expected_fingerprints(histories_by_token(dataset, histories), config["profile_cutoffs"])
    differ = [token for token, profiles in found.items()
              if any(expected.get(token, {}).get(cut) != fingerprint for cut, fingerprint in profiles.items())]
    if differ:
        backend = (sources or ["BACKEND/"])[0].split("/")[0]  # backend/version of the texts
        redo = (f"python -m ur4rec_recbole generate --dataset {config['dataset']} --backend {backend} "
                f"--source {config['text_source']} with this run's settings" if not given
                else "write the vectors again from this split's training portions")
        raise InputError(
            f"{path}: the preference profiles of {len(differ)} of {len(expected)} users were written from other "
            f"histories than this run's training portions (another split, filter, cold_items or profile_cutoffs; "
            f"e.g. user {sorted(differ)[0]!r}); regenerate them: {redo}")
    return expected


def _profiles(config, dataset, path: Path, histories: Mapping[int, np.ndarray], dim: int,
              given: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Profile vectors, rows and cut-offs (see :class:`FeatureSet`), checked against this split's portions.

    A table with cut-offs must hold exactly the profiles this run's training
    portions and ``profile_cutoffs`` give, with matching fingerprints, or the
    run stops with one line. A table without them (a file the user made) is
    taken as one vector per user, visible at every position, with a warning.
    """
    tokens, vectors, meta, columns = load_table(path)
    if vectors.shape[1] != dim:
        raise ValueError(f"{path}: user vectors have dimension {vectors.shape[1]}, expected {dim} "
                         f"(the item vectors' dimension: both live in one text space)")
    user_ids = {str(token): uid for uid, token in enumerate(dataset.field2id_token[dataset.uid_field])}
    if columns is None:
        getLogger().warning(
            f"{path} has no cutoffs and fingerprints: nothing shows which histories its vectors were written "
            "from (split, filter, cut-off), so nothing checks them; each user's vector is used at every "
            "position, which leaks later items into training if it summarises the history")
        matrix, mask = _aligned(config, dataset, path, dataset.uid_field, ("inter", "user"), "user", dim)
        rows = torch.where(mask, torch.arange(len(mask)), 0)[:, None]  # [U, 1]
        cut = torch.where(mask, 0, NO_PROFILE)[:, None]
        return matrix, rows, cut
    found: dict[str, dict[int, str]] = {}
    for token, cutoff, fingerprint in zip(tokens, columns["cutoffs"].tolist(), columns["fingerprints"]):
        found.setdefault(str(token), {})[int(cutoff)] = str(fingerprint)
    expected = check_profiles(config, dataset, histories, path, found, meta.get("texts"), given)
    missing = sum(len(set(cuts) - set(found.get(token, {}))) for token, cuts in expected.items())
    if missing:
        getLogger().warning(f"{missing} of {sum(map(len, expected.values()))} preference profiles have no vector in "
                            f"{path.name}; they are masked (see docs/architecture.md#missing-texts)")
    width = max([len(c) for c in found.values()] + [1])
    rows = torch.zeros(len(user_ids), width, dtype=torch.long)
    cut = torch.full((len(user_ids), width), NO_PROFILE, dtype=torch.long)
    order = sorted(range(len(tokens)), key=lambda r: (str(tokens[r]), int(columns["cutoffs"][r])))
    slot: dict[str, int] = {}
    for r in order:
        uid = user_ids[str(tokens[r])]
        j = slot[str(tokens[r])] = slot.get(str(tokens[r]), -1) + 1
        rows[uid, j], cut[uid, j] = r + 1, int(columns["cutoffs"][r])
    matrix = torch.cat([torch.zeros(1, dim), torch.from_numpy(vectors)])
    return matrix, rows, cut


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
                records = read_records(texts)
                if kind == "user_pref":  # refuse texts of another split before spending time on encoding them
                    found: dict[str, dict[int, str]] = {}
                    for r in records.values():
                        found.setdefault(r.token, {})[r.cutoff or 0] = r.fingerprint or ""
                    sources = sorted({f"{r.backend}/{r.version}" for r in records.values()})
                    check_profiles(config, dataset, histories, texts, found, sources, given=False)
                encode_records(records, _vector_path(config, kind), config["text_encoder"],
                               config["encoder_batch_size"], config["encoder_device"], config["encoder_precision"],
                               config["encoder_max_length"], config["encoder_batch_tokens"], config["show_progress"])
    tables = vector_tables(config)
    item_path, user_path = tables["item_text"], tables["user_text"]
    item_text, item_mask = _aligned(config, dataset, item_path, dataset.iid_field, ("inter", "item"), "item", None,
                                    table=explicit.get("item"))
    profiles = _profiles(config, dataset, user_path, histories, item_text.shape[1], given=user_file is not None)
    features = FeatureSet(item_text, item_mask, *profiles)
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
