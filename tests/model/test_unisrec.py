"""UniSRec written from its paper: the whitening, the MoE adaptor's shapes, both variants under the protocol."""

from __future__ import annotations

import pytest
import torch
from conftest import build_data

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.model.unisrec import MoEAdaptor, ParametricWhitening
from ur4rec_recbole.run.prepare import build_model
from ur4rec_recbole.run.single import run


def test_parametric_whitening_centres_then_projects():
    layer = ParametricWhitening(5, 3, dropout=0.0, initializer_range=0.02)
    with torch.no_grad():
        layer.bias.copy_(torch.arange(5.0))
    x = torch.randn(4, 5)
    assert torch.allclose(layer(x), (x - torch.arange(5.0)) @ layer.linear.weight.T, atol=1e-6)
    assert layer(torch.arange(5.0)[None]).abs().max() < 1e-6  # the learned centre maps to zero


def test_the_adaptor_mixes_the_experts_by_gates_that_sum_to_one():
    adaptor = MoEAdaptor(n_exps=4, input_size=6, output_size=3, dropout=0.0, initializer_range=0.02).eval()
    x = torch.randn(2, 7, 6)  # [B, L, D]
    assert adaptor(x).shape == (2, 7, 3) and adaptor(x[0]).shape == (7, 3)
    gates = adaptor.gates(x)  # [B, L, G]
    assert gates.shape == (2, 7, 4) and torch.allclose(gates.sum(-1), torch.ones(2, 7))
    mixed = sum(gates[..., k, None] * expert(x) for k, expert in enumerate(adaptor.experts))
    assert torch.allclose(adaptor(x), mixed, atol=1e-6)
    assert torch.equal(adaptor.gates(x), adaptor.gates(x))  # no noise in evaluation
    adaptor.train()
    assert not torch.equal(adaptor.gates(x), adaptor.gates(x))  # noisy gates in training


@pytest.mark.parametrize("stage", ["inductive_ft", "transductive_ft"])
def test_both_variants_train_and_honour_the_history_mask(tiny, stage):
    overrides = {**tiny[1], "train_stage": stage, "exclude_history": "True", "hidden_size": "16"}
    config, _, train, _, test = build_data(overrides, model="UniSRec")
    net = build_model(config, train._dataset)
    loss = net.calculate_loss(next(iter(train)))
    loss.backward()
    assert torch.isfinite(loss)
    assert (net.item_embedding.weight.grad is not None) == (stage == "transductive_ft")  # inductive: text only
    assert net.adaptor.experts[0].linear.weight.grad is not None
    interaction = next(iter(test))[0]
    scores = net.eval().full_sort_predict(interaction)  # [B, N]
    held = torch.zeros_like(scores, dtype=torch.bool).scatter(1, interaction["item_id_list"], True)
    assert torch.isneginf(scores[held]).all() and torch.isfinite(scores[~held]).all()
    assert net.protocol["exclude_history"] is True


def test_an_epoch_runs_through_the_one_setup_path(tiny):
    results = run("UniSRec", "tiny", cmd_overrides={**tiny[1], "hidden_size": "16"})
    assert results["test_result"]["ndcg@10"] >= 0 and results["protocol"]["ranking"] is not None


def test_a_bad_stage_is_refused(tiny):
    with pytest.raises(InputError, match=r"setting train_stage='pretrain'"):
        build_data({**tiny[1], "train_stage": "pretrain"}, model="UniSRec")
