"""Converters: every raw layout to atomic files RecBole reads back intact, errors, atomicity, one epoch each."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import tiny_overrides
from convert_fixtures import (
    N_ITEMS,
    N_USERS,
    NO_METADATA,
    PER_USER,
    sequences,
    write_amazon,
    write_csv,
    write_lcrec,
    write_ml1m,
    write_ml100k,
    write_ml_csv,
)

import run_ur4rec
from ur4rec_recbole.cli import convert
from ur4rec_recbole.config import PROPERTIES_DIR, Config
from ur4rec_recbole.convert.sources import RawFile, json_object_items
from ur4rec_recbole.errors import InputError

SETTINGS_FROM_YAML = ("load_col", "item_text_fields", "user_profile_fields")
CSV_FLAGS = ["--user", "customer", "--item", "product", "--time", "when", "--rating", "stars", "--text-cols",
             "Product Name,Kind,Blurb", "--profile-cols", "Kind"]


def read_atomic(path: Path) -> pd.DataFrame:
    """An atomic file as RecBole 1.2.1 reads it (``Dataset._load_feat``: python engine, tab, default quoting)."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline()[:-1].split("\t")
    table = pd.read_csv(path, delimiter="\t", dtype=str, engine="python", keep_default_na=False)
    table.columns = [h.split(":")[0] for h in header]
    return table


def layouts(raw: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (format, arguments) of every fixture layout, written under ``raw``."""
    clicks, items = write_csv(raw / "csv")
    found = {
        "ml100k": ("movielens", [str(write_ml100k(raw / "ml100k"))]),
        "ml-1m": ("movielens", [str(write_ml1m(raw / "ml1m", as_zip=True))]),
        "mlcsv": ("movielens", [str(write_ml_csv(raw / "mlcsv"))]),
        "lcrec": ("lcrec", [str(write_lcrec(raw / "lcrec"))]),
        "shop": ("csv", [str(clicks), "--item-file", str(items), *CSV_FLAGS]),
    }
    for version in (2014, 2018, 2023):
        name = "amazon-beauty" if version == 2014 else f"amazon{version}"
        found[name] = ("amazon", [str(p) for p in write_amazon(raw / f"amazon{version}", version)])
    return found


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict]:
    """Every layout converted once: (data root, name -> report)."""
    root = tmp_path_factory.mktemp("convert")
    out = root / "data"
    reports = {name: convert.main([fmt, *args, "--name", name, "--out", str(out)])
               for name, (fmt, args) in layouts(root / "raw").items()}
    return out, reports


def items_of(out: Path, name: str) -> pd.DataFrame:
    return read_atomic(out / name / f"{name}.item").set_index("item_id")


@pytest.mark.parametrize("name", ["ml100k", "ml-1m", "mlcsv"])
def test_movielens_layouts(converted, name):
    out, reports = converted
    report = reports[name]
    assert report.read.as_json() == report.kept.as_json() == {"interactions": N_USERS * PER_USER, "users": N_USERS,
                                                               "items": N_ITEMS}
    items = items_of(out, name)
    assert items.at["2", "title"] == "Les Misérables (1995)"  # latin-1 bytes in 100K/1M, UTF-8 in the CSVs
    assert items.at["2", "year"] == "1995" and items.at["1", "genres"] == "Action Comedy"
    assert items.loc[str(NO_METADATA + 1)].eq("").all()  # rated, no movie row: an empty row keeps its ratings
    inter = read_atomic(out / name / f"{name}.inter")
    assert list(inter.columns) == ["user_id", "item_id", "rating", "timestamp"] and len(inter) == 84
    settings = yaml.safe_load((out / name / f"{name}.yaml").read_text())
    assert settings["item_text_fields"] == ["title", "year", "genres"]
    assert settings["user_profile_fields"] == ["genres", "year"]
    if name == "mlcsv":
        assert items.at["4", "title"] == "American President, The (1995)"  # a quoted CSV field
        assert items.at["3", "genres"] == ""  # (no genres listed)
        assert items.at["1", "tags"] == "funny, musical, sad" and "tags" not in settings["item_text_fields"]
        assert inter["rating"].iloc[0] == "0.5" and "user" not in settings["load_col"]
    else:
        users = read_atomic(out / name / f"{name}.user").set_index("user_id")
        assert len(users) == N_USERS and users.at["2", "gender"] == "F"
        assert users.at["2", "occupation"] == ("academic/educator" if name == "ml-1m" else "writer")


@pytest.mark.parametrize("name", ["amazon-beauty", "amazon2018", "amazon2023"])
def test_amazon_versions_k_core_and_text(converted, name):
    out, reports = converted
    report = reports[name]
    assert report.read.as_json() == {"interactions": 92, "users": 14, "items": 11}
    # round 1 drops SPARSE (2 reviews) and RARE (2 users); round 2 drops EDGE, down to 4 reviews
    assert report.kept.as_json() == {"interactions": 84, "users": 12, "items": 10} and report.rounds == 2
    inter = read_atomic(out / name / f"{name}.inter")
    assert not {"SPARSE", "EDGE"} & set(inter["user_id"]) and "RARE" not in set(inter["item_id"])
    items = items_of(out, name)
    assert items.at["B000", "description"].startswith("Great & bold product with lines")  # HTML unescaped, stripped
    assert items.at["B002", "description"].startswith("'Best' glue in town")  # no leading double quote
    assert items.at["B001", "title"] == "Crème brûlée torch" and items.at["B001", "brand"] == "Brand1"
    assert items.at["B001", "category"] == "Kind1"
    assert items.at["B000", "image_url"] == "http://127.0.0.1:1/images/B000.jpg"
    assert items.loc["B009"].eq("").all()
    settings = yaml.safe_load((out / name / f"{name}.yaml").read_text())
    assert settings["item_image_field"] == "image_url" and "image_url" not in settings["load_col"]["item"]
    assert settings["user_profile_fields"] == ["category", "brand"]
    if name == "amazon-beauty":  # 2014: every category path, flattened
        assert items.at["B000", "categories"] == "Beauty, Tools, Kind0, Gift Sets"
        assert items.at["B000", "features"] == ""
        assert inter["timestamp"].iloc[0] == "1000000"
    else:
        assert items.at["B000", "categories"] == "Beauty, Tools, Kind0" and items.at["B000", "features"] != ""
    if name == "amazon2023":
        assert inter["timestamp"].iloc[0] == "1000000000"  # milliseconds, as the source


def test_lcrec_positions_and_ids(converted):
    out, reports = converted
    inter = read_atomic(out / "lcrec" / "lcrec.inter")
    got = {u: list(g["item_id"]) for u, g in inter.groupby("user_id", sort=False)}
    assert got == {str(u): [str(i) for i in items] for u, items in sequences().items()}
    assert list(inter[inter["user_id"] == "0"]["timestamp"]) == [str(k) for k in range(PER_USER)]
    items = items_of(out, "lcrec")
    assert items.at["0", "description"] == "Great & bold product with lines" and items.at["1", "category"] == "Kind1"
    assert reports["lcrec"].missing_rows["item"] == 1


def test_csv_dates_names_and_quoted_text(converted):
    out, reports = converted
    inter = read_atomic(out / "shop" / "shop.inter")
    assert inter["timestamp"].iloc[0] == "1609495200"  # 2021-01-01T10:00:00 UTC
    items = items_of(out, "shop")
    assert list(items.columns) == ["product_name", "kind", "blurb"]
    assert items.at["p0", "blurb"] == "Great & bold product with lines"  # a quoted field spanning two lines
    settings = yaml.safe_load((out / "shop" / "shop.yaml").read_text())
    assert settings["item_text_fields"] == ["product_name", "kind", "blurb"]
    assert settings["user_profile_fields"] == ["kind"]


def test_every_cell_reads_back_as_written(converted):
    """RecBole's reader sees exactly the tab-separated cells: no quoting, no tab or newline inside a field."""
    out, reports = converted
    for name in reports:
        for path in (out / name).glob(f"{name}.*"):
            if path.suffix == ".yaml":
                continue
            lines = path.read_text(encoding="utf-8").split("\n")
            assert lines[-1] == "" and all(line for line in lines[:-1])
            cells = [line.split("\t") for line in lines[1:-1]]
            table = read_atomic(path)
            assert table.values.tolist() == cells, path


def test_package_yamls_are_what_the_converter_writes(converted):
    out, _ = converted
    for name in ("ml-1m", "amazon-beauty"):
        written = yaml.safe_load((out / name / f"{name}.yaml").read_text())
        shipped = yaml.safe_load((PROPERTIES_DIR / "dataset" / f"{name}.yaml").read_text())
        assert shipped == written, name


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


@pytest.mark.parametrize("name", ["ml-1m", "amazon-beauty", "lcrec", "shop"])
def test_one_epoch_on_converted_data(converted, tmp_path, name):
    """The yaml written next to the atomic files is read with no flag (ml-1m, amazon-beauty: the package's too)."""
    out, _ = converted
    overrides = {k: v for k, v in tiny_overrides(out, tmp_path).items() if k not in SETTINGS_FROM_YAML}
    results = run_ur4rec.main(["--dataset", name, *cli(overrides)])
    assert results["epochs_run"] == 1 and set(results["test_result"]) == {"recall@10", "mrr@10", "ndcg@10", "hit@10"}
    texts = [json.loads(line) for line in (out / name / f"{name}.item_know.template.jsonl").read_text().splitlines()]
    assert len(texts) == N_ITEMS - 1  # the item without metadata has no knowledge text


def test_converted_ml100k_reads_its_own_yaml_not_the_bundled_one(tmp_path):
    raw = write_ml100k(tmp_path / "raw")
    convert.main(["movielens", str(raw), "--name", "ml-100k", "--out", str(tmp_path / "data")])
    config = Config("UR4Rec", "ml-100k", cmd_overrides={"data_path": str(tmp_path / "data")})
    written = yaml.safe_load((tmp_path / "data" / "ml-100k" / "ml-100k.yaml").read_text())
    assert config["item_text_fields"] == written["item_text_fields"] == ["title", "year", "genres"]
    assert config["load_col"] == written["load_col"]  # not the package's movie_title, release_year, class


def test_bad_line_stops_with_file_and_line(tmp_path, capsys):
    raw = write_ml100k(tmp_path / "raw", bad_line=True)
    with pytest.raises(SystemExit) as stopped:
        convert.main(["movielens", str(raw), "--name", "m", "--out", str(tmp_path / "data")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {raw / 'u.data'}:3: expected 4 '\\t'-separated fields") and "\n" not in err
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []  # no folder, no temp file, no spool

    report = convert.main(["movielens", str(raw), "--name", "m", "--out", str(tmp_path / "data"), "--skip-bad-lines"])
    assert report.bad_lines == 1 and report.read.interactions == N_USERS * PER_USER
    assert f"skipped {raw / 'u.data'}:3:" in capsys.readouterr().err


def test_failed_conversion_leaves_the_earlier_one_intact(tmp_path, capsys):
    out = tmp_path / "data"
    good = write_amazon(tmp_path / "good", 2014)
    convert.main(["amazon", *map(str, good), "--name", "beauty", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in (out / "beauty").iterdir()}
    bad = write_amazon(tmp_path / "bad", 2014, bad_meta=True)  # fails while the .item file is being written
    with pytest.raises(SystemExit) as stopped:
        convert.main(["amazon", *map(str, bad), "--name", "beauty", "--out", str(out)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{bad[1]}:5: neither JSON" in err
    assert {p.name: p.read_bytes() for p in (out / "beauty").iterdir()} == before  # nothing new, no temp file
    assert sorted(p.name for p in out.iterdir()) == ["beauty"]  # the spool is gone too


def test_bad_review_json_and_missing_inputs(tmp_path, capsys):
    reviews, meta = write_amazon(tmp_path / "raw", 2018, bad_review=True)
    for argv, message in (
        (["amazon", str(reviews), str(meta)], f"{reviews}:4: neither JSON (Expecting value at column 30)"),
        (["amazon", str(tmp_path / "nope.json")], "nope.json: no such file"),
        (["movielens", str(tmp_path / "ml-1m.zip")], "ml-1m.zip: no such file or folder"),
        (["movielens", str(tmp_path / "raw")], "no u.data, ratings.dat or ratings.csv"),
        (["amazon", str(reviews), str(meta), "--skip-bad-lines", "--min-user", "50"], "no interaction is left"),
    ):
        with pytest.raises(SystemExit) as stopped:
            convert.main([*argv, "--name", "x", "--out", str(tmp_path / "data")])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_json_object_reader_streams_across_chunks(tmp_path):
    data = {"a": [1, 22, 333], "bb": {"title": "x\ny", "n": 12345}, "c": 7, "d": []}
    path = tmp_path / "x.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data, indent=2).encode()))
    for chunk in (1, 3, 7, 1 << 20):  # numbers split between chunks must not be cut short
        assert {k: v for k, v, _ in json_object_items(RawFile(path), chunk_chars=chunk)} == data
    lines = [line for _, _, line in json_object_items(RawFile(path), chunk_chars=5)]
    assert lines == [2, 7, 11, 12]
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "a": [1, 2],\n  "b": [3,, 4]\n}')
    with pytest.raises(InputError, match=r"broken.json:3: not valid JSON"):
        list(json_object_items(RawFile(broken), chunk_chars=4))
