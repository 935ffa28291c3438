"""Sampled softmax (``train_negatives``): exact at the whole catalogue, corrected and masked when sampled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import build_data
from recbole.utils import init_seed

from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.sampled_softmax import InBatchNegatives, UniformNegatives


def test_uniform_over_the_whole_catalogue_is_the_full_softmax():
    torch.manual_seed(0)
    n, rows = 9, 6
    scores = torch.randn(rows, n)
    targets = torch.tensor([1, 4, 4, 8, 2, 1])
    candidates = UniformNegatives(n, count=n, item_counts=torch.zeros(n)).candidates(targets)
    logits = scores[:, candidates.items]  # each row scores the candidate ids
    torch.testing.assert_close(candidates.cross_entropy(logits), F.cross_entropy(scores, targets))


def test_in_batch_subtracts_log_q_and_masks_duplicates_of_the_own_target():
    counts = torch.tensor([0, 3, 1, 0])  # add-one: q = (1, 4, 2, 1) / 8
    targets = torch.tensor([1, 2, 1])
    candidates = InBatchNegatives(4, 0, counts).candidates(targets)
    scores = torch.tensor([[0.5, 0.2, 0.1], [0.3, 0.9, -0.4], [0.0, 0.7, 0.2]])  # row p, column j: item targets[j]
    log_q = torch.log(torch.tensor([4 / 8, 2 / 8, 4 / 8]))
    expected = []
    for p in range(3):
        keep = [j for j in range(3) if j == p or targets[j] != targets[p]]  # other copies of p's item are no negatives
        row = scores[p, keep] - log_q[keep]
        expected.append(-(row[keep.index(p)] - torch.logsumexp(row, 0)))
    torch.testing.assert_close(candidates.cross_entropy(scores), torch.stack(expected).mean())


@pytest.mark.parametrize("sampler", [UniformNegatives(30, 7, torch.ones(30)), InBatchNegatives(30, 0, torch.arange(30))])
def test_candidates_of_some_rows_score_those_rows_as_the_whole_batch_does(sampler):
    """``Candidates.rows`` (``retriever_share``): the kept rows' loss terms are the batch's own."""
    torch.manual_seed(0)
    targets = torch.randint(1, 30, (9,))
    candidates = sampler.candidates(targets)
    logits = torch.randn(9, len(candidates.items))
    keep = torch.tensor([True, False, True, True, False, False, True, False, True])
    each = F.cross_entropy(logits + candidates.offset, candidates.labels, reduction="none")  # [9]
    torch.testing.assert_close(candidates.rows(keep).cross_entropy(logits[keep]), each[keep].mean())
    torch.testing.assert_close(candidates.rows(~keep).cross_entropy(logits[~keep]), each[~keep].mean())


@pytest.mark.parametrize("fusion", ["weighted", "rank"])
def test_model_loss_with_the_whole_catalogue_sampled_equals_full_softmax(tiny, fusion):
    _, overrides = tiny
    settings = {**overrides, "fusion": fusion, "retriever_weight": "0.5"}
    losses = []
    for negatives in ({"train_negatives": "none"}, {"train_negatives": "uniform", "train_negatives_count": "100000"}):
        config, _, train, _, _ = build_data({**settings, **negatives})
        init_seed(7, True)
        model = UR4Rec(config, train._dataset).eval()  # no dropout: the same computation
        losses.append(model.calculate_loss(next(iter(train))))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("negatives", ["uniform", "in_batch"])
def test_sampled_training_reaches_every_part(tiny, negatives):
    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "retriever_weight": "0.5", "train_negatives": negatives,
                                         "train_negatives_count": "5"})
    init_seed(7, True)
    model = UR4Rec(config, train._dataset).train()
    loss = model.calculate_loss(next(iter(train)))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name in ("retriever.proxies", "item_embedding.weight", "fusions.weighted.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_a_sampled_step_builds_only_the_item_rows_it_reads(tiny):
    """The item table's rows (ID + projected text) are row-wise: a subset equals the whole table's rows, and
    the sequence states read from the subset equal those read from the whole table."""
    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "text_in_items": "True", "train_negatives": "uniform",
                                         "train_negatives_count": "8"})
    init_seed(5, True)
    model = UR4Rec(config, train._dataset).eval()
    batch = next(iter(train))
    seq = batch["item_id_list"]
    needed, rows = torch.unique(seq, return_inverse=True)
    with torch.no_grad():
        whole = model.item_table()
        torch.testing.assert_close(model.item_table(needed), whole[needed])
        torch.testing.assert_close(model.sequence_states(seq, model.item_table(needed), rows),
                                   model.sequence_states(seq, whole))
    model.train()
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.retriever.item_adapter.gain.grad is not None


def test_sampled_negatives_update_only_the_item_rows_a_step_read(tiny):
    """Lazy Adam: under sampled negatives the item embedding's gradient is sparse and a step moves only the rows
    it read; every other parameter gets the configured learner."""
    from ur4rec_recbole.registry import get_trainer
    from ur4rec_recbole.training.optimizers import DenseAndSparse

    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "retriever_weight": "0.5", "train_negatives": "uniform",
                                         "train_negatives_count": "5"})
    init_seed(7, True)
    model = UR4Rec(config, train._dataset).train()
    optimizer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).optimizer
    assert isinstance(optimizer, DenseAndSparse)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer.zero_grad()
    model.calculate_loss(next(iter(train))).backward()
    grad = model.item_embedding.weight.grad
    assert grad.is_sparse
    read = torch.zeros(model.n_items, dtype=torch.bool)
    read[grad.coalesce().indices()[0]] = True
    optimizer.step()
    moved = (model.item_embedding.weight.detach() != before["item_embedding.weight"]).any(dim=1)
    assert moved.any() and not moved[~read].any()  # rows nobody read keep their values (and their moments)
    assert not torch.equal(model.retriever.proxies.detach(), before["retriever.proxies"])
    state = optimizer.state_dict()
    again = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).optimizer
    again.load_state_dict(state)  # a checkpoint's optimizer state round-trips
    assert again.sparse.state_dict()["state"].keys() == optimizer.sparse.state_dict()["state"].keys()


def test_full_softmax_keeps_the_dense_item_embedding_and_its_optimizer(tiny):
    from ur4rec_recbole.errors import InputError
    from ur4rec_recbole.registry import get_trainer

    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "retriever_weight": "0.5"})
    model = UR4Rec(config, train._dataset).train()
    optimizer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model).optimizer
    assert isinstance(optimizer, torch.optim.Adam) and model.sparse_parameters() == []
    model.calculate_loss(next(iter(train))).backward()
    assert not model.item_embedding.weight.grad.is_sparse
    sampled_config, _, sampled_train, _, _ = build_data({**overrides, "train_negatives": "in_batch"})
    sampled = UR4Rec(sampled_config, sampled_train._dataset)
    lazy = get_trainer(sampled_config["MODEL_TYPE"], sampled_config["model"])(sampled_config, sampled).optimizer
    with pytest.raises(InputError, match="train_negatives, learner and weight_decay it was trained with"):
        lazy.load_state_dict(optimizer.state_dict())  # resuming a dense run's optimizer sparsely is refused
