"""A user's own atomic files: no yaml at all, the yaml next to them (every command), clear errors, own splits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import build_data, fails_clearly, tiny_overrides, without_backbone_settings, write_tiny_dataset

import run_ur4rec
from ur4rec_recbole.config import Config
from ur4rec_recbole.run.prepare import prepare_run
from loopback import LoopbackLLM
from ur4rec_recbole.texts.records import read_records

DATASET_KEYS = ("load_col", "item_text_fields", "user_profile_fields")  # what tiny_overrides sets for the data


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """RecBole writes log/ into the working directory: keep it inside tmp_path."""
    monkeypatch.chdir(tmp_path)


def bare(overrides: dict) -> dict:
    """Run settings without any dataset setting (as a user with atomic files and nothing else)."""
    return {k: v for k, v in overrides.items() if k not in DATASET_KEYS}


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


# -- no yaml at all -----------------------------------------------------------------------------------------------
def test_zero_config_settings_come_from_the_headers(tiny):
    root, overrides = tiny
    config = Config("UR4Rec", "tiny", cmd_overrides=bare(overrides))
    assert config["load_col"] is None  # every column, the timestamp included
    assert config["item_text_fields"] == ["title", "category", "year"]  # token/token_seq columns but the id
    assert config["user_profile_fields"] == ["category"]  # shared values; titles and years (nearly unique) not
    notes = "\n".join(config.dataset_notes)
    folder_yaml = root / "tiny" / "tiny.yaml"
    assert f"set `item_text_fields: [...]` in {folder_yaml}" in notes and '--user_profile_fields="[...]"' in notes
    # RecBole's models get every column, and no text settings
    sasrec = Config("SASRec", "tiny", cmd_overrides=bare(overrides))
    assert sasrec["load_col"] is None and sasrec["item_text_fields"] is None
    # what is set is kept; only the rest is chosen
    given = Config("UR4Rec", "tiny", cmd_overrides={**bare(overrides), "item_text_fields": "['title']"})
    assert given["item_text_fields"] == ["title"] and given["user_profile_fields"] == ["category"]
    assert Config("UR4Rec", "tiny", cmd_overrides=overrides)["load_col"]["item"] == ["item_id", "title", "category",
                                                                                      "year"]


def test_zero_config_profile_fields_are_the_shared_columns(tmp_path):
    """Image URLs are no text; when no column is shared enough, the most shared one is the profile."""
    root = write_tiny_dataset(tmp_path / "data")
    item = root / "tiny" / "tiny.item"
    rows = item.read_text().splitlines()
    item.write_text("\n".join(["item_id:token\tname:token\tpicture:token"] +
                              [f"{r.split(chr(9))[0]}\tname {n % 20}\thttps://img.example/{n}.jpg"
                               for n, r in enumerate(rows[1:])]) + "\n")
    config = Config("UR4Rec", "tiny", cmd_overrides={"data_path": str(root)})
    assert config["item_text_fields"] == ["name"] and config["user_profile_fields"] == ["name"]


def test_zero_config_runs_and_logs_its_choices(tiny, caplog):
    _, overrides = tiny
    with caplog.at_level(logging.INFO):
        prepare_run("UR4Rec", "tiny", cmd_overrides={**bare(overrides), "state": "INFO"}, build_dataset=False)
    assert "user_profile_fields is not set: using ['category'] from tiny.item" in caplog.text
    for model in ("UR4Rec", "SASRec"):  # RecBole's default load_col would drop the timestamp
        results = run_ur4rec.main(["--dataset", "tiny", "--model", model, *cli(bare(overrides))])
        assert results["epochs_run"] == 1 and results["config"]["load_col"] is None


# -- the yaml next to the atomic files --------------------------------------------------------------------------
FOLDER_YAML = """\
TIME_FIELD: when
item_text_fields: [title]
user_profile_fields: [category]
text_field_labels: {title: name}
"""


@pytest.fixture
def own(tmp_path):
    """Tiny data whose time column is called ``when``: it runs only if ``DIR/tiny/tiny.yaml`` is read."""
    root = write_tiny_dataset(tmp_path / "data")
    inter = root / "tiny" / "tiny.inter"
    inter.write_text(inter.read_text().replace("timestamp:float", "when:float", 1))
    (root / "tiny" / "tiny.yaml").write_text(FOLDER_YAML)
    return root, bare(tiny_overrides(root, tmp_path))


def picked_up(config) -> bool:
    return config["TIME_FIELD"] == "when" and config["item_text_fields"] == ["title"]


def test_folder_yaml_ranks_above_the_package_yaml_and_below_files_and_flags(tmp_path):
    folder = tmp_path / "data" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "ml-100k.yaml").write_text("item_text_fields: [movie_title]\nn_proxies: 3\n")
    data = {"data_path": str(tmp_path / "data")}
    config = Config("UR4Rec", "ml-100k", cmd_overrides=data)
    assert config["item_text_fields"] == ["movie_title"]  # the package's ml-100k.yaml says three fields
    assert config["user_profile_fields"] == ["class", "release_year"] and config["n_proxies"] == 3
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"data_path: {tmp_path / 'data'}\nitem_text_fields: [class]\n")
    config = Config("UR4Rec", "ml-100k", config_file_list=[str(mine)])  # data_path from a file finds it too
    assert config["item_text_fields"] == ["class"] and config["n_proxies"] == 3
    config = Config("UR4Rec", "ml-100k", config_file_list=[str(mine)], cmd_overrides={"n_proxies": "2"})
    assert config["item_text_fields"] == ["class"] and config["n_proxies"] == 2
    # a dataset's yaml serves every model: UR4Rec's settings in it do not stop SASRec
    assert Config("SASRec", "ml-100k", cmd_overrides=data)["n_proxies"] == 3


def test_run_compare_and_hyperopt_read_the_folder_yaml(own, tmp_path):
    root, overrides = own
    results = run_ur4rec.main(["--dataset", "tiny", *cli(overrides)])
    assert picked_up(results["config"]) and results["epochs_run"] == 1
    texts = read_records(root / "tiny" / "tiny.item_know.template.jsonl")
    assert texts["i1"].text == "name: Movie number 1."
    bench = run_ur4rec.main(["--dataset", "tiny", "--compare", "UR4Rec,SASRec", "--seeds", "1",
                             "--output", str(tmp_path / "bench"), *cli(overrides)])
    assert [m["n_ok"] for m in bench["models"]] == [1, 1]
    assert all(picked_up(m["runs"][0]["config"]) for m in bench["models"])
    space = tmp_path / "pop.hyper"
    space.write_text("learning_rate choice [0.001, 0.01]\n")
    summary = run_ur4rec.main(["--dataset", "tiny", "--model", "Pop", "--hyper", str(space), "--algo", "exhaustive",
                               "--max-evals", "2", "--output", str(tmp_path / "hyper"),
                               *cli(without_backbone_settings(overrides))])
    assert [t["status"] for t in summary["trials"]] == ["ok", "ok"]


def test_ray_workers_read_the_folder_yaml(own, tmp_path):
    root, overrides = own
    space = tmp_path / "pop.hyper"
    space.write_text("learning_rate choice [0.001]\n")
    pop = without_backbone_settings(overrides)
    summary = run_ur4rec.main(["--dataset", "tiny", "--model", "Pop", "--hyper", str(space), "--tool", "ray",
                               "--algo", "exhaustive", "--cpus", "1", "--output", str(tmp_path / "ray"), *cli(pop)])
    assert [t["status"] for t in summary["trials"]] == ["ok"]


def test_generate_reads_the_folder_yaml_and_config_files_over_it(own, tmp_path, monkeypatch):
    from ur4rec_recbole.cli import generate

    root, overrides = own
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    argv = ["--dataset", "tiny", "--backend", "openai", "--llm-model", "m", "--no-progress", *cli(overrides)]
    with LoopbackLLM() as server:
        generate.main([*argv, "--base-url", server.base_url])
    prompts = [r.messages[-1]["content"] for r in server.requests]
    assert any("Item: name: Movie number 1\n" in p for p in prompts)  # the folder yaml's fields and labels
    assert not any("category:" in p for p in prompts)
    mine = tmp_path / "mine.yaml"
    mine.write_text("item_text_fields: [title, category]\n")
    with LoopbackLLM() as server:
        generate.main([*argv, "--base-url", server.base_url, "--source", "again", "--config_files", str(mine)])
    assert any("category:" in r.messages[-1]["content"] for r in server.requests)


def test_encode_reads_the_folder_yaml(own, capsys):
    from test_images import write_images

    from ur4rec_recbole.cli import encode

    root, overrides = own
    write_images(root / "tiny" / "images")
    with open(root / "tiny" / "tiny.yaml", "a") as handle:
        handle.write("image_model: ViT-S-32\nimage_pretrained: none\nimage_size: 64\n")
    report = encode.main(["--dataset", "tiny", "--images", *cli(overrides)])  # no image flag: the yaml's
    assert (report["model"], report["encoded"]) == ("ViT-S-32", 38)
    assert "tiny.image_vec.report.json" in capsys.readouterr().out


# -- errors -------------------------------------------------------------------------------------------------------
def test_without_the_folder_yaml_the_missing_time_column_is_one_clear_error(own, capsys):
    root, overrides = own
    (root / "tiny" / "tiny.yaml").unlink()
    err = fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--model", "SASRec", *cli(overrides)]),
                        r"tiny\.inter, line 1: no time column 'timestamp' \(columns: user_id, item_id, rating, when\)")
    assert "--TIME_FIELD=COLUMN" in err and str(root / "tiny" / "tiny.yaml") in err


@pytest.mark.parametrize("folder_yaml, message", [
    ("load_col: {inter: [user_id, item_id]}\n",
     r"setting load_col does not load the time column 'timestamp' from .*tiny\.inter: add it to load_col's inter"),
    ("load_col: {inter: [user_id, timestamp]}\n", r"does not load the ITEM_ID_FIELD column 'item_id'"),
    ("TIME_FIELD: user_id\n", r"tiny\.inter, line 1: time column 'user_id' is token, .* declare it user_id:float"),
    ("item_text_fields: [title, genre]\n", r"item_text_fields names 'genre', which is not a column of .*tiny\.item"),
    ("load_col: {inter: [user_id, item_id, timestamp], item: [item_id, title]}\nuser_profile_fields: [category]\n",
     r"user_profile_fields names 'category', but load_col does not load it from tiny\.item"),
    ("item_text_fields: [title]\nuser_profile_fieldz: [category]\n",
     r"tiny\.yaml, line 2: unknown setting 'user_profile_fieldz'; did you mean user_profile_fields\?"),
    ("data_path: elsewhere\n", r"tiny\.yaml, line 1: data_path cannot be set in the dataset's own yaml"),
    ("cold_items: 0.2\nbenchmark_filename: [train, valid, test]\n", r"cold_items=0\.2 needs RecBole's split"),
])
def test_bad_dataset_settings_are_one_line_before_data_loads(tiny, capsys, folder_yaml, message):
    root, overrides = tiny
    (root / "tiny" / "tiny.yaml").write_text(folder_yaml)
    argv = ["--dataset", "tiny", *cli(bare(overrides))]
    fails_clearly(capsys, lambda: run_ur4rec.main(argv), "^error: .*" + message)
    assert not list((root / "tiny").glob("*.jsonl"))  # stopped before any text was built


# -- own splits: benchmark_filename ---------------------------------------------------------------------------
PARTS = ("train", "valid", "test")
SECRET = {"valid": "secret_valid", "test": "secret_test"}  # items that occur only in one evaluation part


def write_pre_split(root: Path, recbole_rows: bool = False) -> dict[str, list[list[str]]]:
    """``tiny.{train,valid,test}.inter`` from the tiny data; return each part's rows (user, item, time).

    Each user's last item becomes its test item and a new item ``secret_valid``
    its validation item, placed *before* the user's last two training items in
    time: a history built by time alone would carry it into training inputs.
    ``recbole_rows``: RecBole's own sequential format (each row with its
    ``item_id_list``) instead of plain interaction rows.
    """
    folder = root / "tiny"
    lines = (folder / "tiny.inter").read_text().splitlines()
    by_user: dict[str, list[list[str]]] = {}
    for line in lines[1:]:
        user, item, _, time = line.split("\t")
        by_user.setdefault(user, []).append([user, item, time])
    parts = {part: [] for part in PARTS}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: float(r[2]))
        test = [user, SECRET["test"], str(float(rows[-1][2]) + 1)]
        valid = [user, SECRET["valid"], str(float(rows[-3][2]) + 0.5)]
        parts["train"] += rows
        parts["valid"].append(valid)
        parts["test"].append(test)
    (folder / "tiny.inter").unlink()
    if recbole_rows:
        header = "user_id:token\titem_id:token\ttimestamp:float\titem_id_list:token_seq"
        for part, rows in parts.items():
            out = []
            for user, item, time in rows:
                seen = parts["train"] + (parts["valid"] if part == "test" else [])  # test rows see validation too
                before = [r[1] for r in sorted(seen, key=lambda r: float(r[2]))
                          if r[0] == user and float(r[2]) < float(time)]
                if before:
                    out.append([user, item, time, " ".join(before[-6:])])
            (folder / f"tiny.{part}.inter").write_text("\n".join([header] + ["\t".join(r) for r in out]) + "\n")
    else:
        header = "user_id:token\titem_id:token\ttimestamp:float"
        for part, rows in parts.items():
            (folder / f"tiny.{part}.inter").write_text("\n".join([header] + ["\t".join(r) for r in rows]) + "\n")
    with open(folder / "tiny.item", "a") as handle:
        for item in SECRET.values():
            handle.write(f"{item}\tSecret thing\tSecretGenre\t1901\n")
    (folder / "tiny.yaml").write_text("benchmark_filename: [train, valid, test]\n")
    return parts


def secret_ids(dataset) -> np.ndarray:
    return np.asarray(dataset.token2id("item_id", list(SECRET.values())))


@pytest.mark.parametrize("model", ["UR4Rec", "SASRec"])
def test_pre_split_files_keep_validation_and_test_out_of_training(tmp_path, model):
    root = write_tiny_dataset(tmp_path / "data")
    parts = write_pre_split(root)
    config, dataset, train, valid, test = build_data(bare(tiny_overrides(root, tmp_path)), model=model)
    secret = secret_ids(dataset)
    for uid, portion in dataset.training_histories.items():  # the texts' input: the .train part only
        user = dataset.id2token("user_id", uid)
        assert list(dataset.id2token("item_id", portion)) == [r[1] for r in parts["train"] if r[0] == user]
    rows = train.dataset.inter_feat
    assert not np.isin(rows["item_id_list"].numpy(), secret).any() and not np.isin(rows["item_id"].numpy(), secret).any()
    # evaluation rows: one per file row, the history of earlier parts and earlier in time
    v, t = valid.dataset.inter_feat, test.dataset.inter_feat
    assert len(v) == len(parts["valid"]) and len(t) == len(parts["test"])
    assert (v["item_id"].numpy() == secret[0]).all() and (t["item_id"].numpy() == secret[1]).all()
    assert not np.isin(v["item_id_list"].numpy(), secret).any()
    assert (t["item_id_list"].numpy() == secret[0]).sum(axis=1).tolist() == [1] * len(t)  # test sees validation
    if model == "UR4Rec":
        users = read_records(root / "tiny" / "tiny.user_pref.template.jsonl")
        assert users and not any("SecretGenre" in r.text or "1900s" in r.text for r in users.values())


def test_pre_split_files_run_for_ur4rec_its_ablation_and_sasrec(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    write_pre_split(root)
    bench = run_ur4rec.main(["--dataset", "tiny", "--compare", "UR4Rec,UR4Rec[retriever_weight=0;fusion=none],SASRec",
                             "--seeds", "1", "--output", str(tmp_path / "bench"),
                             *cli(bare(tiny_overrides(root, tmp_path)))])
    assert [m["n_ok"] for m in bench["models"]] == [1, 1, 1]
    assert all(m["runs"][0]["config"]["benchmark_filename"] == list(PARTS) for m in bench["models"])


def test_recbole_format_pre_split_rows_are_used_as_given(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    parts = write_pre_split(root, recbole_rows=True)
    overrides = bare(tiny_overrides(root, tmp_path))
    config, dataset, train, valid, test = build_data(overrides, model="SASRec")
    assert config["alias_of_item_id"] == ["item_id_list"]  # histories share the item ids (set when unset)
    assert len(train.dataset.inter_feat) == sum(1 for line in (root / "tiny" / "tiny.train.inter").open()) - 1
    u1 = dataset.token2id("user_id", "u1")
    train_u1 = [r[1] for r in parts["train"] if r[0] == "u1"]
    assert list(dataset.id2token("item_id", dataset.training_histories[u1])) == train_u1
    assert not any(np.isin(p, secret_ids(dataset)).any() for p in dataset.training_histories.values())
    results = run_ur4rec.main(["--dataset", "tiny", *cli(overrides)])
    assert results["epochs_run"] == 1 and json.dumps(results["test_result"])


def test_missing_pre_split_file_is_one_clear_error(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "data")
    write_pre_split(root)
    (root / "tiny" / "tiny.valid.inter").unlink()
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", *cli(bare(tiny_overrides(root, tmp_path)))]),
                  r"tiny\.valid\.inter not found, but benchmark_filename=\['train', 'valid', 'test'\] names it")

