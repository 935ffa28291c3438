"""Late-interaction scoring (``retriever_scoring: slots``): the sparse kernel sum, and faithful attention."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_data
from recbole.utils import init_seed

from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.retriever import PreferenceRetriever, SlotBlock, SlotRead, _SlotKernelSum

SLOTS = {"retriever_scoring": "slots", "retriever_weight": "0.5"}


def test_kernel_sum_equals_the_dense_gather_and_its_gradients():
    torch.manual_seed(0)
    weights = torch.rand(5, 4, dtype=torch.double, requires_grad=True)
    rows = torch.tensor([[0, 1, 1, 2], [2, 2, 2, 2], [0, 0, 1, 3], [3, 2, 1, 0], [1, 1, 1, 1]])
    kernel = torch.rand(4, 6, dtype=torch.double, requires_grad=True)
    dense = torch.einsum("pm,pmc->pc", weights, kernel[rows])  # what the sparse product must equal
    torch.testing.assert_close(_SlotKernelSum.apply(weights, rows, kernel), dense)
    assert torch.autograd.gradcheck(lambda w, k: _SlotKernelSum.apply(w, rows, k), (weights, kernel))


def test_slot_scores_are_the_logsumexp_over_slots_written_out():
    torch.manual_seed(1)
    P, K, M, C, H = 3, 2, 4, 7, 5
    logits = torch.randn(P, K, 1 + M)
    mask = torch.ones(P, 1 + M, dtype=torch.bool)
    mask[0, 2] = False  # a masked slot
    mask[2] = False  # an empty memory scores 0
    items, profile = torch.randn(9, H), torch.randn(P, H)
    slot_rows = torch.randint(0, 9, (P, M))
    candidates = torch.randn(C, H)
    read = SlotRead(logits, mask, slot_rows, profile, torch.tensor(4.0))
    got = PreferenceRetriever.slot_scores(read, [SlotBlock(items, candidates, None)])
    unit = torch.nn.functional.normalize
    slots = torch.cat([profile[:, None], items[slot_rows]], dim=1)  # [P, 1 + M, H]
    cos = torch.einsum("pmh,ch->pmc", unit(slots, dim=-1), unit(candidates, dim=-1))
    a = (torch.logsumexp(logits, dim=1) - math.log(K)).masked_fill(~mask, float("-inf"))  # [P, 1 + M]
    want = torch.logsumexp(a[..., None] + 4.0 * cos, dim=1)  # [P, C]
    torch.testing.assert_close(got[:2], want[:2])
    assert (got[2] == 0).all()
    # the explanation's score is the same number
    reasons = PreferenceRetriever.slot_reasons(read, items[slot_rows], [(candidates[None].expand(P, -1, -1), None)])
    torch.testing.assert_close(reasons[3][:2], want[:2])


def test_removing_a_slot_lowers_the_score_by_minus_log_one_minus_its_attention(tiny):
    """Faithful by construction: the effect of taking a slot out is a function of its attention alone."""
    _, overrides = tiny
    config, _, train, valid, _ = build_data({**overrides, **SLOTS})
    init_seed(3, True)
    model = UR4Rec(config, train._dataset)
    model.train()
    model.calculate_loss(next(iter(train))).backward()  # scoring trains
    assert model.retriever.log_sharpness.grad is not None and model.retriever.recency.grad.abs().sum() > 0
    model.eval()
    batch = next(iter(valid))[0]
    seq, length = batch["item_id_list"], batch["item_length"]
    profile, valid_profile = model.profile_of(batch["user_id"])
    with torch.no_grad():
        table, views = model.item_table(), model.item_views()
        state = model.gather_indexes(model.sequence_states(seq, table), length - 1)  # [B, H]
        read = model._last_proxies(seq, length, profile, valid_profile, state, views)[0]
        scores = model.retriever_scores(read, views, None, table)  # [B, N] what the fusion weighs
        items = scores.topk(3, dim=1).indices  # [B, 3]
        reasons = model.explain(seq, length, profile, valid_profile, items)
        torch.testing.assert_close(reasons.score, scores.gather(1, items), rtol=1e-5, atol=1e-5)
        attention = reasons.item_attention  # [B, 3, 1 + M]
        torch.testing.assert_close(attention.sum(-1), torch.ones_like(attention[..., 0]))
        row = int((length >= 3).nonzero()[0])
        for position in range(int(length[row])):
            removed = torch.zeros_like(seq, dtype=torch.bool)
            removed[row, position] = True
            after = model.explain(seq, length, profile, valid_profile, items, removed=removed)
            weight = attention[row, :, 1 + position]  # [3] the slot's share of each item's score
            drop = reasons.score[row] - after.score[row]
            torch.testing.assert_close(drop, -torch.log1p(-weight), rtol=1e-4, atol=1e-5)


def test_slot_scores_in_candidate_chunks_equal_one_pass_and_train_alike():
    """Large catalogues are scored chunk by chunk (bounded memory): same scores, same gradients."""
    torch.manual_seed(2)
    P, K, M, C, H = 4, 2, 3, 11, 5
    logits = torch.randn(P, K, 1 + M, requires_grad=True)
    mask = torch.ones(P, 1 + M, dtype=torch.bool)
    items, candidates = torch.randn(9, H, requires_grad=True), torch.randn(C, H)
    read = SlotRead(logits, mask, torch.randint(0, 9, (P, M)), torch.randn(P, H), torch.tensor(3.0))
    blocks = [SlotBlock(items, candidates, None)]
    whole = PreferenceRetriever.slot_scores(read, blocks)
    chunked = PreferenceRetriever.slot_scores(read, blocks, chunk_entries=8)  # a few candidates at a time
    torch.testing.assert_close(chunked, whole)
    grads = [torch.autograd.grad(x.sum(), (logits, items)) for x in (whole, chunked)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape,index", [((7, 3, 2, 4), [[0, 3, 3], [6, 0, 1]]), ((5, 4), [4, 4, 0, 2])])
def test_take_rows_equals_indexing_in_values_and_gradient(shape, index):
    from ur4rec_recbole.model.retriever import take_rows

    table = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    index = torch.tensor(index)
    weights = torch.randn(*index.shape, *shape[1:], dtype=torch.float64)
    (table[index] * weights).sum().backward()
    expected, table.grad = table.grad, None
    taken = take_rows(table, index)
    (taken * weights).sum().backward()
    assert torch.equal(taken, table[index]) and torch.equal(table.grad, expected)  # repeated rows add up


def test_items_without_text_alone_go_through_the_id_adapter(tiny):
    config, _, train, _, _ = build_data(tiny[1])
    model = UR4Rec(config, train._dataset)
    text, mask, ids = model.item_text, model.item_text_mask.clone(), model.item_embedding.weight
    mask[[0, 2, 5]] = False  # padding and two items without a knowledge text
    retriever = model.retriever
    got = retriever.item_representations(text, mask, ids)
    expected = torch.where(mask[:, None], retriever.item_adapter(text), retriever.id_adapter(ids))
    torch.testing.assert_close(got, expected)  # equal up to float rounding (a matmul over fewer rows)
    got.sum().backward()
    assert ids.grad[mask].eq(0).all() and ids.grad[~mask].ne(0).any()  # only text-less rows reach the IDs
