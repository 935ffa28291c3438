"""UR4RecDataset: split-derived histories, training windows, vector alignment, bad inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import build_data, raw_sequences, write_tiny_dataset

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.table import save_vector_table


def test_training_portion_is_history_minus_valid_and_test(tiny):
    root, overrides = tiny
    _, dataset, train, valid, test = build_data(overrides)
    users = dataset.field2id_token["user_id"]
    items = dataset.field2id_token["item_id"]
    raw = raw_sequences(root)
    for uid, portion in dataset.training_histories.items():
        assert [items[i] for i in portion] == raw[users[uid]][:-2]
    # the held-out targets are exactly RecBole's validation and test items
    valid_targets = {users[u]: items[i] for u, i in zip(valid._dataset.inter_feat["user_id"].numpy(),
                                                         valid._dataset.inter_feat["item_id"].numpy())}
    assert all(valid_targets[u] == seq[-2] for u, seq in raw.items())


@pytest.mark.parametrize("stride", [None, 1, 3, 10])
def test_windows_cover_every_training_target_once(tiny, stride):
    root, overrides = tiny
    _, dataset, train, _, _ = build_data({**overrides, "train_stride": stride})
    rows = train._dataset.inter_feat
    length = dataset.max_item_list_len
    stride = min(stride or length, length)
    seen: Counter = Counter()
    for uid, hist, n, target, start in zip(rows["user_id"].numpy(), rows["item_id_list"].numpy(),
                                           rows["item_length"].numpy(), rows["item_id"].numpy(),
                                           rows["train_from"].numpy()):
        assert 1 <= n <= length and (hist[n:] == 0).all() and n - start <= stride
        window = list(hist[:n]) + [target]
        for position in range(start + 1, len(window)):
            seen[(uid, window[position])] += 1
    expected: Counter = Counter()
    for uid, portion in dataset.training_histories.items():
        for item in portion[1:]:
            expected[(uid, item)] += 1
    assert seen == expected


def test_bad_stride_is_rejected(tiny):
    _, overrides = tiny
    with pytest.raises(ValueError, match=r"setting train_stride=0: expected a positive int or None"):
        build_data({**overrides, "train_stride": 0})


def test_prefix_rows_kept_when_all_positions_off(tiny):
    _, overrides = tiny
    _, _, train_windows, _, _ = build_data(overrides)
    _, _, train_prefix, _, _ = build_data({**overrides, "train_all_positions": "False"})
    # RecBole's augmentation: one row per training target
    assert len(train_prefix._dataset) > len(train_windows._dataset)
    assert "timestamp_list" in train_prefix._dataset.inter_feat.columns


def shuffled_table(path: Path, tokens: list[str], dim: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tokens))
    vectors = rng.normal(size=(len(tokens), dim)).astype(np.float32)
    save_vector_table(path, [tokens[i] for i in order], vectors, {})
    return {tokens[i]: vectors[row] for row, i in enumerate(order)}


def test_explicit_vector_files_align_by_token(tiny, tmp_path, caplog):
    root, overrides = tiny
    item_tokens = [f"i{i}" for i in range(1, 41)]
    user_tokens = [f"u{u}" for u in range(1, 25)]
    items = shuffled_table(tmp_path / "items.npz", item_tokens, 8, 1)
    users = shuffled_table(tmp_path / "users.npz", user_tokens[:-3], 8, 2)  # 3 users without text
    with caplog.at_level("WARNING"):
        _, dataset, *_ = build_data({**overrides, "item_vector_file": str(tmp_path / "items.npz"),
                                     "user_vector_file": str(tmp_path / "users.npz")})
    f = dataset.features
    for token, vector in items.items():
        np.testing.assert_array_equal(f.item_text[dataset.token2id("item_id", token)].numpy(), vector)
    # a user file without cut-offs: one vector per user, visible at every position (cut-off 0), with a warning
    for token, vector in users.items():
        uid = dataset.token2id("user_id", token)
        np.testing.assert_array_equal(f.profile_text[f.profile_rows[uid, 0]].numpy(), vector)
        assert f.profile_cutoffs[uid].tolist() == [0]
    missing = [dataset.token2id("user_id", t) for t in user_tokens[-3:]]
    assert not f.user_text_mask[missing].any() and (f.profile_rows[missing] == 0).all()
    assert int(f.user_text_mask.sum()) == 21 and not f.item_text_mask[0]
    assert any("users.npz has no cutoffs and fingerprints" in r.getMessage() for r in caplog.records)


def tmp_path_of(root: Path) -> Path:
    return root.parent


def test_texts_written_under_another_split_are_refused(tiny):
    """Profiles keep the fingerprint of their history; a run under another split refuses them in one line."""
    root, overrides = tiny
    build_data(overrides)  # writes the template texts of this split
    for kind in ("user_pref", "item_know"):  # the same files as texts from elsewhere (source "mine")
        (root / "tiny" / f"tiny.{kind}.mine.jsonl").write_text((root / "tiny" / f"tiny.{kind}.template.jsonl").read_text())
    mine = {**overrides, "text_source": "mine"}
    _, dataset, *_ = build_data(mine)  # same split: accepted, every profile present
    assert int(dataset.features.user_text_mask.sum()) == 24
    with pytest.raises(InputError, match=r"tiny\.user_pref\.mine\.jsonl: the preference profiles of \d+ of 24 users "
                                         r"were written from other histories .*regenerate them: python -m "
                                         r"ur4rec_recbole generate --dataset tiny"):
        build_data({**mine, "cold_items": "0.25"})  # other training portions
    with pytest.raises(InputError, match=r"profiles of 24 of 24 users were written from other histories"):
        build_data({**mine, "profile_cutoffs": "2"})  # other cut-offs
    vectors = tmp_path_of(root) / "profiles.npz"  # the encoded profiles, given as a vector file
    vectors.write_bytes((root / "tiny" / "tiny.user_pref.mine.npz").read_bytes())
    with pytest.raises(InputError, match=r"profiles\.npz: the preference profiles .* write the vectors again"):
        build_data({**overrides, "user_vector_file": str(vectors), "cold_items": "0.25"})


def test_item_without_item_row_gets_fallback(tmp_path, caplog):
    from conftest import tiny_overrides

    seen = sorted({i for seq in raw_sequences(write_tiny_dataset(tmp_path / "probe")).values() for i in seq})
    dropped = (int(seen[0][1:]), int(seen[1][1:]))
    root = write_tiny_dataset(tmp_path / "data", items_without_row=dropped)
    with caplog.at_level("WARNING"):
        # keep interactions of items missing from .item (RecBole drops them by default)
        _, dataset, *_ = build_data(tiny_overrides(root, tmp_path, filter_inter_by_user_or_item=False))
    mask = dataset.features.item_text_mask
    assert not mask[[dataset.token2id("item_id", f"i{i}") for i in dropped]].any()
    assert int(mask.sum()) == dataset.item_num - 3  # padding and the two dropped items
    warnings = [r.getMessage() for r in caplog.records if "have no vector" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"2 of {dataset.item_num - 1} items")


def write_bad(path: Path, tokens, vectors) -> None:
    np.savez(path, tokens=np.asarray(tokens, dtype=str), vectors=np.asarray(vectors))


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("misaligned", "misaligned table, 40 tokens but 39 vector rows"),
        ("nan", "row 5 (token 'i6') holds NaN or inf"),
        ("unknown", "row 0 has item token 'i999', which is not a item of the atomic files"),
        ("dimension", "user vectors have dimension 5, expected 8"),
        ("duplicate", "token 'i1' has more than one row"),
        ("not_2d", "'vectors' must be a 2-D float matrix"),
    ],
)
def test_bad_vector_files_name_file_and_row(tiny, tmp_path, case, message):
    _, overrides = tiny
    items, users = tmp_path / "items.npz", tmp_path / "users.npz"
    tokens = [f"i{i}" for i in range(1, 41)]
    vectors = np.ones((40, 8), dtype=np.float32)
    user_dim = 8
    if case == "misaligned":
        vectors = vectors[:39]
    elif case == "nan":
        vectors[5, 2] = np.nan
    elif case == "unknown":
        tokens[0] = "i999"
    elif case == "dimension":
        user_dim = 5
    elif case == "duplicate":
        tokens[1] = "i1"
    elif case == "not_2d":
        vectors = vectors[:, 0]
    if case != "missing":
        write_bad(items, tokens, vectors)
    write_bad(users, [f"u{u}" for u in range(1, 25)], np.ones((24, user_dim), dtype=np.float32))
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        build_data({**overrides, "item_vector_file": str(items), "user_vector_file": str(users)})
    assert message in str(err.value)
    assert str(items if case != "dimension" else users) in str(err.value)


def test_unknown_text_field_is_a_clear_error(tiny):
    _, overrides = tiny
    with pytest.raises(ValueError, match=r"item_text_fields names 'plot'.*tiny\.item"):
        build_data({**overrides, "item_text_fields": "['title', 'plot']"})


def test_template_needs_its_fields(tiny):
    _, overrides = tiny
    with pytest.raises(ValueError, match=r"needs user_profile_fields .* for dataset 'tiny', got None"):
        build_data({**overrides, "user_profile_fields": "None"})


def test_missing_text_source_says_how_to_get_it(tiny):
    _, overrides = tiny
    with pytest.raises(FileNotFoundError, match=r"tiny\.user_pref\.openai\.jsonl"):
        build_data({**overrides, "text_source": "openai"})
