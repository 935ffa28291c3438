"""two_stage: the candidate stage's lists and the preference rerank of them (docs/guides/two-stage.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_data
from recbole.utils import init_seed

from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.candidates import (SOURCES, BackboneIndex, CandidateSettings, CandidateStage, exact_top,
                                             merge, recent_items, source_recall, successor_table, two_stage_ranks)

TWO_STAGE = {"two_stage": "True", "candidate_count": "12", "candidate_backbone_share": "0.5",
             "candidate_text_share": "0.25", "candidate_transition_share": "0.1"}


def stage(n_items=60, dim=8, count=10, backbone=4, text=3, transitions=2, window=2, portions=None, seed=0,
          same_text=()):
    gen = torch.Generator().manual_seed(seed)
    item_text = torch.randn(n_items, dim, generator=gen)
    for a, b in same_text:  # item a gets item b's knowledge vector
        item_text[a] = item_text[b]
    mask = torch.ones(n_items, dtype=torch.bool)
    mask[0] = False
    return CandidateStage(CandidateSettings(count, backbone, text, transitions, window), item_text, mask,
                          portions, n_items), item_text


def test_merge_deduplicates_keeps_quotas_and_fills():
    backbone = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    text = torch.tensor([[6, 20, 21, 22]])  # 6 is the backbone's already; then at most 2 new
    trans = torch.tensor([[20, 30, 0]])  # 20 is taken; 0 (padding) is never a candidate
    lists = merge([backbone[:, :2], text, trans, backbone[:, 2:]], [2, 2, 1, 6], [0, 1, 2, 3], 7)
    assert lists.items.tolist() == [[5, 6, 20, 21, 30, 7, 8]]
    assert [SOURCES[s] for s in lists.source[0].tolist()] == ["backbone"] * 2 + ["text"] * 2 + ["transitions", "fill",
                                                                                                "fill"]
    # an item a quota dropped from the text part still fills from the backbone's later ranks
    lists = merge([backbone[:, :1], torch.tensor([[30, 31, 7]]), backbone[:, 1:]], [1, 2, 5], [0, 1, 3], 5)
    assert lists.items.tolist() == [[5, 30, 31, 6, 7]]


def test_merge_bitmaps_equal_comparisons(monkeypatch):
    """The two ways merge tells new items from seen ones give the same lists and sources."""
    import ur4rec_recbole.model.candidates as candidates

    gen = torch.Generator().manual_seed(0)
    distinct = lambda n: torch.stack([torch.randperm(29, generator=gen)[:n] + 1 for _ in range(50)])  # noqa: E731
    text = torch.randint(0, 30, (50, 9), generator=gen)  # repeats itself and the others, holds padding
    parts = [distinct(4), text, distinct(3), distinct(29)]  # backbone top, text, transitions, backbone ranks
    with_bitmaps = merge(parts, [4, 3, 2, 12], [0, 1, 2, 3], 12)
    monkeypatch.setattr(candidates, "BITMAP_ENTRIES", 0)
    with_comparisons = merge(parts, [4, 3, 2, 12], [0, 1, 2, 3], 12)
    assert torch.equal(with_bitmaps.items, with_comparisons.items)
    assert torch.equal(with_bitmaps.source, with_comparisons.source)
    assert (with_bitmaps.items > 0).all() and all(len(set(r.tolist())) == 12 for r in with_bitmaps.items)


@pytest.mark.parametrize("seed", range(5))
def test_candidates_contain_exact_backbone_top(seed):
    """Whatever the other sources give, the backbone's exact top ranks are always candidates, and lists are full
    and distinct."""
    cands, _ = stage(seed=seed, portions={1: np.array([1, 2, 3, 2, 4]), 2: np.array([3, 2, 5])})
    gen = torch.Generator().manual_seed(seed)
    state, table = torch.randn(16, 8, generator=gen), torch.randn(60, 8, generator=gen)
    ranked = exact_top(state, table, cands.backbone_depth, chunk_items=7)[1]  # chunked = one product
    full = (state @ table.T).index_fill(1, torch.tensor([0]), float("-inf")).topk(cands.backbone_depth).indices
    assert torch.equal(ranked, full)
    recent = torch.randint(1, 60, (16, 3), generator=gen)
    lists = cands.lists(ranked, recent).items
    for row, top in zip(lists, full[:, :4]):
        assert set(top.tolist()) <= set(row.tolist())
        assert len(set(row.tolist())) == 10 and 0 not in row.tolist()


def test_cold_item_reaches_candidates_through_text():
    """An item no one interacted with (no transition, lowest backbone score) is a candidate when its text is
    the nearest to a recent history item's."""
    cold, last = 59, 3
    cands, item_text = stage(portions={1: np.array([1, 2, 3])}, same_text=[(cold, last)])
    backbone = torch.arange(1, 59).flip(0)[None]  # item 59 is not even in the backbone's ranking
    lists = cands.lists(backbone, torch.tensor([[last, 2]]))
    where = (lists.items[0] == cold).nonzero()
    assert len(where) == 1 and SOURCES[lists.source[0, where[0, 0]]] == "text"
    assert source_recall(lists, torch.tensor([cold])) == {"overall": 1.0, "backbone": 0.0, "text": 1.0,
                                                          "transitions": 0.0, "fill": 0.0}


def test_successor_table_ranks_by_count():  # ties: the lower id first
    table = successor_table({1: np.array([1, 2, 1, 3, 1, 3]), 2: np.array([1, 3, 4])}, 6, 2)
    assert table[1].tolist() == [3, 2] and table[3].tolist() == [1, 4] and table[5].tolist() == [0, 0]
    assert recent_items(torch.tensor([[4, 5, 6, 0]]), torch.tensor([1]), 3).tolist() == [[5, 4, 0]]


def test_faiss_backbone_index_finds_exact_top():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(0)
    table, state = torch.randn(2000, 16, generator=gen), torch.randn(20, 16, generator=gen)
    exact = BackboneIndex(table, "exact").top(state, 10)
    approx = BackboneIndex(table, "faiss").top(state, 10)
    recall = np.mean([len(set(a.tolist()) & set(e.tolist())) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95


def two_stage_model(tiny, **extra):
    _, overrides = tiny
    config, _, train, valid, test = build_data({**overrides, **TWO_STAGE, **extra})
    init_seed(3, True)
    return UR4Rec(config, train._dataset), train, test


def test_rerank_keeps_backbone_order_outside_candidates(tiny):
    model, _, test = two_stage_model(tiny)
    model.eval()
    batch = next(iter(test))[0]
    with torch.no_grad():
        item_seq, lengths = batch["item_id_list"], batch["item_length"]
        score = model.full_sort_predict(batch)  # [B, N]
        table = model.item_table()
        seq = model.gather_indexes(model.sequence_states(item_seq, table), lengths - 1) @ table.T
        lists = model.candidate_lists(seq, item_seq, lengths - 1).items
    for row in range(len(score)):
        inside = torch.zeros(score.shape[1], dtype=torch.bool).index_fill(0, lists[row], True)
        assert score[row, inside].min() > score[row, ~inside].max()  # candidates first
        outside = (~inside).nonzero().squeeze(1)
        assert torch.equal(score[row, outside].argsort(descending=True, stable=True),
                           seq[row, outside].argsort(descending=True, stable=True))
    # the retriever changed the order inside the lists (so the test can tell a rerank from none)
    assert any(not torch.equal(score[r, lists[r]].argsort(), seq[r, lists[r]].argsort()) for r in range(len(score)))


def test_training_and_scoring_build_the_same_lists(tiny, monkeypatch):
    """The list a training position reranks is the list scoring builds for the history up to that position."""
    model, train, _ = two_stage_model(tiny)
    model.eval()  # no dropout: a training position's state equals the state of its prefix scored alone
    built = []
    original = model.candidate_lists

    def spy(ranking, item_seq, last):
        lists = original(ranking, item_seq, last)
        built.append((item_seq, last, lists.items))
        return lists

    monkeypatch.setattr(model, "candidate_lists", spy)
    batch = next(iter(train))
    model.calculate_loss(batch)
    (seqs, lasts, trained), = built
    built.clear()
    for p in [0, len(lasts) // 2, len(lasts) - 1]:
        prefix = seqs[p: p + 1].clone()
        prefix[0, int(lasts[p]) + 1:] = 0
        length = lasts[p: p + 1] + 1
        user = batch["user_id"][(batch["item_id_list"] == seqs[p]).all(1).nonzero()[0]]
        profile, valid = model.profile_of(user)
        with torch.no_grad():
            model.score_parts(prefix, length, profile, valid, parts=False)
        assert torch.equal(built[-1][2][0], trained[p])


def test_two_stage_trains_and_needs_a_score_fusion(tiny):
    model, train, _ = two_stage_model(tiny)
    loss = model.calculate_loss(next(iter(train)))
    loss.backward()
    assert torch.isfinite(loss) and model.retriever.log_sharpness.grad is not None
    from ur4rec_recbole.errors import InputError
    with pytest.raises(InputError, match="setting fusion='rank'"):
        two_stage_model(tiny, fusion="rank")


def test_chunked_ranks_equal_full_scoring(tiny):
    """two_stage_ranks over the catalogue in chunks = the target's rank in the model's full [B, N] scores."""
    for exclude in (False, True):
        model, _, test = two_stage_model(tiny, exclude_history=str(exclude))
        model.eval()
        batch = next(iter(test))[0]
        item_seq, lengths, targets = batch["item_id_list"], batch["item_length"], batch["item_id"]
        with torch.no_grad():
            score = model.full_sort_predict(batch)
            score[:, 0] = float("-inf")
            full_rank = 1 + (score > score.gather(1, targets[:, None])).sum(1)
            table = model.item_table()
            state = model.gather_indexes(model.sequence_states(item_seq, table), lengths - 1)
            seq = state @ table.T
            ranking = seq.scatter(1, item_seq, float("-inf")) if exclude else seq
            lists = model.candidate_lists(ranking, item_seq, lengths - 1).items
            chunked = two_stage_ranks(state, table, targets, lists, score.gather(1, lists),
                                      item_seq if exclude else None, chunk_items=5)
        assert torch.equal(chunked, full_rank)


def test_serving_benchmark_runs_and_exact_index_has_full_recall(tmp_path, monkeypatch):
    """benchmarks/serving_scale.py end to end on a small catalogue: the exact index finds the exact top ranks."""
    import json
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import serving_scale

    monkeypatch.setattr(sys, "argv", ["serving_scale.py"])
    out = tmp_path / "serving.json"
    serving_scale.main(["--items", "3000", "--index", "exact", "--users", "3", "--batch", "4", "--batches", "1",
                        "--eval_users", "8", "--chunk", "700", "--output", str(out)])
    result = json.loads(out.read_text())
    assert result["candidate_recall"] == 1.0 and result["list_recall"] == 1.0
    assert result["p50_ms"] > 0 and result["peak_memory_mb"] > 0 and result["eval_users"] == 8
    assert 1 <= result["eval_mean_rank"] <= 3000
