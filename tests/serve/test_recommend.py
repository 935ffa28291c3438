"""Recommendations from a checkpoint: round trip, new users, exclusion, reranking, errors, explanations, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT, build_data, fails_clearly, tiny_overrides, write_tiny_dataset

from ur4rec_recbole.cli import recommend as recommend_cli
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.registry import get_model, get_trainer
from ur4rec_recbole.model.fusion import FUSIONS
from ur4rec_recbole.serve import Recommender
from ur4rec_recbole.serve.loading import Loaded
from ur4rec_recbole.training.trainer import seal

K = 5


def train(root: Path, tmp: Path, model: str = "UR4Rec", **extra):
    """One epoch on the tiny data, as run_ur4rec.py trains: (Recommender over the model in memory, checkpoint)."""
    overrides = {**tiny_overrides(root, tmp), **extra}
    config, dataset, train_data, valid_data, _ = build_data(overrides, model=model)
    net = get_model(model)(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    return Recommender(Loaded(config, dataset, net.eval(), Path(trainer.saved_model_file))), trainer.saved_model_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recommend")
    root = write_tiny_dataset(tmp / "data")
    # fp32 texts: under bf16 (auto on a CPU with AMX) a text's vector depends on the batch it is encoded in,
    # and these tests compare a new history's fresh vector with the stored one
    rec, checkpoint = train(root, tmp, encoder_precision="fp32")
    return rec, checkpoint, root


@pytest.fixture(scope="module")
def loaded(trained):
    return Recommender.load(trained[1])


def tokens_of(rec: Recommender, ids) -> list[str]:
    return [str(rec.catalogue.item_tokens[i]) for i in ids]


def ranked(answer) -> list[str]:
    return [item.item for item in answer.items]


def test_round_trip_in_a_new_process_gives_the_same_top_k(trained, tmp_path):
    in_memory, checkpoint, _ = trained
    expected = [r.as_dict() for r in in_memory.recommend_many(in_memory.users(), k=K, explain=True)]
    code = ("import json, sys; from ur4rec_recbole.serve import Recommender; "
            "rec = Recommender.load(sys.argv[1]); "
            f"print(json.dumps([r.as_dict() for r in rec.recommend_many(rec.users(), k={K}, explain=True)]))")
    done = subprocess.run([sys.executable, "-c", code, checkpoint], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert [ranked_dict(r) for r in again] == [ranked_dict(r) for r in expected]
    for new, old in zip(again, expected):
        assert new["user"] == old["user"] and new["preference"] == old["preference"]
        for a, b in zip(new["items"], old["items"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["explanation"]["proxy"] == b["explanation"]["proxy"]
            weights = [[s["weight"] for s in x["explanation"]["slots"]] for x in (a, b)]
            assert weights[0] == pytest.approx(weights[1], abs=1e-5)  # equal weights may list in either order


def ranked_dict(answer: dict) -> list[str]:
    return [item["item"] for item in answer["items"]]


def test_known_users_history_is_everything_observed(trained):
    """Training, validation and test items: RecBole's test row of each user is the history minus its last item."""
    rec, _, root = trained
    _, _, _, _, test = build_data(tiny_overrides(root, root.parent))
    rows = test._dataset.inter_feat
    length = rec.max_length
    for user, seq, size, target in zip(rows["user_id"].tolist(), rows["item_id_list"], rows["item_length"],
                                       rows["item_id"].tolist()):
        history = rec.catalogue.histories[user]
        assert history[-1] == target
        assert history[:-1][-length:].tolist() == seq[: int(size)].tolist()


def test_scores_are_the_models_and_parts_add_up(trained):
    rec, _, _ = trained
    model = rec.model
    answer = rec.recommend("u3", k=K, exclude_history=False)
    history = torch.as_tensor(rec.catalogue.histories[rec.catalogue.user_ids["u3"]][-rec.max_length:])
    from recbole.data.interaction import Interaction
    row = Interaction({"user_id": torch.tensor([rec.catalogue.user_ids["u3"]]),
                       "item_id_list": torch.nn.functional.pad(history, (0, rec.max_length - len(history)))[None],
                       "item_length": torch.tensor([len(history)])})
    with torch.no_grad():
        scores = model.full_sort_predict(row)[0]
    top = torch.topk(scores[1:], K).indices + 1
    assert ranked(answer) == tokens_of(rec, top.tolist())
    for item in answer.items:
        assert item.score == pytest.approx(item.sequence + item.retriever, abs=1e-5)  # weighted fusion


@pytest.mark.parametrize("fusion", ["none", "weighted", "gate", "rank"])
def test_fusion_parts_add_up_to_the_ranking_score(fusion):
    config = {"fusion_weight": 0.3, "rrf_k": 60, "cascade_k": 5}
    module = FUSIONS[fusion](config, 8)
    seq, ret, state = torch.randn(3, 20), torch.randn(3, 20), torch.randn(3, 8)
    torch.testing.assert_close(sum(module.parts(seq, ret, state)), module.rank_scores(seq, ret, state))


def test_a_new_users_history_ranks_as_the_known_user_with_that_history(trained):
    rec, _, _ = trained
    catalogue = rec.catalogue
    for user in ("u1", "u7"):
        uid = catalogue.user_ids[user]
        history = tokens_of(rec, catalogue.histories[uid])
        known = rec.recommend(user, k=K)
        new = rec.recommend(history=history, k=K, profile=catalogue.preference_texts[user])
        assert ranked(new) == ranked(known)
        assert [i.score for i in new.items] == pytest.approx([i.score for i in known.items], abs=1e-4)
        # the template writes a new user's profile as it wrote the stored one (from the training portion)
        training_portion = catalogue.histories[uid][:-2]
        assert catalogue.profile_text(training_portion) == catalogue.preference_texts[user]
        built = rec.recommend(history=tokens_of(rec, training_portion), k=K)
        assert built.preference == catalogue.preference_texts[user]


def test_a_masked_profile_changes_only_the_retriever_part(trained):
    rec, _, _ = trained
    history = ["i1", "i6", "i11", "i16"]
    with_profile = rec.recommend(history=history, k=40, exclude_history=False)
    without = rec.recommend(history=history, k=40, exclude_history=False, profile=False)
    assert without.preference is None and with_profile.preference
    seq_a = {i.item: i.sequence for i in with_profile.items}
    seq_b = {i.item: i.sequence for i in without.items}
    assert seq_a == pytest.approx(seq_b, abs=1e-6)
    assert {i.item: i.retriever for i in with_profile.items} != pytest.approx(
        {i.item: i.retriever for i in without.items}, abs=1e-6)


def test_seen_items_are_left_out_unless_asked(trained):
    rec, _, _ = trained
    everything = rec.catalogue.item_ids
    for user in ("u2", "u5"):
        seen = set(tokens_of(rec, rec.catalogue.histories[rec.catalogue.user_ids[user]]))
        kept = rec.recommend(user, k=len(everything))
        assert not seen & set(ranked(kept)) and len(kept.items) == len(everything) - len(seen)
        all_items = rec.recommend(user, k=len(everything), exclude_history=False)
        assert set(ranked(all_items)) == set(everything)
        assert ranked(kept) == [t for t in ranked(all_items) if t not in seen]  # same order otherwise
    new = rec.recommend(history=["i1", "i2"], k=len(everything))
    assert not {"i1", "i2"} & set(ranked(new))


def test_candidates_are_reranked(trained):
    rec, _, _ = trained
    full = ranked(rec.recommend("u4", k=40, exclude_history=False))
    candidates = ["i3", "i30", "i17", "i9", "i22"]
    answer = rec.recommend("u4", candidates=candidates, k=10, exclude_history=False)
    assert ranked(answer) == [t for t in full if t in candidates]
    assert ranked(rec.recommend("u4", candidates=candidates, k=2, exclude_history=False)) == ranked(answer)[:2]
    per_user = rec.recommend_many(["u4", "u5"], candidates=[candidates, ["i1", "i2"]], k=10, exclude_history=False)
    assert ranked(per_user[0]) == ranked(answer) and set(ranked(per_user[1])) == {"i1", "i2"}


def test_unknown_tokens_are_named_in_one_error(trained, capsys):
    rec, checkpoint, _ = trained
    with pytest.raises(InputError, match=r"unknown user token\(s\) 'nobody', 'x1'"):
        rec.recommend_many(["u1", "nobody", "x1"])
    with pytest.raises(InputError, match=r"unknown item token\(s\) 'i999', 'zz'"):
        rec.recommend(history=["i1", "i999", "zz"])
    with pytest.raises(InputError, match=r"unknown item token\(s\) 'nope'"):
        rec.recommend("u1", candidates=["i1", "nope"])
    with pytest.raises(InputError, match="not both"):
        rec.recommend("u1", history=["i1"])
    with pytest.raises(InputError, match="candidates is empty"):
        rec.recommend("u1", candidates=[])
    with pytest.raises(InputError, match="history is empty"):
        rec.recommend(history=[])
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", checkpoint, "--user", "u1", "ghost"]),
                  r"^error: unknown user token\(s\) 'ghost'")
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", checkpoint, "--history", "i1,bad"]),
                  r"^error: unknown item token\(s\) 'bad'")
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", checkpoint, "--all", "-o", "x.txt"]),
                  r"unknown format '.txt'; name a .jsonl or .csv file")
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", "nowhere.pth", "--all"]),
                  r"checkpoint nowhere.pth does not exist")


def test_a_checkpoint_whose_dataset_changed_is_refused(trained, tmp_path):
    _, checkpoint, root = trained
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert Recommender.load(checkpoint, data_path=moved).recommend("u1", k=3).items  # a faithful copy loads
    # (changed vector tables go through the same check_same_data: tests/cli/test_bad_inputs.py, resume)
    state = torch.load(checkpoint, weights_only=True)
    del state["data"]  # a checkpoint from before fingerprints cannot be checked, so it is refused
    old = tmp_path / "old.pth"
    torch.save(seal(state), old)  # re-sealed: an honest old file, not a changed one
    with pytest.raises(InputError, match="no data fingerprint"):
        Recommender.load(old)
    inter = moved / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text() + "u1\ti2\t3\t999999\n")
    with pytest.raises(InputError, match=r"it was trained on other data: atomic file tiny.inter changed"):
        Recommender.load(checkpoint, data_path=moved)


def test_explanations_are_distributions_over_the_named_history(trained):
    rec, _, _ = trained
    for user, profile in (("u1", True), ("u6", False)):
        answer = rec.recommend(user, k=K, explain=True, top_slots=None, profile=profile)
        history = tokens_of(rec, rec.catalogue.histories[rec.catalogue.user_ids[user]])
        in_memory = history[-rec.max_length:]
        for item in answer.items:
            slots = item.explanation.slots
            assert sum(s.weight for s in slots) == pytest.approx(1.0, abs=1e-5)
            assert all(s.weight >= 0 for s in slots)
            assert [s.weight for s in slots] == sorted((s.weight for s in slots), reverse=True)
            named = sorted((s.position, s.item) for s in slots if s.kind == "history")
            assert named == [(len(history) - len(in_memory) + p, t) for p, t in enumerate(in_memory)]
            assert all(history[s.position] == s.item for s in slots if s.kind == "history")
            assert sum(s.kind == "preference" for s in slots) == (1 if profile else 0)
            assert all(s.title == f"Movie number {s.item[1:]}" for s in slots if s.kind == "history")
        top = rec.recommend(user, k=K, explain=True, profile=profile)
        assert all(len(item.explanation.slots) == 3 for item in top.items)


def test_the_explained_proxy_gives_the_retriever_score(trained):
    rec, _, _ = trained
    answer = rec.recommend("u2", k=K)
    batch = rec.batch(["u2"])
    items = torch.tensor([[rec.catalogue.item_ids[i.item] for i in answer.items]])
    reasons = rec.scorer.reasons(batch, items)
    weight = float(rec.model.fusion.weight.detach())
    scores = reasons.proxy_scores[0]  # [K, k]
    pooled = {"max": scores.amax(dim=0), "mean": scores.mean(dim=0),
              "logsumexp": torch.logsumexp(scores, dim=0) - math.log(len(scores))}[
        "logsumexp" if rec.model.retriever.scoring == "slots" else rec.model.proxy_pooling]
    assert torch.equal(reasons.proxy_scores.argmax(dim=1), reasons.proxy)
    assert [i.retriever for i in answer.items] == pytest.approx((weight * pooled).tolist(), abs=1e-5)


@pytest.mark.parametrize("pooling", ["max", "logsumexp", "mean"])
def test_an_items_attention_mixes_the_proxies_by_their_share_of_its_score(pooling):
    """Under smooth pooling every proxy contributes to an item's score, so its explanation mixes their attention."""
    from ur4rec_recbole.model.retriever import PROXY_SHARES

    scores = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])  # [B=1, K=3, k=2]
    shares = PROXY_SHARES[pooling](scores)
    torch.testing.assert_close(shares.sum(dim=1), torch.ones(1, 2))
    expected = {"max": torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]),
                "logsumexp": torch.softmax(scores[0], dim=0),
                "mean": torch.full((3, 2), 1 / 3)}[pooling]
    torch.testing.assert_close(shares[0], expected)
    scores.requires_grad_(True)  # the share is the pooled score's gradient with respect to each proxy's score
    pooled = {"max": lambda x: x.amax(dim=1), "mean": lambda x: x.mean(dim=1),
              "logsumexp": lambda x: torch.logsumexp(x, dim=1)}[pooling](scores)
    (grad,) = torch.autograd.grad(pooled.sum(), scores)
    torch.testing.assert_close(grad[0] / grad[0].sum(dim=0), expected)


def test_cli_writes_jsonl_and_csv(trained, tmp_path):
    rec, checkpoint, _ = trained
    out = tmp_path / "recs.jsonl"
    assert recommend_cli.main(["--checkpoint", checkpoint, "--all", "--k", "4", "--explain", "-o", str(out)]) == 24
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user"] for line in lines] == rec.users()
    assert all(len(line["items"]) == 4 and line["items"][0]["explanation"]["slots"] for line in lines)
    single = rec.recommend("u1", k=4).items
    assert [i["item"] for i in lines[0]["items"]] == [i.item for i in single]
    assert [i["score"] for i in lines[0]["items"]] == pytest.approx([i.score for i in single], abs=1e-5)
    table = tmp_path / "recs.csv"
    recommend_cli.main(["--checkpoint", checkpoint, "--history", "i1,i6,i11", "--history", "i2", "--k", "3",
                        "--explain", "-o", str(table)])
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert len(rows) == 6 and [r["rank"] for r in rows] == ["1", "2", "3"] * 2
    assert rows[0]["user"] == "" and rows[0]["preference"].startswith("Preferred category")
    assert float(rows[0]["score"]) == pytest.approx(float(rows[0]["sequence"]) + float(rows[0]["retriever"]), abs=1e-5)
    assert "(" in rows[0]["attended"] and rows[0]["title"].startswith("Movie number")


def test_cli_prints_a_table(trained, capsys):
    _, checkpoint, _ = trained
    recommend_cli.main(["--checkpoint", checkpoint, "--user", "u1", "--k", "3", "--explain"])
    out = capsys.readouterr().out
    assert out.startswith("user u1 (") and "preference: Preferred" in out and "proxy" in out
    assert "retriever" in out.splitlines()[2]


def test_a_sasrec_checkpoint_scores_without_explanations(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "data")
    in_memory, checkpoint = train(root, tmp_path, model="SASRec")
    rec = Recommender.load(checkpoint)
    answer = rec.recommend("u1", k=K, explain=True)
    assert ranked(answer) == ranked(in_memory.recommend("u1", k=K))
    assert answer.preference is None and all(i.explanation is None and i.retriever is None for i in answer.items)
    assert ranked(rec.recommend(history=["i1", "i2"], k=K))  # a new history needs no profile
    recommend_cli.main(["--checkpoint", checkpoint, "--user", "u1", "--explain"])
    assert "SASRec has no retriever" in capsys.readouterr().err


def test_new_histories_are_batched_like_single_calls(trained):
    rec, _, _ = trained
    histories = [["i1", "i6"], ["i2", "i7", "i12", "i17"], ["i40"]]
    many = rec.recommend_many(histories=histories, k=K, batch_size=2)
    for history, answer in zip(histories, many):
        single = rec.recommend(history=history, k=K)
        assert ranked(single) == ranked(answer)
        assert np.allclose([i.score for i in single.items], [i.score for i in answer.items], atol=1e-5)


def test_cli_takes_a_results_file_and_a_title_column(trained, tmp_path, capsys):
    _, checkpoint, _ = trained
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"checkpoint": checkpoint}))
    recommend_cli.main(["--checkpoint", str(results), "--user", "u1", "--k", "2", "--title-field", "year"])
    rows = capsys.readouterr().out.strip().splitlines()[3:]  # user, preference, header
    assert len(rows) == 2 and all(row.split()[2].isdigit() for row in rows)  # years shown as titles
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", str(results), "--user", "u1",
                                                      "--title-field", "plot"]),
                  r"title field 'plot' is not a loaded column of tiny.item")
    results.write_text(json.dumps({"checkpoint": None}))
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", str(results), "--all"]), "names no checkpoint")


def test_a_slots_effect_is_the_retriever_score_lost_without_it(trained, tmp_path):
    """Checked from outside: the same history without that item (or without a profile) scores the item lower by it.

    Proxy scoring: under slots scoring the recency bias of the later items moves when an item leaves the history,
    and the exact effect is checked by ``test_late_interaction_explanations_are_faithful_by_construction``.

    With static queries (``retriever_query: proxies``) the retriever reads the memory alone, so removing an item
    from the history changes its score exactly by that slot's effect; state-conditioned queries would also move
    with the sequence state, which the effect (memory only) leaves as it is.
    """
    rec, _ = train(trained[2], tmp_path, retriever_query="proxies", retriever_scoring="proxies")
    history, text = ["i1", "i6", "i11", "i16", "i21"], "Preferred category: Comedy (60%), Drama (40%)."
    weight = float(rec.model.fusion.weight.detach())  # the retriever part is weight x retriever score
    answer = rec.recommend(history=history, k=3, explain=True, top_slots=None, profile=text)
    checked = 0
    for item in answer.items:
        assert len(item.explanation.slots) == len(history) + 1
        for slot in item.explanation.slots:
            if slot.kind == "history":
                rest = history[: slot.position] + history[slot.position + 1:]
                without = rec.recommend(history=rest, candidates=[item.item], exclude_history=False, profile=text)
            else:
                without = rec.recommend(history=history, candidates=[item.item], exclude_history=False, profile=False)
            assert slot.effect == pytest.approx((item.retriever - without.items[0].retriever) / weight, abs=1e-4)
            checked += 1
    assert checked == 3 * (len(history) + 1)


def test_late_interaction_explanations_are_faithful_by_construction(trained, tmp_path):
    """``retriever_scoring: slots``: a slot's effect is ``-log(1 - its weight)``, so the most attended costs most."""
    rec, _ = train(trained[2], tmp_path, retriever_scoring="slots")
    weight = float(rec.model.fusion.weight.detach())
    for answer in rec.recommend_many(["u1", "u4", "u7"], k=K, explain=True, top_slots=None):
        for item in answer.items:
            slots = item.explanation.slots
            assert sum(s.weight for s in slots) == pytest.approx(1.0, abs=1e-5)
            for slot in slots:
                assert slot.effect == pytest.approx(-math.log1p(-slot.weight), rel=1e-3, abs=1e-4)
            effects = [s.effect for s in slots]
            assert effects == sorted(effects, reverse=True)  # most attended first = largest effect first
            batch = rec.batch([answer.user])
            reasons = rec.scorer.reasons(batch, torch.tensor([[rec.catalogue.item_ids[item.item]]]))
            assert item.retriever == pytest.approx(weight * float(reasons.score[0, 0]), abs=1e-5)


def test_a_checkpoint_from_before_retriever_scoring_loads_as_it_was_trained(trained, tmp_path):
    """Checkpoints written when proxy scoring was the only scoring have no ``retriever_scoring``: they load as proxies."""
    rec, checkpoint = train(trained[2], tmp_path, retriever_scoring="proxies")
    state = torch.load(checkpoint, weights_only=False)
    del state["config"]["retriever_scoring"]
    older = tmp_path / "older.pth"
    torch.save(seal(state), older)
    loaded = Recommender.load(older)
    assert loaded.model.retriever.scoring == "proxies"
    assert ranked(loaded.recommend("u3", k=K)) == ranked(rec.recommend("u3", k=K))
