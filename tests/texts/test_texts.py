"""Template texts: leakage-safe preference profiles, provenance, file handling."""

from __future__ import annotations

import json

import pytest
from conftest import build_data, replace_rows, tiny_overrides, write_tiny_dataset

from ur4rec_recbole.texts.profiles import cutoffs, history_fingerprint, profile_histories
from ur4rec_recbole.texts.records import TextRecord, read_records, write_records
from ur4rec_recbole.texts.template import TEMPLATE_VERSION, TemplateBackend


def user_texts(tmp_path, tag, edit=None):
    """Each user's newest profile (written from the whole training portion)."""
    root = write_tiny_dataset(tmp_path / tag, edit=edit)
    build_data(tiny_overrides(root, tmp_path / tag))
    newest = {}
    for record in read_records(root / "tiny" / "tiny.user_pref.template.jsonl").values():
        if record.token not in newest or record.cutoff > newest[record.token].cutoff:
            newest[record.token] = record
    return newest


def test_preference_ignores_validation_and_test_items(tmp_path):
    """Changing a user's last two interactions must not change that user's text."""
    base = user_texts(tmp_path, "base")
    changed = user_texts(tmp_path, "late", edit=replace_rows(3, (-2, -1), 4))  # item 4 is SciFi, u3 likes Horror
    assert changed["u3"].text == base["u3"].text
    assert changed["u3"].extra["history_len"] == base["u3"].extra["history_len"]
    # the same change earlier in the history does reach the text, so the test can fail
    early = user_texts(tmp_path, "early", edit=replace_rows(3, (0, 1, 2, 3, 4, 5), 4))
    assert early["u3"].text != base["u3"].text


def test_profiles_describe_tastes_not_titles(tmp_path):
    texts = user_texts(tmp_path, "t")
    assert all("Movie number" not in r.text for r in texts.values())
    assert all(r.backend == "template" and r.version == TEMPLATE_VERSION for r in texts.values())
    assert "Preferred category:" in texts["u1"].text and "Preferred year:" in texts["u1"].text


def test_template_is_deterministic_and_buckets_years():
    items = {"a": {"genre": ["Drama"], "year": ["1994"]}, "b": {"genre": ["Comedy", "Drama"], "year": ["1987"]}}
    backend = TemplateBackend(["genre", "year"], ["genre", "year"], {"genre": "genres"})
    first = backend.user_texts({"u": ["a", "b", "a"]}, items)
    assert first == backend.user_texts({"u": ["a", "b", "a"]}, items)
    assert first[0].text == (
        "Preferred genres: Drama (75%), Comedy (25%). Preferred year: 1990s (67%), 1980s (33%). "
        "Lately genres: Drama, Comedy. Lately year: 1990s, 1980s."
    )
    know = backend.item_texts(items)
    assert know[1].text == "genres: Comedy, Drama. year: 1987."
    assert backend.user_texts({"v": []}, items) == []


def test_cutoffs_are_few_spread_and_end_at_the_portion():
    assert cutoffs(7, 4) == [2, 4, 6, 7] and cutoffs(2, 4) == [1, 2] and cutoffs(9, 1) == [9] and cutoffs(0, 4) == []
    ranks = profile_histories({"u": list("abcdefg"), "v": ["x", "y"]}, 4)
    assert [r.get("u") for r in ranks] == [list("ab"), list("abcd"), list("abcdef"), list("abcdefg")]
    assert [r.get("v") for r in ranks] == [["x"], ["x", "y"], None, None]


def test_profile_records_keep_cutoff_and_fingerprint(tmp_path):
    path = tmp_path / "p.jsonl"
    record = TextRecord("u1", "likes pens", "template", "v1", {}, cutoff=3, fingerprint=history_fingerprint(["a", "b", "c"]))
    write_records(path, [record, TextRecord("u1", "likes ink", "template", "v1", {}, cutoff=5, fingerprint="f")])
    assert read_records(path)["u1@3"] == record and set(read_records(path)) == {"u1@3", "u1@5"}
    assert history_fingerprint(["a", "b", "c"]) != history_fingerprint(["a", "b", "d"])
    path.write_text(json.dumps({"token": "u", "text": "a", "backend": "b", "version": "v", "cutoff": 0}) + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl:1: 'cutoff' must be a positive int"):
        read_records(path)


def test_records_round_trip_and_bad_lines(tmp_path):
    path = tmp_path / "t.jsonl"
    write_records(path, [TextRecord("x", "hello", "template", "v1", {"history_len": 3})])
    assert read_records(path)["x"] == TextRecord("x", "hello", "template", "v1", {"history_len": 3})
    assert not list(tmp_path.glob(".*.tmp"))
    path.write_text(json.dumps({"token": "x", "text": "a", "backend": "b", "version": "v"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: not valid JSON"):
        read_records(path)
    path.write_text(json.dumps({"token": "x", "text": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:1: .*missing \['backend', 'version'\]"):
        read_records(path)
    line = json.dumps({"token": "x", "text": "a", "backend": "b", "version": "v"})
    path.write_text(line + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl:2: token 'x' appears twice"):
        read_records(path)
