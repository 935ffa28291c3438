"""SameMaskDropout: nn.Dropout's results (outputs, gradients, generator state), with the mask drawn faster."""

from __future__ import annotations

import pytest
import torch
from conftest import build_data
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import init_seed
from torch import nn

from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.dropout import (SameMaskDropout, uniform_draws_are_bernoulli_draws, use_same_mask_dropout,
                                          use_torch_dropout)
from ur4rec_recbole.run.prepare import build_model
from ur4rec_recbole.run.protocol import masked_class


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("transposed", [False, True])
def test_same_outputs_gradients_and_generator_state_as_nn_dropout(p, transposed):
    x = torch.randn(6, 5, 7)
    x = x.transpose(1, 2) if transposed else x  # memory order is not index order: the mask follows memory order
    results = []
    for layer in (nn.Dropout(p), SameMaskDropout(p)):
        leaf = x.clone().requires_grad_()
        torch.manual_seed(3)
        out = layer.train()(leaf)
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), leaf.grad, torch.rand(4)))  # the next draw: the generator moved alike
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    assert 0 < (results[1][0] == 0).float().mean() < 1  # it did drop something (and kept something)


def test_this_cpu_takes_the_fast_path_or_falls_back_to_torch(monkeypatch):
    """Where the draws differ (e.g. MKL's bernoulli on Intel), the layer is nn.Dropout: still the same results."""
    x = torch.randn(50, 40)
    monkeypatch.setattr("ur4rec_recbole.model.dropout.uniform_draws_are_bernoulli_draws", lambda: False)
    torch.manual_seed(0)
    fallback = SameMaskDropout(0.3).train()(x)
    torch.manual_seed(0)
    assert torch.equal(fallback, nn.functional.dropout(x, 0.3, True))
    monkeypatch.undo()
    if not uniform_draws_are_bernoulli_draws():
        pytest.skip("this torch build's bernoulli_ draws differently: the fast path is off here")
    drawn = []
    monkeypatch.setattr(torch.Tensor, "bernoulli_", lambda *a, **k: drawn.append(1) or pytest.fail("bernoulli_"))
    SameMaskDropout(0.3).train()(x)
    assert not drawn


def test_eval_mode_and_edge_rates_pass_through():
    x = torch.randn(4, 3)
    assert torch.equal(SameMaskDropout(0.5).eval()(x), x)
    assert torch.equal(SameMaskDropout(0.0).train()(x), x)
    assert torch.equal(SameMaskDropout(1.0).train()(x), torch.zeros_like(x))


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread for the test (threaded reductions may round differently from run to run), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the run setup would set it again
    yield
    monkeypatch.undo()
    torch.set_num_threads(threads)


def test_models_get_it_everywhere_and_train_exactly_as_before(tiny, one_thread):
    """Every nn.Dropout of UR4Rec (backbone and retriever) is replaced once; a few training steps give bitwise the
    losses torch's dropout gives; the built-in SASRec is converted by the run path the same way."""
    _, overrides = tiny
    config, _, train, _, _ = build_data(overrides)
    batches, losses = list(train)[:3], {}  # once: the loader reshuffles on every pass
    for kind in ("same", "torch"):
        init_seed(7, True)
        model = UR4Rec(config, train._dataset).train()
        layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert layers and all(type(m) is SameMaskDropout for m in layers)
        assert use_same_mask_dropout(model) == 0  # already converted
        if kind == "torch":
            assert use_torch_dropout(model) == len(layers)
            assert all(type(m) is nn.Dropout for m in model.modules() if isinstance(m, nn.Dropout))
        optimiser = torch.optim.Adam(model.parameters(), 1e-3)
        losses[kind] = []
        for batch in batches:
            optimiser.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimiser.step()
            losses[kind].append(loss.item())
    assert losses["same"] == losses["torch"]
    sasrec_config, _, sasrec_train, _, _ = build_data(overrides, model="SASRec")
    layers_of_sasrec = 1 + 3 * sasrec_config["n_layers"]  # embeddings; per layer attention, its output, feed-forward
    assert sum(type(m) is nn.Dropout for m in SASRec(sasrec_config, sasrec_train._dataset).modules()) == layers_of_sasrec
    sasrec = build_model(sasrec_config, sasrec_train._dataset)  # what every run mode builds
    # RecBole's SASRec behind the one protocol's history masks (run/protocol.py), nothing else in between
    assert type(sasrec) is masked_class(SASRec) and sum(type(m) is SameMaskDropout for m in sasrec.modules()) == layers_of_sasrec
    assert not any(type(m) is nn.Dropout for m in sasrec.modules())
