"""Causal preference memory: nothing the model reads at training position t depends on items after t.

One user's training portion is changed after position ``t``; the profile
texts and vectors the model can reach at positions ``<= t``, the memory, the
proxy states, the retriever scores and the fused logits there must stay
exactly the same, for template texts and for LLM texts (loopback server).
Both datasets keep every item id (the user is the last one in the file and
the new items occur earlier), so equal inputs mean equal tensors.
"""

from __future__ import annotations

import pytest
import torch
from conftest import N_USERS, build_data, raw_sequences, replace_rows, tiny_overrides, write_tiny_dataset
from recbole.utils import init_seed

from ur4rec_recbole.data.dataset import HISTORY_START
from ur4rec_recbole.model import UR4Rec
from ur4rec_recbole.model.retriever import SlotRead
from ur4rec_recbole.texts.profiles import cutoffs
from ur4rec_recbole.texts.records import read_records

USER = N_USERS  # the last user of the file: changing its items leaves every internal id as it was
CHANGE_FROM = 6  # portion positions >= 6 are changed; positions 0..5 are the past (t = 5)
SETTINGS = {"MAX_ITEM_LIST_LENGTH": "4", "train_stride": "2", "profile_cutoffs": "4", "fusion_weight": "1.0",
            "retriever_query": "state"}


def long_history(u, rows):
    """``USER`` watches 16 items: its own, then items 2, 3, ... (which other users watch too)."""
    if u == USER:
        rows = rows + [[2 + k, 3, rows[-1][2] + 10 * (k + 1)] for k in range(16 - len(rows))]
    return rows


def later_items_changed(u, rows):
    """As :func:`long_history`, but ``USER``'s portion items from ``CHANGE_FROM`` on become item 1."""
    rows = long_history(u, rows)
    return replace_rows(USER, range(CHANGE_FROM, len(rows) - 2), 1)(u, rows)


def build(tmp_path, tag: str, source: str, edit=None, scoring: str = "proxies"):
    root = write_tiny_dataset(tmp_path / tag, edit=edit)
    overrides = tiny_overrides(root, tmp_path / tag, **SETTINGS, retriever_scoring=scoring)
    if source != "template":
        from test_generate import options

        from ur4rec_recbole.generate.runner import generate_texts
        from loopback import LoopbackLLM

        with LoopbackLLM() as server:
            generate_texts("tiny", options(server, concurrency=16), overrides)
        overrides["text_source"] = source
    config, dataset, train, _, _ = build_data(overrides)
    init_seed(7, True)
    model = UR4Rec(config, train._dataset).eval()
    return root, dataset, train._dataset.inter_feat, model


def read_at_each_position(model, rows, user_id: int) -> dict[tuple[int, int], dict[str, torch.Tensor]]:
    """What the model reads and computes at each position of ``user_id``'s training windows.

    Keyed by (the position's index in the training portion, the window): windows overlap, and each one's
    reading of the same portion position is checked.
    """
    rows = rows[rows["user_id"] == user_id]
    seq, lengths, start = rows["item_id_list"], rows["item_length"], rows[HISTORY_START]
    index, positions = torch.nonzero(torch.arange(seq.shape[1]) < lengths[:, None], as_tuple=True)  # [P] each
    with torch.no_grad():
        table = model.item_table()
        states = model.sequence_states(seq, table)[index, positions]  # [P, H]
        profile, valid = model.profile_of(rows["user_id"][index], start[index] + positions + 1)
        proxies, views, _ = model._proxies(rows, seq, lengths, index, positions, states)
        retrieved = model.retriever_scores(proxies, views, None, table)  # [P, N]
        fused = model.fusion.rank_scores(states @ table.T, retrieved, states)
    read = proxies.slot_logits if isinstance(proxies, SlotRead) else proxies  # [P, 1 + M] or [P, K, H]
    return {(int(start[r]) + p, r): {"item": seq[r, p], "profile": profile[i] * valid[i], "proxies": read[i],
                                     "retriever": retrieved[i], "fused": fused[i]}
            for i, (r, p) in enumerate(zip(index.tolist(), positions.tolist()))}


@pytest.mark.parametrize("source,scoring", [("template", "proxies"), ("openai", "proxies"), ("template", "slots")])
def test_nothing_read_at_t_depends_on_later_items(tmp_path, monkeypatch, source, scoring):
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ into the working directory
    base_root, base_data, base_rows, base_model = build(tmp_path, "base", source, long_history, scoring)
    new_root, new_data, new_rows, new_model = build(tmp_path, "changed", source, later_items_changed, scoring)
    assert base_data.field2id_token["item_id"].tolist() == new_data.field2id_token["item_id"].tolist()
    token = f"u{USER}"
    assert raw_sequences(base_root)[token][:CHANGE_FROM] == raw_sequences(new_root)[token][:CHANGE_FROM]
    assert raw_sequences(base_root)[token][CHANGE_FROM:-2] != raw_sequences(new_root)[token][CHANGE_FROM:-2]

    # the texts: the same for every cut-off inside the unchanged past, others differ
    name = f"tiny.user_pref.{source}.jsonl"
    base_texts, new_texts = (read_records(root / "tiny" / name) for root in (base_root, new_root))
    length = len(raw_sequences(base_root)[token]) - 2
    cuts = cutoffs(length, 4)
    assert any(c <= CHANGE_FROM for c in cuts) and any(c > CHANGE_FROM for c in cuts)
    for cut in cuts:
        same = base_texts[f"{token}@{cut}"].fingerprint == new_texts[f"{token}@{cut}"].fingerprint
        assert same == (cut <= CHANGE_FROM)
        if cut <= CHANGE_FROM:
            assert base_texts[f"{token}@{cut}"].text == new_texts[f"{token}@{cut}"].text

    # the model: everything at positions t < CHANGE_FROM (it has read items 0..t) is unchanged
    uid = int(base_data.token2id("user_id", token))
    before = read_at_each_position(base_model, base_rows, uid)
    after = read_at_each_position(new_model, new_rows, uid)
    assert set(before) == set(after)
    past = [key for key in before if key[0] < CHANGE_FROM]
    for key in past:
        for what, value in before[key].items():
            torch.testing.assert_close(after[key][what], value, rtol=0, atol=0, msg=f"{what} at {key}")
    late = [key for key in before if key[0] >= CHANGE_FROM]
    assert late and any(not torch.equal(before[key]["fused"], after[key]["fused"]) for key in late)
    # a profile whose cut-off is within the past is read at some position (the slot is not simply masked)
    assert any(before[key]["profile"].abs().sum() > 0 for key in past)
