"""UR4Rec model: SASRec equivalence, fusions, causal memory, stages."""

from __future__ import annotations

import pytest
import torch
from conftest import build_data
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import init_seed

from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.fusion import FUSIONS, ranks
from ur4rec_recbole.training.stages import parse_stages
from ur4rec_recbole.training.trainer import UR4RecTrainer

ABLATION = {"retriever_weight": "0", "fusion": "none"}


def make(model_class, config, dataset, seed=7):
    init_seed(seed, True)
    return model_class(config, dataset)


def first_batch(loader):
    return next(iter(loader))


def test_ablation_matches_sasrec_on_prefix_rows(tiny):
    _, overrides = tiny
    config, _, train, valid, _ = build_data({**overrides, **ABLATION, "train_all_positions": "False"})
    ours, base = make(UR4Rec, config, train._dataset), make(SASRec, config, train._dataset)
    shared = base.state_dict()
    for name, tensor in shared.items():
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=0, atol=0)
    ours.eval(), base.eval()
    batch = first_batch(train)
    torch.testing.assert_close(ours.calculate_loss(batch), base.calculate_loss(batch))
    eval_batch = first_batch(valid)[0]
    torch.testing.assert_close(ours.full_sort_predict(eval_batch), base.full_sort_predict(eval_batch))


def test_all_positions_loss_is_mean_of_sasrec_prefix_losses(tiny):
    """Training every position of a window under the causal mask = SASRec on each prefix."""
    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, **ABLATION, "train_stride": 3})
    ours, base = make(UR4Rec, config, train._dataset), make(SASRec, config, train._dataset)
    ours.eval(), base.eval()
    batch = first_batch(train)
    seq, lengths, target, start = batch["item_id_list"], batch["item_length"], batch["item_id"], batch["train_from"]
    assert (start > 0).any()  # overlapping windows: some positions are context only
    losses = []
    for row in range(len(seq)):
        full = torch.cat([seq[row, : lengths[row]], target[row : row + 1]])
        for t in range(int(start[row]) + 1, len(full)):
            prefix = torch.zeros_like(seq[row : row + 1])
            prefix[0, :t] = full[:t]
            logits = base.forward(prefix, torch.tensor([t])) @ base.item_embedding.weight.T
            losses.append(torch.nn.functional.cross_entropy(logits, full[t : t + 1]))
    torch.testing.assert_close(ours.calculate_loss(batch), torch.stack(losses).mean(), rtol=1e-5, atol=1e-5)


PROXIES = {"retriever_scoring": "proxies"}
VARIANTS = [
    {"item_adapter": adapter} for adapter in ("mlp", "linear", "lowrank", "frozen")
] + [
    {**PROXIES, "retriever_query": query, "proxy_pooling": pooling}
    for query in ("proxies", "state") for pooling in ("max", "logsumexp", "mean")
] + [
    {"text_in_items": "True"}, {"use_profile": "False"}, {**PROXIES, "diversity_weight": "0.1"},
    {"train_exclude_history": "True", "exclude_history": "True"},
    {**PROXIES, "fusion": "query", "proxy_pooling": "mean", "retriever_query": "state", "text_in_items": "True"},
    {"retriever_scoring": "slots"},
    {"retriever_scoring": "slots", "retriever_query": "proxies", "item_adapter": "mlp", "text_in_items": "True"},
    {"retriever_scoring": "slots", "train_negatives": "uniform", "train_negatives_count": "8"},
    {"retriever_share": "0.5", "train_negatives": "in_batch"},
    {"retriever_share": "0.5", "fusion": "rank", "train_exclude_history": "True"},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_each_retriever_variant_trains_forward_and_backward(tiny, variant):
    _, overrides = tiny
    config, _, train, valid, _ = build_data({**overrides, "retriever_weight": "0.5", **variant})
    model = make(UR4Rec, config, train._dataset)
    model.train()
    loss = model.calculate_loss(first_batch(train))
    assert torch.isfinite(loss)
    loss.backward()
    trained = [p for p in model.retriever.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert trained, "no retriever parameter got a gradient"
    model.eval()
    batch = first_batch(valid)[0]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), train._dataset.item_num)
    if variant.get("exclude_history") == "True":  # the history's items are never recommended
        assert torch.isinf(scores.gather(1, batch["item_id_list"])).all()
    assert torch.isfinite(scores.scatter(1, batch["item_id_list"], 0.0)).all()


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_each_fusion_trains_and_ranks(tiny, fusion):
    _, overrides = tiny
    pooling = "mean" if fusion == "query" else "max"  # (query fusion reads the proxies' states)
    scoring = PROXIES if fusion == "query" else {}
    config, _, train, valid, _ = build_data({**overrides, "fusion": fusion, "retriever_weight": "0.5",
                                             "proxy_pooling": pooling, **scoring})
    model = make(UR4Rec, config, train._dataset)
    model.train()
    loss = model.calculate_loss(first_batch(train))
    assert torch.isfinite(loss)
    loss.backward()
    proxy_grad = model.retriever.proxies.grad
    assert proxy_grad is not None and proxy_grad.abs().sum() > 0
    model.eval()
    batch = first_batch(valid)[0]
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), train._dataset.item_num) and torch.isfinite(scores).all()
    picked = model.predict(batch)
    torch.testing.assert_close(picked, scores.gather(1, batch["item_id"][:, None]).squeeze(1))


def test_retriever_changes_the_ranking_only_when_fused(tiny):
    _, overrides = tiny
    config, _, train, valid, _ = build_data({**overrides, "fusion": "weighted", "fusion_weight": "1.0"})
    model = make(UR4Rec, config, train._dataset).eval()
    batch = first_batch(valid)[0]
    fused = model.full_sort_predict(batch)
    model.fusion_name = "none"
    fused_none = model.full_sort_predict(batch)
    assert not torch.allclose(fused, fused_none)


def test_item_text_fusion_is_the_sequence_score_over_an_item_table_with_text(tiny, monkeypatch):
    """``fusion: item_text``: SASRec's score over ID + adapted knowledge rows; the retriever never scores."""
    _, overrides = tiny
    config, _, train, valid, _ = build_data({**overrides, "fusion": "item_text", "retriever_weight": "0"})
    model = make(UR4Rec, config, train._dataset)
    ids, text = model.item_embedding.weight, model.retriever.item_adapter(model.item_text)
    expected_table = ids + text * model.item_text_mask[:, None]
    torch.testing.assert_close(model.item_table(), expected_table)
    assert not torch.allclose(model.item_table(), ids)  # the text is in the table
    monkeypatch.setattr(UR4Rec, "retriever_scores", lambda *a, **k: pytest.fail("item_text fusion scored the retriever"))
    model.train()
    loss = model.calculate_loss(first_batch(train))
    loss.backward()
    assert model.retriever.item_adapter.gain.grad is not None  # the text's gain trains through the item table
    model.eval()
    batch = first_batch(valid)[0]
    state = model.gather_indexes(model.sequence_states(batch["item_id_list"], expected_table), batch["item_length"] - 1)
    torch.testing.assert_close(model.full_sort_predict(batch), state @ expected_table.T)
    with pytest.raises(Exception, match="text_in_items"):
        build_data({**overrides, "fusion": "item_text", "text_in_items": "False"})


def test_retriever_share_trains_unscored_windows_on_the_sequence_score_alone(tiny, monkeypatch):
    """``retriever_share`` < 1: the loss is the mean over all positions of the fused loss where the retriever
    scores and the sequence score's loss elsewhere; the retriever scores the chosen positions only."""
    from ur4rec_recbole.model.sampled_softmax import Candidates

    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "retriever_weight": "0", "fusion_weight": "1.0"})
    model = make(UR4Rec, config, train._dataset).eval()  # eval: no dropout, so the passes compare
    batch = first_batch(train)
    seen = []
    original = Candidates.cross_entropy
    monkeypatch.setattr(Candidates, "cross_entropy",
                        lambda self, logits: seen.append((logits, self.labels)) or original(self, logits))
    per_position = lambda: torch.nn.functional.cross_entropy(*seen.pop(), reduction="none")  # noqa: E731
    model.calculate_loss(batch)
    fused = per_position()  # [P] every position, fused score
    with torch.no_grad():
        model.fusion.weight.zero_()
    model.calculate_loss(batch)
    alone = per_position()  # [P] the sequence score alone (weight 0: fused == seq)
    with torch.no_grad():
        model.fusion.weight.fill_(1.0)
    assert not torch.allclose(fused, alone)
    rows = torch.arange(len(batch["item_id_list"]))
    scored_rows = rows % 2 == 0
    scored = {}
    monkeypatch.setattr(UR4Rec, "retriever_rows", lambda self, r, b: scored.setdefault("mask", scored_rows[r]))
    scores = []
    real_scores = UR4Rec.retriever_scores
    monkeypatch.setattr(UR4Rec, "retriever_scores", lambda self, *a: scores.append(real_scores(self, *a)) or scores[-1])
    loss = model.calculate_loss(batch)
    mask = scored["mask"]
    assert 0 < mask.sum() < len(mask) and scores[0].shape[0] == mask.sum()
    torch.testing.assert_close(loss, torch.where(mask, fused, alone).mean())


def test_retriever_share_draws_whole_windows(tiny):
    _, overrides = tiny
    config, _, train, _, _ = build_data({**overrides, "retriever_share": "0.5"})
    model = make(UR4Rec, config, train._dataset)
    rows = torch.arange(40).repeat_interleave(3)  # 40 windows, 3 positions each
    picks = [model.retriever_rows(rows, 40) for _ in range(20)]
    for pick in picks:
        assert pick.any() and (pick.view(40, 3) == pick.view(40, 3)[:, :1]).all()  # a window is in or out
    assert 0.3 < torch.stack(picks).float().mean() < 0.7
    model.train()
    loss = model.calculate_loss(first_batch(train))
    loss.backward()
    assert torch.isfinite(loss) and model.retriever.log_sharpness.grad is not None
    one = make(UR4Rec, build_data({**overrides})[0], train._dataset)
    assert one.retriever_rows(rows, 40) is None  # the default: every window


def test_cascade_reranks_only_sasrec_top_k():
    seq = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    ret = torch.tensor([[0.0, 0.0, 10.0, 0.0, 50.0]])
    fusion = FUSIONS["cascade"]({"fusion_weight": 1.0, "cascade_k": 3}, 4)
    order = fusion.rank_scores(seq, ret, None).argsort(descending=True)[0].tolist()
    assert order == [2, 0, 1, 3, 4]  # item 4 has the best retriever score but is outside the top 3


def test_rank_fusion_is_reciprocal_rank():
    seq = torch.tensor([[3.0, 2.0, 1.0]])
    ret = torch.tensor([[1.0, 3.0, 2.0]])
    assert ranks(seq).tolist() == [[1, 2, 3]] and ranks(ret).tolist() == [[3, 1, 2]]
    scores = FUSIONS["rank"]({"rrf_k": 0}, 4).rank_scores(seq, ret, None)
    torch.testing.assert_close(scores, torch.tensor([[1 + 1 / 3, 1 / 2 + 1, 1 / 3 + 1 / 2]]))


def test_stage_switch_freezes_groups(tiny):
    _, overrides = tiny
    stages = "[{'name': 'backbone', 'epochs': 1, 'train': ['backbone'], 'fusion': 'none', 'retriever_weight': 0}, {'name': 'joint', 'epochs': 1}]"
    config, _, train, valid, _ = build_data({**overrides, "stages": stages})
    model = make(UR4Rec, config, train._dataset)
    trainer = UR4RecTrainer(config, model)
    assert trainer.epochs == 2 and [s["name"] for s in trainer.stages] == ["backbone", "joint"]
    retriever0 = {k: v.clone() for k, v in model.retriever.state_dict().items()}
    embedding0 = model.item_embedding.weight.detach().clone()
    trainer._train_epoch(train, 0)
    assert model.fusion_name == "none" and model.term_weights["retrieval"] == 0
    for k, v in model.retriever.state_dict().items():
        torch.testing.assert_close(v, retriever0[k])
    assert not torch.allclose(model.item_embedding.weight, embedding0)
    trainer._train_epoch(train, 1)
    assert model.fusion_name == "weighted" and model.term_weights["retrieval"] == pytest.approx(0.1)
    assert not torch.allclose(model.retriever.proxies, retriever0["proxies"])
    assert [e["stage"] for e in trainer.epoch_history] == ["backbone", "joint"]


def test_bad_stages_are_rejected():
    groups = ("backbone", "retriever")
    with pytest.raises(ValueError, match=r"stages\[0\]\.epochs must be a positive int"):
        parse_stages([{"name": "a", "epochs": 0}], groups)
    with pytest.raises(ValueError, match=r"unknown keys \['lr'\]"):
        parse_stages([{"epochs": 1, "lr": 3}], groups)
    with pytest.raises(ValueError, match=r"unknown groups \['head'\]"):
        parse_stages([{"epochs": 1, "train": ["head"]}], groups)
    assert parse_stages(None, groups) is None


def test_bad_settings_are_rejected_before_any_data_is_loaded(tmp_path):
    from ur4rec_recbole.config import Config

    missing = {"data_path": str(tmp_path / "nowhere")}  # no atomic files: a data load would fail differently
    for key, value, message in [
        ("fusion", "average", r"setting fusion='average': expected one of \['cascade', 'gate', 'item_text', 'none'"),
        ("n_proxies", "0", r"setting n_proxies=0: expected an int >= 1"),
        ("retriever_weight", "-0.5", r"setting retriever_weight=-0.5: expected a number >= 0"),
        ("retriever_heads", "3", r"expected a divisor of hidden_size=64"),
        ("retriever_share", "0", r"setting retriever_share=0: expected a number > 0 and <= 1"),
        ("stages", "[{'epochs': 1, 'fusion': 'avg'}]", r"stages\[0\]\.fusion='avg'"),
    ]:
        with pytest.raises(ValueError, match=message):
            Config("UR4Rec", "tiny", cmd_overrides={**missing, key: value})


def test_bf16_text_vectors_rank_as_fp32_ones_in_a_tiny_model(tiny):
    """bf16 encoding (auto where the CPU has native bf16) changes the model's rankings by at most one item in ten."""
    from ur4rec_recbole.features.text_vectors import encode_texts
    from ur4rec_recbole.texts.records import ITEM_KIND, read_records, text_path

    _, overrides = tiny
    config, _, train, valid, _ = build_data(overrides)
    model = make(UR4Rec, config, train._dataset).eval()
    texts = read_records(text_path(config["data_path"], config["dataset"], ITEM_KIND, config["text_source"]))
    tokens = train._dataset.field2id_token["item_id"]
    rows = [i for i, token in enumerate(tokens) if token in texts]
    batch = first_batch(valid)[0]
    top = {}
    for precision in ("fp32", "bf16"):
        vectors = encode_texts([texts[tokens[i]].text for i in rows], "all-MiniLM-L6-v2", "cpu", precision,
                               progress=False)
        model.item_text[rows] = torch.from_numpy(vectors)
        with torch.no_grad():
            top[precision] = model.full_sort_predict(batch).topk(10, dim=1).indices  # [B, 10]
    overlap = [len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top["fp32"], top["bf16"])]
    assert min(overlap) >= 0.9, overlap
