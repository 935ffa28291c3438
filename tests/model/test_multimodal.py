"""Multimodal UR4Rec: modality fusions, masked memory, auxiliary losses, uncertainty weighting."""

from __future__ import annotations

import pytest
import torch
from conftest import build_data
from recbole.utils import init_seed
from test_images import image_dataset
from test_run import cli

import run_ur4rec
from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.losses import LOSS_TERMS
from ur4rec_recbole.model.modality import MODALITY_FUSIONS
from ur4rec_recbole.registry import get_trainer

ALL_TERMS = {"retriever_weight": 0.5, "contrastive_weight": 0.5, "consistency_weight": 0.5, "diversity_weight": 0.5}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """(data root, overrides) of a tiny dataset with images, encoded once for the module."""
    root = tmp_path_factory.mktemp("mm")
    data, overrides = image_dataset(root)
    build_data({**overrides, "modalities": "text,image"})  # texts, text and image vectors, cached for later tests
    return data, overrides


PROXIES = {"retriever_scoring": "proxies"}  # the modality fusions mix the proxies' reads of text and image slots


def model_for(overrides, seed=7, **settings):
    config, dataset, train, valid, _ = build_data({**overrides, "modalities": "text,image", **PROXIES, **settings})
    init_seed(seed, True)
    return UR4Rec(config, train._dataset), config, train, valid


def first(loader):
    return next(iter(loader))


@pytest.mark.parametrize("fusion", sorted(MODALITY_FUSIONS))
def test_each_modality_fusion_trains_one_epoch_through_the_command_line(images, tmp_path, fusion):
    _, overrides = images
    results = run_ur4rec.main(["--dataset", "tiny", "--modalities", "text,image",
                               *cli({**overrides, **PROXIES, "modality_fusion": fusion,
                                     "checkpoint_dir": tmp_path})])
    assert results["config"]["modalities"] == ["text", "image"] and results["config"]["modality_fusion"] == fusion
    assert results["epochs_run"] == 1 and 0 <= results["test_result"]["ndcg@10"] <= 1
    state = torch.load(results["checkpoint"], weights_only=True)["state_dict"]
    assert "image_modules.adapter.0.weight" in state and any(k.startswith("image_modules.fusion.") for k in state)


def test_image_only_retriever_trains(images, tmp_path):
    _, overrides = images
    results = run_ur4rec.main(["--dataset", "tiny", *cli({**overrides, "modalities": "image",
                                                          "checkpoint_dir": tmp_path})])
    state = torch.load(results["checkpoint"], weights_only=True)["state_dict"]
    assert "image_modules.adapter.0.weight" in state and not any(k.startswith("image_modules.fusion") for k in state)


def test_text_modality_adds_nothing_to_the_text_model(images):
    _, overrides = images
    config, _, train, _, _ = build_data({**overrides, "modalities": "text"})
    init_seed(7, True)
    text = UR4Rec(config, train._dataset)
    config2, _, train2, _, _ = build_data({k: v for k, v in overrides.items() if k != "modalities"})
    init_seed(7, True)
    default = UR4Rec(config2, train2._dataset)
    assert text.state_dict().keys() == default.state_dict().keys()
    assert not any("image" in k or "uncertainty" in k for k in text.state_dict())
    text.eval(), default.eval()
    batch = first(train)
    torch.testing.assert_close(text.calculate_loss(batch), default.calculate_loss(batch), rtol=0, atol=0)


@pytest.mark.parametrize("fusion", [*sorted(MODALITY_FUSIONS), "slots"])
def test_items_without_an_image_are_masked_not_replaced(images, fusion):
    """Changing the stored image vector of an item without an image changes nothing (each modality fusion, and
    late interaction, where an image slot is matched with the candidates' images only)."""
    _, overrides = images
    settings = {"retriever_scoring": "slots"} if fusion == "slots" else {"modality_fusion": fusion}
    model, _, train, valid = model_for(overrides, **settings)
    model.eval()
    no_image = int(torch.nonzero(~model.item_image_mask[1:])[0]) + 1
    batch = first(valid)[0]
    before = model.full_sort_predict(batch)
    model.item_image[no_image] = torch.randn_like(model.item_image[no_image]) * 10
    after = model.full_sort_predict(batch)
    torch.testing.assert_close(before, after)
    with_image = int(torch.nonzero(model.item_image_mask[1:])[0]) + 1
    model.item_image[with_image] = torch.randn_like(model.item_image[with_image]) * 10
    assert not torch.allclose(model.full_sort_predict(batch)[:, with_image], after[:, with_image])


def test_attention_fusion_mixes_modalities_per_proxy():
    """Each proxy weighs the item's text and image tokens itself; the fast cosine equals the explicit one."""
    torch.manual_seed(0)
    fusion = MODALITY_FUSIONS["attention"](8)
    proxies, text, image = torch.randn(3, 2, 8), torch.randn(5, 8), torch.randn(5, 8)
    has_image = torch.tensor([True, True, False, True, False])
    a_text, a_image = fusion.weights(proxies, text, image, has_image)  # [P, K, N]
    torch.testing.assert_close(a_text + a_image, torch.ones_like(a_text))
    assert (a_image[..., ~has_image] == 0).all() and a_image[..., has_image].flatten(0, 1).std(0).min() > 0.01
    mixed = a_text[..., None] * text + a_image[..., None] * image  # [P, K, N, H], built here only
    explicit = torch.nn.functional.cosine_similarity(proxies[:, :, None], mixed, dim=-1).amax(1)
    torch.testing.assert_close(fusion.score(proxies, text, image, has_image), explicit)
    text_only = torch.nn.functional.cosine_similarity(proxies[:, :, None], text, dim=-1).amax(1)
    torch.testing.assert_close(explicit[:, ~has_image], text_only[:, ~has_image])


def test_each_loss_term_is_finite_and_follows_its_weight(images):
    _, overrides = images
    model, _, train, _ = model_for(overrides, **ALL_TERMS)
    model.eval()  # no dropout: losses are deterministic
    batch = first(train)
    assert set(model.active_terms()) == set(LOSS_TERMS)
    total = model.calculate_loss(batch)
    assert torch.isfinite(total)
    for name in LOSS_TERMS:
        base = model.term_weights[name]
        model.term_weights[name] = 2 * base
        changed = model.calculate_loss(batch)
        model.term_weights[name] = base
        assert torch.isfinite(changed) and not torch.allclose(changed, total), name
    assert torch.allclose(model.calculate_loss(batch), total)


def test_loss_terms_are_switched_off_by_zero_weights(images):
    _, overrides = images
    off = {k: 0 for k in ALL_TERMS}
    model, _, train, _ = model_for(overrides, fusion="none", **off)
    assert model.active_terms() == {}
    model.train()
    model.calculate_loss(first(train)).backward()
    assert model.retriever.proxies.grad is None  # no retriever work at all


def test_uncertainty_weights_get_gradients_and_reach_the_optimizer(images):
    _, overrides = images
    model, config, train, _ = model_for(overrides, uncertainty_weighting=True, **ALL_TERMS)
    model.train()
    model.calculate_loss(first(train)).backward()
    log_vars = model.uncertainty.log_vars
    assert model.uncertainty.names == list(LOSS_TERMS)
    assert log_vars.grad is not None and (log_vars.grad != 0).all()
    trainer = get_trainer(config["MODEL_TYPE"], "UR4Rec")(config, model)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(log_vars) in optimised
    before = log_vars.detach().clone()
    trainer._train_epoch(train, 0)
    assert not torch.allclose(log_vars, before)


def test_unknown_modalities_and_fusions_are_rejected(images):
    _, overrides = images
    with pytest.raises(ValueError, match="modalities='text,audio': expected a non-empty subset"):
        model_for(overrides, modalities="text,audio")
    with pytest.raises(ValueError, match="setting modality_fusion='sum': expected one of"):
        model_for(overrides, modality_fusion="sum")
