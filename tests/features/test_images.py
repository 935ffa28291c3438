"""Item images: finding them, open_clip extraction, cache, report, bad files, weights errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CATEGORIES, N_ITEMS, build_data, fails_clearly, tiny_overrides, write_tiny_dataset

from ur4rec_recbole.config import Config
from ur4rec_recbole.features import image_encoders
from ur4rec_recbole.features.image_encoders import load_image_encoder
from ur4rec_recbole.features.images import WeightsUnavailable, encode_item_images, find_item_images
from ur4rec_recbole.features.table import load_vector_table

# the cheapest open_clip architecture, untrained, at 64 px: no download, fast on CPU
IMAGE_SETTINGS = {"image_model": "ViT-S-32", "image_pretrained": "none", "image_size": 64, "image_batch_size": 16}
COLOURS = {"Action": (220, 30, 30), "Comedy": (240, 200, 20), "Drama": (30, 60, 200), "Horror": (20, 20, 20),
           "SciFi": (30, 200, 90)}
MISSING, CORRUPT = "i3", "i5"


def poster(category: str, shape: int, size: int = 48):
    """A coloured shape on white: the colour tracks the category, the shape alternates."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (draw.ellipse if shape else draw.rectangle)(box, fill=COLOURS[category])
    return image


def write_images(folder, skip=(MISSING,), corrupt=(CORRUPT,)) -> None:
    """One poster per tiny item, as png, jpg or webp (items i and i + 30 get the same file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, N_ITEMS + 1):
        token = f"i{i}"
        if token in skip:
            continue
        if token in corrupt:
            (folder / f"{token}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
            continue
        suffix = (".png", ".jpg", ".webp")[i % 3]
        poster(CATEGORIES[i % len(CATEGORIES)], (i // 5) % 2).save(folder / f"{token}{suffix}")


def image_dataset(root):
    """A tiny dataset with images/ and config overrides for fast image runs."""
    data = write_tiny_dataset(root / "data")
    write_images(data / "tiny" / "images")
    return data, tiny_overrides(data, root, **IMAGE_SETTINGS)


@pytest.fixture
def with_images(tmp_path):
    return image_dataset(tmp_path)


def config_for(overrides) -> Config:
    return Config("UR4Rec", "tiny", cmd_overrides=overrides)


def test_encoding_writes_aligned_vectors_and_report(with_images, monkeypatch):
    data, overrides = with_images
    report = encode_item_images(config_for(overrides))
    tokens, vectors, meta = load_vector_table(data / "tiny" / "tiny.image_vec.npz")
    expected = sorted(f"i{i}" for i in range(1, N_ITEMS + 1) if f"i{i}" not in (MISSING, CORRUPT))
    assert sorted(tokens) == expected and vectors.shape == (len(expected), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    row = {t: v for t, v in zip(tokens, vectors)}
    np.testing.assert_allclose(row["i1"], row["i31"], atol=1e-5)  # the same poster, both jpg
    assert not np.allclose(row["i1"], row["i2"], atol=1e-3)  # another colour
    assert meta["encoder"] == "open_clip:ViT-S-32" and meta["pretrained"] == "None"

    saved = json.loads((data / "tiny" / "tiny.image_vec.report.json").read_text())
    assert saved["items"] == N_ITEMS and saved["encoded"] == len(expected) and saved["images_per_second"] > 0
    assert saved["missing"] == {MISSING: "no file images/i3.{jpg,jpeg,png,webp}"}
    assert list(saved["corrupt"]) == [CORRUPT] and "UnidentifiedImageError" in saved["corrupt"][CORRUPT]
    assert report.missing == saved["missing"] and not report.cached

    # same images and model: the cache answers without loading the model; a changed image re-encodes
    monkeypatch.setattr(image_encoders.ImageEncoder, "load", lambda *a, **k: pytest.fail("model loaded"))
    again = encode_item_images(config_for(overrides))
    assert again.cached and sorted(again.encoded) == expected and list(again.corrupt) == [CORRUPT]
    poster("Drama", 1).save(data / "tiny" / "images" / "i1.jpg")
    with pytest.raises(pytest.fail.Exception, match="model loaded"):
        encode_item_images(config_for(overrides))
    assert not list((data / "tiny").glob(".*.tmp"))


def test_item_image_field_paths_relative_to_the_dataset(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    folder = data / "tiny"
    write_images(folder / "covers", skip=(), corrupt=())
    lines = (folder / "tiny.item").read_text().splitlines()
    rows = [lines[0] + "\tcover:token"]
    for line in lines[1:]:
        token = line.split("\t")[0]
        cover = {"i2": "", "i4": "covers/nothing.png"}.get(token, next(str(p.relative_to(folder)) for p in
                                                                          (folder / "covers").glob(f"{token}.*")))
        rows.append(f"{line}\t{cover}")
    (folder / "tiny.item").write_text("\n".join(rows) + "\n")
    found, missing = find_item_images(folder, "tiny", ["i1", "i2", "i4", "i99"], "item_id", "cover")
    assert found == {"i1": folder / "covers" / "i1.jpg"}
    assert missing == {"i2": "empty cover in tiny.item", "i4": "cover names covers/nothing.png, which does not exist",
                       "i99": "no row in tiny.item"}
    with pytest.raises(ValueError, match="tiny.item: no column 'poster'"):
        find_item_images(folder, "tiny", ["i1"], "item_id", "poster")


def test_absent_pretrained_weights_give_one_clear_error():
    with pytest.raises(WeightsUnavailable, match="pass its local path: --image-pretrained /path/to/checkpoint"):
        load_image_encoder("RN50", "yfcc15m", "cpu")
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag of ViT-S-32"):
        load_image_encoder("ViT-S-32", "laion2b", "cpu")
    with pytest.raises(ValueError, match="nor an open_clip architecture"):
        load_image_encoder("ViT-Z-99", None, "cpu")


def test_encode_command_line(with_images, capsys):
    from ur4rec_recbole.cli import encode

    data, overrides = with_images
    report = encode.main(["--dataset", "tiny", "--images", "--image-model", "ViT-S-32", "--image-pretrained", "none",
                          f"--data_path={data}", "--image_size=64", "--state=WARNING"])
    assert report["encoded"] == N_ITEMS - 2 and report["missing_count"] == 1 and report["corrupt_count"] == 1
    assert "tiny.image_vec.report.json" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        encode.main(["--dataset", "tiny", f"--data_path={data}"])  # no --images
    fails_clearly(capsys, lambda: encode.main(["--dataset", "tiny", "--images", "--image-model", "RN50",
                                               "--image-pretrained", "yfcc15m", f"--data_path={data}",
                                               "--state=WARNING"]),
                  "^error: open_clip weights RN50/yfcc15m are not on this machine")


def test_dataset_masks_items_without_a_usable_image(with_images):
    _, overrides = with_images
    _, dataset, *_ = build_data({**overrides, "modalities": "text,image"})
    features, items = dataset.features, list(dataset.field2id_token["item_id"])
    mask = {items[i]: bool(features.item_image_mask[i]) for i in range(1, len(items))}
    assert not mask[MISSING] and not mask[CORRUPT] and sum(mask.values()) == len(mask) - 2
    assert (features.item_image[items.index(MISSING)] == 0).all()
    _, text_only, *_ = build_data(overrides)  # modalities: text (default) leaves images alone
    assert text_only.features.item_image is None


def test_image_modality_without_images_is_a_clear_error(tiny):
    _, overrides = tiny
    with pytest.raises(FileNotFoundError, match="has no images/ folder"):
        build_data({**overrides, "modalities": "image"})
