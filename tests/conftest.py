"""Tiny synthetic RecBole datasets written into a temporary folder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests run from a clone)
CATEGORIES = ["Action", "Comedy", "Drama", "Horror", "SciFi"]
N_USERS, N_ITEMS = 24, 40


def write_tiny_dataset(root: Path, name: str = "tiny", seed: int = 0, n_users: int = N_USERS,
                       edit=None, items_without_row: tuple[int, ...] = ()) -> Path:
    """Write ``<root>/<name>/<name>.{inter,item,user}``; return ``root``.

    Each user mostly watches items of one favourite category, in time order,
    so a sequence model has something to learn. ``edit(user, rows)`` may
    change a user's rows (list of [item, rating, timestamp]) before writing.
    """
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    item_category = {i: CATEGORIES[i % len(CATEGORIES)] for i in range(1, N_ITEMS + 1)}
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, n_users + 1):
        favourite = CATEGORIES[u % len(CATEGORIES)]
        liked = [i for i, c in item_category.items() if c == favourite]
        length = rng.randint(8, 18)
        rows = []
        for step in range(length):
            item = rng.choice(liked) if rng.random() < 0.7 else rng.randint(1, N_ITEMS)
            rows.append([item, rng.randint(1, 5), 1000 * u + 10 * step])
        if edit is not None:
            rows = edit(u, rows)
        lines += [f"u{u}\ti{item}\t{rating}\t{ts}" for item, rating, ts in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    item_lines = ["item_id:token\ttitle:token_seq\tcategory:token_seq\tyear:token"]
    for i, category in item_category.items():
        if i in items_without_row:
            continue
        item_lines.append(f"i{i}\tMovie number {i}\t{category} Extra{i % 2}\t{1970 + (i * 7) % 50}")
    (folder / f"{name}.item").write_text("\n".join(item_lines) + "\n")
    user_lines = ["user_id:token\tage:token"] + [f"u{u}\t{20 + u}" for u in range(1, n_users + 1)]
    (folder / f"{name}.user").write_text("\n".join(user_lines) + "\n")
    return root


def raw_sequences(root: Path, name: str = "tiny") -> dict[str, list[str]]:
    """Each raw user's raw items in time order, read straight from the ``.inter`` file."""
    rows = [line.split("\t") for line in (root / name / f"{name}.inter").read_text().splitlines()[1:]]
    rows.sort(key=lambda r: (r[0], float(r[3])))
    seqs: dict[str, list[str]] = {}
    for user, item, _, _ in rows:
        seqs.setdefault(user, []).append(item)
    return seqs


def replace_rows(user: int, positions, item: int):
    """An ``edit`` for :func:`write_tiny_dataset`: ``user``'s rows at ``positions`` watch ``item`` instead."""
    def edit(u, rows):
        if u == user:
            for p in positions:
                rows[p][0] = item
        return rows
    return edit


def tiny_overrides(root: Path, tmp: Path, name: str = "tiny", **extra) -> dict:
    """Config for a fast run on the tiny dataset (strings, as on a command line)."""
    settings = {
        "data_path": str(root),
        "load_col": "{'inter': ['user_id', 'item_id', 'rating', 'timestamp'], 'item': ['item_id', 'title', 'category', 'year']}",
        "item_text_fields": "['title', 'category', 'year']",
        "user_profile_fields": "['category', 'year']",
        "hidden_size": "16",
        "inner_size": "32",
        "n_layers": "1",
        "MAX_ITEM_LIST_LENGTH": "6",
        "train_batch_size": "16",
        "eval_batch_size": "64",
        "epochs": "1",
        "show_progress": "False",
        "use_gpu": "False",
        "state": "WARNING",
        "checkpoint_dir": str(tmp / "saved"),
    }
    settings.update({k: str(v) for k, v in extra.items()})
    return settings


BACKBONE_SETTINGS = ("hidden_size", "inner_size", "n_layers")  # in tiny_overrides: SASRec's and UR4Rec's only


def without_backbone_settings(overrides: dict) -> dict:
    """``overrides`` for a model without a transformer (Pop, the baselines): unknown settings are refused."""
    return {k: v for k, v in overrides.items() if k not in BACKBONE_SETTINGS}


def fails_clearly(capsys, call, match: str, code: int = 2) -> str:
    """Run a command's ``call()``: it must exit with ``code`` and one stderr line matching ``match``."""
    import re

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        call()
    err = capsys.readouterr().err.strip()
    assert stop.value.code == code, (stop.value.code, err)
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    return err


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict]:
    """(data root, config overrides) for a fresh tiny dataset."""
    root = write_tiny_dataset(tmp_path / "data")
    return root, tiny_overrides(root, tmp_path)


def build_data(overrides: dict, model: str = "UR4Rec", name: str = "tiny"):
    """Config, dataset and RecBole's three dataloaders for ``model``."""
    from recbole.data import data_preparation

    from ur4rec_recbole.run.prepare import prepare_run

    prepared = prepare_run(model, name, cmd_overrides=overrides)
    config, dataset = prepared.config, prepared.dataset
    train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test
