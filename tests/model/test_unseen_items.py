"""Items without training interactions score with ID rows borrowed from their nearest seen items by text."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import build_data, fails_clearly

import run_ur4rec
from ur4rec_recbole.model.unseen import BorrowedEmbeddings


def test_borrowers_take_the_scaled_mean_of_their_nearest_seen_items():
    # items 1..5 (0 is padding); 4 and 5 are unseen; 3 has no knowledge vector
    text = torch.tensor([[0., 0.], [1., 0.], [0., 1.], [0., 0.], [0.9, 0.1], [0.2, 1.0]])
    mask = torch.tensor([False, True, True, False, True, True])
    unseen = torch.tensor([True, False, False, False, True, True])
    weight = torch.arange(12, dtype=torch.float).view(6, 2)
    one = BorrowedEmbeddings(unseen, mask, neighbours=1, scale=0.5, chunk_entries=1)  # one borrower per chunk
    assert one.find_lenders(text).tolist() == [[1], [2]]  # by cosine among the seen items with text (1, 2)
    out = one.replace(weight.clone(), weight, text)
    assert torch.equal(out[:4], weight[:4])  # padding, seen items and the text-less item keep their rows
    assert torch.equal(out[4], 0.5 * weight[1]) and torch.equal(out[5], 0.5 * weight[2])
    two = BorrowedEmbeddings(unseen, mask, neighbours=5, scale=1.0)  # more than the seen items: all of them
    assert torch.equal(two.replace(weight, weight, text)[4], (weight[1] + weight[2]) / 2)
    items = torch.tensor([5, 3, 4])  # rows of some items equal the same rows of the whole table
    assert torch.equal(one.replace(weight[items], weight, text, items), out[items])
    assert torch.equal(one.replace(weight[[1, 2]], weight, text, torch.tensor([1, 2])), weight[[1, 2]])
    off = BorrowedEmbeddings(unseen, mask, neighbours=0, scale=0.5)
    assert not off.active
    again = off.with_settings(1, 0.5)  # other settings for the same items (from an inactive one, too)
    assert torch.equal(again.replace(weight.clone(), weight, text), out)


@pytest.fixture
def cold_model(tiny):
    from ur4rec_recbole.model import UR4Rec

    def build(**extra):
        config, _, train, _, _ = build_data({**tiny[1], "cold_items": "0.25", **extra})
        torch.manual_seed(0)
        return UR4Rec(config, train._dataset), train

    return build


def test_scoring_reads_borrowed_rows_and_training_does_not(cold_model):
    model, train = cold_model(unseen_item_neighbours="2", unseen_item_scale="0.7")
    cold = torch.as_tensor(train._dataset.cold_items, dtype=torch.long)
    seen = torch.ones(model.n_items, dtype=torch.bool)
    seen[cold], seen[0] = False, False
    ids, text = model.item_embedding.weight.detach(), model.item_text
    model.train()
    trained = model.item_table().detach()
    adapted = model.retriever.item_adapter(text) * model.item_text_mask[:, None]
    assert torch.allclose(trained, ids + adapted)  # training reads every item's own row
    model.eval()
    with torch.no_grad():
        scored = model.item_table()
    unit = F.normalize(text, dim=-1)
    for item in cold.tolist():  # the two seen items nearest by cosine, mean row scaled by 0.7
        sims = (unit[item] @ unit.T).masked_fill(~(seen & model.item_text_mask), -2)
        nearest = sims.topk(2).indices
        assert torch.allclose(scored[item], 0.7 * ids[nearest].mean(0) + adapted[item], atol=1e-6)
    assert torch.allclose(scored[seen], trained[seen], atol=1e-6)  # seen items unchanged
    assert "unseen_items.lenders" not in model.state_dict()  # follows from the data, never saved


def test_the_id_only_ablation_borrows_nothing(cold_model):
    model, _ = cold_model(retriever_weight="0", fusion="none")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.item_table(), model.item_embedding.weight)


def test_borrowing_off_keeps_the_own_rows(cold_model):
    model, _ = cold_model(unseen_item_neighbours="0")
    model.eval()
    with torch.no_grad():
        table = model.item_table()
    model.train()
    assert torch.equal(table, model.item_table().detach())


def test_training_borrows_from_the_nearest_other_seen_items_at_the_given_rate():
    # items 1..5 (0 is padding); 5 is unseen; 3 has no knowledge vector
    text = torch.tensor([[0., 0.], [1., 0.], [0., 1.], [0., 0.], [0.9, 0.1], [0.2, 1.0]])
    mask = torch.tensor([False, True, True, False, True, True])
    unseen = torch.tensor([True, False, False, False, False, True])
    weight = torch.arange(12, dtype=torch.float).view(6, 2).requires_grad_()
    every = BorrowedEmbeddings(unseen, mask, neighbours=1, scale=0.5, training_rate=1.0)
    assert every.trains
    out = every.borrow_at_random(weight, weight, text)
    # each seen item with text reads 0.5 x its nearest *other* seen item's row; the rest keep their own
    assert every.seen_lenders[[1, 2, 4], 0].tolist() == [4, 4, 1]  # item 2 is nearer 4 (cos 0.11) than 1 (0)
    assert torch.equal(out[1], 0.5 * weight[4]) and torch.equal(out[2], 0.5 * weight[4])
    assert torch.equal(out[4], 0.5 * weight[1])
    assert torch.equal(out[[0, 3, 5]], weight[[0, 3, 5]])  # padding, no text, unseen
    out.sum().backward()  # the borrowed rows are detached: the lenders learn nothing from them
    assert weight.grad[[1, 2, 4]].eq(0).all() and weight.grad[[0, 3, 5]].eq(1).all()
    items = torch.tensor([4, 3, 1])  # rows of some items as in the whole table
    assert torch.equal(every.borrow_at_random(weight[items], weight, text, items), out[items])
    some = BorrowedEmbeddings(unseen, mask, neighbours=1, scale=0.5, training_rate=0.3)
    big = torch.zeros(6, 2)
    torch.manual_seed(0)
    drawn = sum((some.borrow_at_random(big + 1, big + 1, text) != 1).any(1).float() for _ in range(2000)) / 2000
    assert abs(drawn[[1, 2, 4]] - 0.3).max() < 0.05 and drawn[[0, 3, 5]].eq(0).all()
    off = BorrowedEmbeddings(unseen, mask, neighbours=1, scale=0.5)  # unseen_item_training: 0 (the default)
    assert not off.trains


def test_training_borrowing_is_drawn_in_training_steps_only(cold_model):
    model, train = cold_model(unseen_item_training="1.0", unseen_item_neighbours="1")
    model.train()
    trained = model.item_table().detach()
    own = model.item_embedding.weight.detach() + model.retriever.item_adapter(model.item_text) * model.item_text_mask[:, None]
    seen = model.unseen_items.lenders_pool
    assert not torch.allclose(trained[seen], own[seen])  # every seen item with text borrowed
    assert torch.equal(trained[~seen], own[~seen])  # cold items keep their own rows in training
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.item_table()[seen], own[seen])  # scoring: seen items read their own rows
    loss = (model.train() or model).calculate_loss(next(iter(train)))
    loss.backward()
    assert torch.isfinite(loss)


def test_the_offset_moves_exactly_the_unseen_items_with_text_and_only_when_scoring(cold_model):
    model, train = cold_model(unseen_item_offset="0.75")
    batch = next(iter(train))
    item_seq, item_seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    profile, valid = model.profile_of(batch[model.USER_ID])
    moved = torch.zeros(model.n_items, dtype=torch.bool)
    moved[torch.as_tensor(train._dataset.cold_items, dtype=torch.long)] = True
    moved &= model.item_text_mask
    assert moved.any() and torch.equal(model.unseen_items.from_text, moved)
    model.eval()
    with torch.no_grad():
        with_offset = model.score_parts(item_seq, item_seq_len, profile, valid)
        model.unseen_offset = 0.0
        without = model.score_parts(item_seq, item_seq_len, profile, valid)
        torch.testing.assert_close(with_offset.score - without.score, 0.75 * moved.float().expand_as(without.score))
        assert torch.equal(with_offset.sequence, without.sequence)  # the parts do not hold it
    model.train()  # training never reads it: the same loss with and without
    torch.manual_seed(1)
    loss = model.calculate_loss(batch)
    model.unseen_offset = 0.75
    torch.manual_seed(1)
    assert torch.equal(model.calculate_loss(batch), loss)
    ablation, _ = cold_model(unseen_item_offset="0.75", retriever_weight="0", fusion="none")
    ablation.eval()
    with torch.no_grad():  # the ID-only ablation reads no text: nothing moves
        scores = ablation.score_parts(item_seq, item_seq_len, profile, valid).score
        ablation.unseen_offset = 0.0
        assert torch.equal(scores, ablation.score_parts(item_seq, item_seq_len, profile, valid).score)


@pytest.mark.parametrize("key,value,message", [("unseen_item_neighbours", "-1", "unseen_item_neighbours"),
                                               ("unseen_item_scale", "-0.5", "unseen_item_scale"),
                                               ("unseen_item_training", "1.5", "unseen_item_training"),
                                               ("unseen_item_offset", "'high'", "unseen_item_offset")])
def test_bad_borrowing_settings_are_refused(tiny, capsys, key, value, message):
    _, overrides = tiny
    argv = ["--dataset", "tiny", *[f"--{k}={v}" for k, v in {**overrides, key: value}.items()]]
    fails_clearly(capsys, lambda: run_ur4rec.main(argv), message)
