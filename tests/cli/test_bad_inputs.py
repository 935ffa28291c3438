"""Every bad input is one line on stderr naming the file (row, column, setting) and the fix; exit status 2.

Each case of the table writes a tiny dataset, breaks one thing, runs the
command and checks the status, the one line, and that nothing in the test's
folder was written or overwritten. Then: what real exports contain and must
be read (BOM, quotes, Latin-1, CRLF), checkpoints that never collide or get
overwritten and refuse other data, and read-only data folders.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from conftest import build_data, fails_clearly, tiny_overrides, write_tiny_dataset

import run_ur4rec
from ur4rec_recbole.training import trainer as trainer_module


def cli(overrides: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``folder``: equal snapshots mean nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def replace_in(name: str, old: bytes, new: bytes) -> Callable:
    def edit(folder: Path, overrides: dict, tmp: Path) -> list[str]:
        path = folder / name
        data = path.read_bytes()
        assert old in data, (name, old)
        path.write_bytes(data.replace(old, new, 1))
        return []
    return edit


def header_only(folder, overrides, tmp):
    path = folder / "tiny.inter"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return []


def remove_item_file(folder, overrides, tmp):
    (folder / "tiny.item").unlink()
    return []


def yaml_file(text: str) -> Callable:
    def edit(folder, overrides, tmp):
        path = tmp / "my.yaml"
        path.write_text(text)
        return ["--config_files", str(path)]
    return edit


def junk_vector_file(folder, overrides, tmp):
    (tmp / "v.npz").write_bytes(b"not a numpy file")
    overrides["item_vector_file"] = str(tmp / "v.npz")
    return []


def junk_checkpoint(folder, overrides, tmp):
    (tmp / "junk.pth").write_bytes(b"junk")
    return ["--resume", str(tmp / "junk.pth")]


def hyper_file(folder, overrides, tmp):
    (tmp / "p.hyper").write_text("lerning_rate choice [0.01,0.001]\n")
    return ["--hyper", str(tmp / "p.hyper"), "--output", str(tmp / "hyper")]


def args(*extra: str, **settings) -> Callable:
    def edit(folder, overrides, tmp):
        overrides.update({k: str(v) for k, v in settings.items()})
        return list(extra)
    return edit


@dataclass(frozen=True)
class Case:
    name: str
    edit: Callable
    match: str
    dataset: str = "tiny"
    drop: tuple[str, ...] = field(default=())  # overrides left out (e.g. for a model that does not know them)


CASES = [
    # atomic files
    Case("header-only .inter", header_only, r"tiny\.inter has a header but no rows: add the data"),
    Case("non-numeric timestamp", replace_in("tiny.inter", b"\t1010\n", b"\tyesterday\n"),
         r"tiny\.inter, line 3, column timestamp \(float\): 'yesterday' is not a number; .*timestamp:token"),
    Case("latin-1 byte in a title", replace_in("tiny.item", b"Movie number 3\t", b"Movie num\xe9ro 3\t"),
         r"tiny\.item, line 4: byte 0xe9 is not valid UTF-8; .*--encoding=latin-1"),
    Case("bad type suffix", replace_in("tiny.inter", b"rating:float", b"rating:flaot"),
         r"tiny\.inter, line 1: column 'rating' has type 'flaot'; did you mean rating:float\?"),
    Case("header without suffix", replace_in("tiny.inter", b"rating:float", b"rating"),
         r"tiny\.inter, line 1: header column 3 'rating' has no type; write it as rating:token"),
    Case("duplicate column", replace_in("tiny.inter", b"rating:float", b"item_id:token"),
         r"tiny\.inter, line 1: column 'item_id' appears twice in the header \(columns 2 and 3\)"),
    Case("tab inside a title", replace_in("tiny.item", b"Movie number 3\t", b"Movie\tnumber 3\t"),
         r"tiny\.item, line 4: 5 fields but the header has 4; a value contains the field separator"),
    Case("line break inside a title", replace_in("tiny.item", b"Movie number 3\t", b"Movie\nnumber 3\t"),
         r"tiny\.item, line 4: 2 fields but the header has 4; a value contains a line break"),
    Case("no item id column", replace_in("tiny.inter", b"item_id:token", b"product:token"),
         r"tiny\.inter, line 1: no column 'item_id'"),
    Case("unknown dataset", args(), r"nothere\.inter not found.*--data_path=DIR", dataset="nothere"),
    Case("missing .item", remove_item_file, r"tiny\.item does not exist, but the template texts read"),
    Case("unknown text field", args(item_text_fields="['title', 'genre']"),
         r"item_text_fields names 'genre', which is not a column of .*tiny\.item"),
    Case("text field not loaded", args(load_col="{'inter': ['user_id', 'item_id', 'timestamp'], "
                                                "'item': ['item_id', 'title', 'category']}"),
         r"item_text_fields names 'year', but load_col does not load it from tiny\.item"),
    # settings and config files
    Case("model-name typo", args("--model", "SASRek"), r"unknown model 'SASRek': did you mean SASRec\?"),
    Case("model-name case", args("--model", "sasrec"), r"unknown model 'sasrec': did you mean SASRec\?"),
    Case("unknown setting", args(retriever_wieght=0.5),
         r"^error: unknown setting --retriever_wieght; did you mean --retriever_weight\?"),
    Case("setting of another model", args("--model", "SASRec", retriever_weight=0.5),
         r"unknown setting --retriever_weight; it is a setting of UR4Rec, not of SASRec"),
    Case("unknown setting in yaml", yaml_file("epochs: 1\nretriever_wieght: 0.5\n"),
         r"my\.yaml, line 2: unknown setting 'retriever_wieght'; did you mean retriever_weight\?"),
    Case("malformed yaml", yaml_file("epochs: 1\nload_col: [1, 2\nseed: 3\n"),
         r"my\.yaml, line 3, column \d+: expected ',' or '\]'.*\(YAML\)"),
    Case("yaml that is a list", yaml_file("- epochs\n"), r"my\.yaml: expected `key: value` lines"),
    Case("missing config file", args("--config_files", "nothere.yaml"),
         r"config file nothere\.yaml \(--config_files\) does not exist"),
    Case("unknown fusion", args(fusion="wieghted"),
         r"setting fusion='wieghted': expected one of \[.*\]; did you mean 'weighted'\?"),
    Case("train_stride=0", args(train_stride=0), r"setting train_stride=0: expected a positive int or None"),
    Case("zero proxies", args(n_proxies=0), r"setting n_proxies=0: expected an int >= 1"),
    Case("negative loss weight", args(retriever_weight=-0.5), r"setting retriever_weight=-0.5: expected a number >= 0"),
    Case("unknown encoding", args(encoding="latin-9x"), r"setting encoding='latin-9x': unknown encoding"),
    Case("missing vector file", args(item_vector_file="nothere.npz"),
         r"setting item_vector_file=nothere\.npz: the vector file does not exist"),
    Case("bad vector file", junk_vector_file, r"v\.npz: not a readable \.npz vector table .*numpy\.savez"),
    Case("non-checkpoint --resume", junk_checkpoint,
         r"junk\.pth cannot be loaded with torch\.load\(weights_only=True\): it was not written by ur4rec-recbole"),
    Case("missing --resume file", args("--resume", "nothere.pth"), r"checkpoint nothere\.pth does not exist"),
    # --compare and --hyper
    Case("--compare entry with an unknown setting", args("--compare", "UR4Rec,UR4Rec[retriever_wieght=0]"),
         r"--compare entry 'UR4Rec\[retriever_wieght=0\]': unknown setting 'retriever_wieght'; did you mean "
         r"retriever_weight\?"),
    Case("--compare entry with a bad value", args("--compare", "UR4Rec,UR4Rec[fusion=bogus]"),
         r"--compare entry 'UR4Rec\[fusion=bogus\]': setting fusion='bogus': expected one of"),
    Case("--compare setting no listed model knows", args("--compare", "Pop,ItemKNN", retriever_weight=0),
         r"unknown setting --retriever_weight; it is a setting of UR4Rec, not of Pop, ItemKNN",
         drop=("hidden_size", "inner_size", "n_layers")),
    Case("--hyper parameter nobody knows", hyper_file,
         r"the --hyper params file: unknown setting 'lerning_rate'; did you mean learning_rate\?"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths of the cases (and RecBole's log/) land here
    root = write_tiny_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, tmp_path)
    for key in case.drop:
        overrides.pop(key)
    argv = case.edit(root / "tiny", overrides, tmp_path)
    before = snapshot(tmp_path)
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", case.dataset, *argv, *cli(overrides)]), case.match)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("log/")}
    assert after == before  # nothing written or overwritten (RecBole's log aside)


def test_debug_shows_the_traceback(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="unknown setting --retriever_wieght"):
        run_ur4rec.main(["--dataset", "tiny", "--debug", *cli(tiny_overrides(root, tmp_path, retriever_wieght=1))])


def test_a_setting_one_listed_model_knows_is_accepted_for_all(tiny):
    from ur4rec_recbole.run.compare.runner import check_specs
    from ur4rec_recbole.run.compare.spec import parse_specs

    _, overrides = tiny
    common = check_specs(parse_specs("SASRec,UR4Rec"), "tiny", None, {**overrides, "retriever_weight": "0.2"})
    assert "retriever_weight" in common


# -- what real exports contain ------------------------------------------------------------------------

QUOTED = '"Stay" Pillow 14" x 14"'


def export_quirks(folder: Path) -> None:
    """A UTF-8 byte-order mark, CRLF line ends and titles with double quotes, as real exports have them."""
    item = folder / "tiny.item"
    item.write_bytes(item.read_bytes().replace(b"Movie number 3\t", QUOTED.encode() + b"\t"))
    for name in ("tiny.inter", "tiny.item", "tiny.user"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))


@pytest.mark.parametrize("model", ["UR4Rec", "SASRec"])
def test_bom_crlf_and_quotes_are_read_as_written(tmp_path, model):
    root = write_tiny_dataset(tmp_path / "data")
    clean = build_data(tiny_overrides(root, tmp_path))[1]
    export_quirks(root / "tiny")
    before = snapshot(root / "tiny")
    dataset = build_data(tiny_overrides(root, tmp_path), model=model)[1]
    assert dataset.inter_num == clean.inter_num and dataset.item_num == clean.item_num
    titles = dataset.field2id_token["title"]
    assert '"Stay"' in titles and '14"' in titles  # the quotes are characters, not CSV quoting
    assert {k for k in snapshot(root / "tiny")} - set(before) <= {
        "tiny.user_pref.template.jsonl", "tiny.item_know.template.jsonl",
        "tiny.user_pref.template.npz", "tiny.item_know.template.npz"}  # no copy of an atomic file next to the data
    if model == "UR4Rec":
        texts = (root / "tiny" / "tiny.item_know.template.jsonl").read_text(encoding="utf-8")
        assert 'title: \\"Stay\\" Pillow 14\\" x 14\\".' in texts


def test_latin1_file_reads_with_the_encoding_setting(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    item = root / "tiny" / "tiny.item"
    item.write_bytes(item.read_bytes().replace(b"Movie number 3\t", b"Movie num\xe9ro 3\t"))
    build_data(tiny_overrides(root, tmp_path, encoding="latin-1"))
    texts = (root / "tiny" / "tiny.item_know.template.jsonl").read_text(encoding="utf-8")
    assert "title: Movie numéro 3." in texts


# -- checkpoints -------------------------------------------------------------------------------------


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of UR4Rec on tiny data: (tmp folder, overrides, results)."""
    tmp = tmp_path_factory.mktemp("trained")
    root = write_tiny_dataset(tmp / "data")
    overrides = tiny_overrides(root, tmp)
    results = run_ur4rec.main(["--dataset", "tiny", *cli(overrides)])
    return tmp, overrides, results


def test_two_runs_in_the_same_instant_keep_two_checkpoints(tmp_path, monkeypatch):
    frozen = trainer_module._now()
    monkeypatch.setattr(trainer_module, "_now", lambda: frozen)  # both runs start "at the same microsecond"
    root = write_tiny_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, tmp_path)
    results = {}
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}.json"
        run_ur4rec.main(["--dataset", "tiny", "--results", str(out), *cli({**overrides, "seed": seed})])
        results[seed] = json.loads(out.read_text())
    first, second = results[1]["checkpoint"], results[2]["checkpoint"]
    assert first != second and Path(first).is_file() and Path(second).is_file()
    for seed, saved in results.items():  # each results file names its own model
        assert torch.load(saved["checkpoint"], weights_only=True)["config"]["seed"] == seed
    config = {"model": "UR4Rec", "dataset": "tiny", "seed": 1}
    assert trainer_module.checkpoint_name(config) != trainer_module.checkpoint_name(config)  # same seed too


def test_resume_writes_a_new_file_and_never_the_source(trained, tmp_path):
    tmp, overrides, results = trained
    source = results["checkpoint"]
    digest, stamp = sha(source), os.stat(source).st_mtime_ns
    resumed = run_ur4rec.main(["--dataset", "tiny", "--resume", source, *cli({**overrides, "epochs": 2})])
    assert resumed["checkpoint"] != source and Path(resumed["checkpoint"]).is_file()
    assert sha(source) == digest and os.stat(source).st_mtime_ns == stamp
    assert [e["epoch"] for e in resumed["epoch_history"]] == [1]


def other_dataset(tmp_path: Path, name: str = "tiny", edit=None) -> tuple[str, dict]:
    """(name, overrides) of a second tiny dataset, written as the trained one was, then ``edit``-ed."""
    root = write_tiny_dataset(tmp_path / "other", name=name)
    if edit is not None:
        edit(root / name)
    return name, tiny_overrides(root, tmp_path, name=name)


def change_one_rating(folder: Path) -> None:
    path = folder / "tiny.inter"
    lines = path.read_text().splitlines()
    user, item, rating, ts = lines[1].split("\t")
    lines[1] = "\t".join([user, item, str(6 - int(float(rating))), ts])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("what, edit, match", [
    ("another dataset", lambda tmp: other_dataset(tmp, name="tiny2"),
     r"cannot resume .*: it was trained on other data: dataset name differs \(checkpoint: tiny, here: tiny2\)"),
    ("a changed atomic file", lambda tmp: other_dataset(tmp, edit=change_one_rating),
     r"cannot resume .*: it was trained on other data: atomic file tiny\.inter changed"),
], ids=["dataset", "atomic-file"])
def test_resume_on_other_data_is_refused_before_anything_is_written(trained, tmp_path, capsys, what, edit, match):
    _, _, results = trained
    name, overrides = edit(tmp_path)
    before = snapshot(tmp_path)
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", name, "--resume", results["checkpoint"],
                                                   *cli(overrides)]), match)
    assert snapshot(tmp_path) == before


def test_resume_with_changed_vectors_is_refused(trained, tmp_path, capsys):
    tmp, overrides, results = trained
    source = results["checkpoint"]
    digest = sha(source)
    checkpoints = snapshot(tmp / "saved")
    changed = {**overrides, "epochs": 2, "item_text_fields": "['title', 'category']"}  # other texts, so other vectors
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--resume", source, *cli(changed)]),
                  r"cannot resume .*: it was trained on other data: vectors changed \(tiny\.item_know\.template\.npz\)")
    assert sha(source) == digest and snapshot(tmp / "saved") == checkpoints
    build_data(overrides)  # put the texts back for the other tests of the module


def test_resume_with_other_shapes_names_the_dataset(trained, capsys):
    _, overrides, results = trained
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--resume", results["checkpoint"],
                                                   *cli({**overrides, "epochs": 2, "hidden_size": 32})]),
                  r"does not fit UR4Rec on dataset tiny with these settings \(size mismatch for .*\); use the "
                  r"settings it was trained with")


def test_testing_a_checkpoint_on_other_data_is_refused(trained, tmp_path):
    from ur4rec_recbole.run.single import test_saved_model

    _, _, results = trained
    name, overrides = other_dataset(tmp_path, name="tiny2")
    with pytest.raises(ValueError, match=r"cannot test .*: it was trained on other data: dataset name differs"):
        test_saved_model("UR4Rec", name, results["checkpoint"], cmd_overrides=overrides)


# -- read-only data ----------------------------------------------------------------------------------

_CAP_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capabilities(new_effective: int | None = None) -> int:
    """Read (and optionally set) this thread's effective capability bits 0-31 via capget/capset."""
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(_CAP_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    old = data[0].effective
    if new_effective is not None:
        data[0].effective = new_effective
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    return old


@contextmanager
def unprivileged():
    """Let file permissions bind: root keeps its identity (so it can still read an installation under
    /root, as on CI) but loses the capabilities that override read/write permission bits."""
    if os.geteuid() != 0:
        yield
        return
    old = _capabilities()
    _capabilities(old & ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)))
    try:
        yield
    finally:
        _capabilities(old)


def test_read_only_data_is_read_and_a_needed_write_says_where(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the command's own outputs (RecBole's log/) go here
    root = write_tiny_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, tmp_path)
    build_data(overrides)  # texts and vectors built once
    folder = root / "tiny"
    before = snapshot(folder)
    for path in [folder, *folder.iterdir()]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    try:
        with unprivileged():
            build_data(overrides)  # up to date: read, not written
            assert snapshot(folder) == before
            changed = {**overrides, "item_text_fields": "['title', 'category']"}
            fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", *cli(changed)]),
                          r"cannot write .*tiny\.item_know\.template\.jsonl: permission denied; the dataset folder "
                          r".*tiny is read-only: copy it to a writable place and pass --data_path=")
        assert snapshot(folder) == before
    finally:
        os.chmod(folder, 0o755)


def test_explicit_vectors_are_checked_before_texts_are_written(tmp_path, capsys):
    root = write_tiny_dataset(tmp_path / "data")
    items = tmp_path / "items.npz"
    np.savez(items, tokens=np.asarray(["i1"]), vectors=np.ones((2, 4), dtype=np.float32))
    overrides = tiny_overrides(root, tmp_path, item_vector_file=items)
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", *cli(overrides)]),
                  r"items\.npz: misaligned table, 1 tokens but 2 vector rows")
    assert not list((root / "tiny").glob("*.jsonl"))  # failed before any text was written
