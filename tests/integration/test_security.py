"""Safe with files from strangers: no code from a setting or a checkpoint, no leaked targets, no clobbered files.

First a table in the style of ``test_bad_inputs.py``: each case breaks one
thing, runs the command and checks the exit status, the one line, and that
nothing was written (no file a crafted value would have made). Then
checkpoints (crafted, edited, flipped bytes), outputs (locks, --overwrite),
duplicate rows, and the pieces below the commands (literal parsing, safe
yaml, read-only file systems, damaged caches). The fuzz test of atomic files
is ``test_fuzz_atomic.py``; the downloader's deadline, dead hosts and SIGTERM
are in ``test_download.py``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_data, fails_clearly, tiny_overrides, write_tiny_dataset
from test_bad_inputs import Case, args, cli, snapshot, yaml_file

import run_ur4rec
from ur4rec_recbole.cli import recommend as recommend_cli
from ur4rec_recbole.errors import InputError

PWNED = "pwned"  # the file a crafted value would create in the working folder if it ran


def code(command: str = f"open('{PWNED}', 'w')") -> str:
    """A value that runs ``command`` under ``eval()``, as RecBole's Config reads settings, and is still a path."""
    return f"__import__('builtins').{command} and 'saved' or 'saved'"


def in_data(flag: str, name: str) -> callable:
    """An edit that points ``flag`` (a setting or a command-line flag) at ``name`` inside the dataset folder."""
    def edit(folder, overrides, tmp):
        if flag.startswith("--"):
            return [flag, str(folder / name)]
        overrides[flag] = str(folder / name)
        return []
    return edit


def existing(kind: str, flag: str, *extra: str) -> callable:
    """An edit that makes ``out`` an existing file or folder and passes it to ``flag``."""
    def edit(folder, overrides, tmp):
        path = tmp / "out"
        path.mkdir() if kind == "folder" else path.write_text("{}")
        return [*extra, flag, str(path)]
    return edit


def empty_file(name: str) -> callable:
    def edit(folder, overrides, tmp):
        (folder / name).write_bytes(b"")
        return []
    return edit


def second_item_row(folder, overrides, tmp):
    with open(folder / "tiny.item", "a") as handle:
        handle.write("i3\tAnother title\tDrama Extra1\t1999\n")  # i3 is on line 4
    return []


def hyper_into_data(folder, overrides, tmp):
    (tmp / "p.hyper").write_text("learning_rate choice [0.01,0.001]\n")
    return ["--hyper", str(tmp / "p.hyper"), "--output", str(folder / "hyp")]


CASES = [
    # settings are literals, never code
    Case("code in a --key=value", args(checkpoint_dir=code()),
         r"setting checkpoint_dir=.* is Python code, and settings are never run: give a literal"),
    Case("code in a --compare entry", args("--compare", f"UR4Rec,UR4Rec[fusion={code()}]"),
         r"--compare entry .*: setting fusion=.* is Python code, and settings are never run"),
    Case("python tag in a yaml file", yaml_file(f"epochs: 1\nseed: !!python/object/apply:builtins.open ['{PWNED}', 'w']\n"),
         r"my\.yaml, line 2, column 7: the tag !!python/object/apply:builtins\.open would build a Python object, "
         r"and settings files are never run"),
    Case("python name tag in a yaml file", yaml_file("fusion: !!python/name:os.system\n"),
         r"my\.yaml, line 1, column 9: the tag !!python/name:os\.system would build a Python object"),
    # numbers that mean nothing, refused before any data is read
    Case("--epochs=-1", args(epochs=-1), r"^error: setting epochs=-1: expected an int >= 1, e\.g\. --epochs=50$"),
    Case("--epochs=0", args(epochs=0), r"setting epochs=0: expected an int >= 1"),
    Case("--epochs=abc", args(epochs="abc"), r"setting epochs='abc': expected an int >= 1"),
    Case("--MAX_ITEM_LIST_LENGTH=0", args(MAX_ITEM_LIST_LENGTH=0), r"setting MAX_ITEM_LIST_LENGTH=0: expected an int >= 1"),
    Case("--seed=abc", args(seed="abc"), r"setting seed='abc': expected an int, e\.g\. --seed=2020"),
    Case("--learning_rate=-0.1", args(learning_rate=-0.1), r"setting learning_rate=-0\.1: expected a number > 0"),
    Case("--train_batch_size=0", args(train_batch_size=0), r"setting train_batch_size=0: expected an int >= 1"),
    # atomic files
    Case("zero-byte .inter", empty_file("tiny.inter"),
         r"tiny\.inter is empty or its first line is blank: line 1 must be the header, e\.g\. user_id:token"),
    Case("a second .item row for an id", second_item_row,
         r"tiny\.item, line 42: item_id 'i3' has a second row \(the first is on line 4\); keep one row per item_id"),
    # where a run writes
    Case("--results over an atomic file", in_data("--results", "tiny.inter"),
         r"--results .*tiny\.inter already exists and is kept: pass --overwrite to replace it"),
    Case("--results over an atomic file with --overwrite", lambda f, o, t: ["--overwrite", *in_data("--results", "tiny.inter")(f, o, t)],
         r"--results .*tiny\.inter is inside the dataset folder .*tiny, whose files a run must not replace"),
    Case("--results inside the dataset folder", in_data("--results", "results.json"),
         r"--results .*results\.json is inside the dataset folder"),
    Case("--results is a folder", existing("folder", "--results"),
         r"--results .*out is an existing folder: name a file, e\.g\. .*out/results\.json"),
    Case("--results exists", existing("file", "--results"),
         r"--results .*out already exists and is kept: pass --overwrite to replace it, or name another file"),
    Case("checkpoint_dir inside the dataset folder", in_data("checkpoint_dir", "saved"),
         r"setting checkpoint_dir .*saved is inside the dataset folder"),
    Case("--output of --compare is a file", existing("file", "--output", "--compare", "UR4Rec"),
         r"--output .*out is an existing file, not a folder"),
    Case("--output of --hyper inside the dataset folder", hyper_into_data, r"--output .*hyp is inside the dataset folder"),
    Case("--output of --compare inside the dataset folder", lambda f, o, t: ["--compare", "UR4Rec", "--output", str(f / "cmp")],
         r"--output .*cmp is inside the dataset folder"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_in_one_line_and_nothing_runs_or_is_written(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = write_tiny_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, tmp_path)
    argv = case.edit(root / "tiny", overrides, tmp_path)
    before = snapshot(tmp_path)
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", case.dataset, *argv, *cli(overrides)]), case.match)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("log/")}
    assert after == before and not (tmp_path / PWNED).exists()


# -- values are literals ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-0.1", -0.1), ("1e-3", 0.001), ("[10, 20]", [10, 20]), ("{'inter': ['a']}", {"inter": ["a"]}),
    ("None", None), ("True", True), ("false", False), ("TRUE", True), ("'quoted'", "quoted"), ("saved", "saved"),
    ("NDCG@10", "NDCG@10"), ("/data/run(1)/x", "/data/run(1)/x"), ("a.b", "a.b"), ("{1, 2}", "{1, 2}"),
    ("2**10", "2**10"), ("\t", "\t"),
])
def test_values_are_read_as_literals(text, value):
    from ur4rec_recbole.config.settings import parse_setting

    assert parse_setting("key", text) == value


@pytest.mark.parametrize("text", [
    "__import__('os').system('id')", "open('x', 'w')", "(lambda: 1)()", "[x for x in ()]", "().__class__",
    "print(1) or 'saved'",
])
def test_code_is_refused_naming_the_key(text):
    from ur4rec_recbole.config.settings import parse_setting

    with pytest.raises(InputError, match=r"^setting mykey=.* is Python code, and settings are never run"):
        parse_setting("mykey", text)


def test_yaml_is_read_safely_with_recboles_floats(tmp_path):
    from ur4rec_recbole.config import Config
    from ur4rec_recbole.config.settings import SettingsLoader

    assert yaml.load("a: 1e-3\nb: 5e2\nc: 1.5\nd: [1, 2]\n", Loader=SettingsLoader) == {
        "a": 0.001, "b": 500.0, "c": 1.5, "d": [1, 2]}  # plain YAML 1.1 reads 1e-3 as a string
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.load("a: !!python/name:os.system\n", Loader=SettingsLoader)
    mine = tmp_path / "mine.yaml"
    mine.write_text("learning_rate: 1e-3\n")
    config = Config("SASRec", "ml-100k", config_file_list=[str(mine)], cmd_overrides={"data_path": str(tmp_path)})
    assert config["learning_rate"] == 0.001 and config.yaml_loader is SettingsLoader


def test_the_main_jobs_settings_read_as_recbole_read_them(tmp_path):
    """The safe loader and literal parsing change no resolved setting of the main job (ml-100k, UR4Rec)."""
    from recbole.config import Config as RecBoleConfig

    from ur4rec_recbole.config import Config

    class AsRecBoleReads(Config):  # RecBole's FullLoader and eval(), as before
        def _build_yaml_loader(self):
            return RecBoleConfig._build_yaml_loader(self)

        def _convert_config_dict(self, config_dict):
            return RecBoleConfig._convert_config_dict(self, config_dict)

    overrides = {"data_path": str(tmp_path), "learning_rate": "1e-3", "topk": "[10, 20]", "show_progress": "false"}
    ours = Config("UR4Rec", "ml-100k", cmd_overrides=overrides).final_config_dict
    before = AsRecBoleReads("UR4Rec", "ml-100k", cmd_overrides=overrides).final_config_dict
    assert ours == before


# -- checkpoints ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of UR4Rec on tiny data through the command: (tmp, overrides, results file, results)."""
    tmp = tmp_path_factory.mktemp("secure")
    root = write_tiny_dataset(tmp / "data")
    overrides = tiny_overrides(root, tmp)
    out = tmp / "results.json"
    results = run_ur4rec.main(["--dataset", "tiny", "--results", str(out), *cli(overrides)])
    return tmp, overrides, out, results


def rewrite(checkpoint: str, path: Path, edit, reseal: bool) -> Path:
    from ur4rec_recbole.training.trainer import seal

    state = torch.load(checkpoint, weights_only=True)
    edit(state)
    torch.save(seal(state) if reseal else state, path)
    return path


def member_data(data: bytes, member: zipfile.ZipInfo) -> int:
    """Where a stored (uncompressed) zip member's bytes start: after its local header, name and extra field."""
    header = data[member.header_offset: member.header_offset + 30]
    names = int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    return member.header_offset + 30 + names


def flip_a_tensor_byte(checkpoint: str, path: Path) -> Path:
    """A copy of ``checkpoint`` with one byte changed inside a tensor's data (the zip stores it uncompressed)."""
    data = bytearray(Path(checkpoint).read_bytes())
    with zipfile.ZipFile(checkpoint) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data[member_data(data, member) + member.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    return path


def crafted_setting(state):
    state["config"]["checkpoint_dir"] = code()


def changed_weight(state):
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = state["state_dict"][name] + 1


def changed_setting(state):
    state["config"]["retriever_weight"] = 0.0


CHECKPOINTS = [
    ("a crafted setting, sealed", lambda c, p: rewrite(c, p, crafted_setting, reseal=True),
     r"crafted\.pth: stored setting checkpoint_dir=.* is Python code, and settings are never run"),
    ("a changed weight, saved again", lambda c, p: rewrite(c, p, changed_weight, reseal=False),
     r"crafted\.pth was changed after it was written \(its contents no longer match the SHA-256 stored in it\)"),
    ("a changed setting, saved again", lambda c, p: rewrite(c, p, changed_setting, reseal=False),
     r"crafted\.pth was changed after it was written \(its contents no longer match"),
    ("a byte flipped inside a tensor", flip_a_tensor_byte,
     r"crafted\.pth was changed after it was written \(zip member .*/data/\d+ fails its CRC-32 check\)"),
    ("no content hash", lambda c, p: rewrite(c, p, lambda s: s.pop("content_sha256"), reseal=False),
     r"crafted\.pth carries no content hash \(content_sha256\), so it cannot be verified"),
]


@pytest.mark.parametrize("what, craft, match", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_a_crafted_or_changed_checkpoint_is_refused_by_recommend_and_resume(trained, tmp_path, capsys, monkeypatch,
                                                                             what, craft, match):
    monkeypatch.chdir(tmp_path)
    _, overrides, _, results = trained
    crafted = craft(results["checkpoint"], tmp_path / "crafted.pth")
    before = snapshot(tmp_path)
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", str(crafted), "--user", "u1"]), match)
    fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--resume", str(crafted),
                                                   *cli({**overrides, "epochs": 3})]), match)
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("log/")}
    assert after == before and not (tmp_path / PWNED).exists()


def test_an_intact_checkpoint_verifies(trained):
    from ur4rec_recbole.training.trainer import DIGEST_KEY, content_digest, read_checkpoint

    state = read_checkpoint(trained[3]["checkpoint"])
    assert state[DIGEST_KEY] == content_digest(state)
    assert all(isinstance(v, (str, int, float, bool, type(None), list, dict)) for v in state["config"].values())


def test_resume_with_nothing_left_to_train_is_refused_before_data(trained, capsys):
    tmp, overrides, _, results = trained
    checkpoints = snapshot(tmp / "saved")
    for epochs in (1, 0):
        fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--resume", results["checkpoint"],
                                                       *cli({**overrides, "epochs": epochs})]),
                      r"setting epochs=1: .*\.pth has trained 1 epoch\(s\), so resuming would train nothing; pass "
                      r"--epochs greater than 1" if epochs else r"setting epochs=0: expected an int >= 1")
    assert snapshot(tmp / "saved") == checkpoints


# -- outputs ---------------------------------------------------------------------------------------------


def test_results_being_written_by_another_command_are_refused(trained, tmp_path, capsys):
    from ur4rec_recbole.outputs import lock_path

    _, overrides, _, _ = trained
    out = tmp_path / "busy.json"
    with open(lock_path(out), "w") as holder:  # another command holds the lock (flock: per open file)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("4242")
        holder.flush()
        fails_clearly(capsys, lambda: run_ur4rec.main(["--dataset", "tiny", "--results", str(out), *cli(overrides)]),
                      r"--results .*busy\.json is being written by another running command \(pid 4242")
    assert not out.exists()


def test_overwrite_replaces_the_results_and_the_lock_goes(trained):
    tmp, overrides, out, first = trained
    before = json.loads(out.read_text())
    again = run_ur4rec.main(["--dataset", "tiny", "--results", str(out), "--overwrite", *cli({**overrides, "seed": 7})])
    saved = json.loads(out.read_text())
    assert saved["seed"] == 7 == again["seed"] and before["seed"] != 7
    assert not any(p.name.endswith(".lock") for p in out.parent.iterdir())


def test_recommend_output_inside_the_dataset_folder_is_refused(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tmp, _, _, results = trained
    target = tmp / "data" / "tiny" / "recs.jsonl"
    fails_clearly(capsys, lambda: recommend_cli.main(["--checkpoint", results["checkpoint"], "--all", "-o", str(target)]),
                  r"--output .*recs\.jsonl is inside the dataset folder")
    assert not target.exists()


# -- duplicate rows ----------------------------------------------------------------------------------------


def repeat_last_row(user, rows):
    return rows + [list(rows[-1])]


def test_exact_duplicate_rows_are_removed_and_logged(tmp_path, caplog):
    clean = build_data(tiny_overrides(write_tiny_dataset(tmp_path / "clean"), tmp_path))[1]
    root = write_tiny_dataset(tmp_path / "data", edit=repeat_last_row)
    with caplog.at_level(logging.WARNING):
        _, dataset, _, _, test = build_data(tiny_overrides(root, tmp_path))
    assert dataset.inter_num == clean.inter_num
    assert any("24 rows repeat an earlier row exactly (e.g. line 16 repeats line 15) and were removed" in r.message
               for r in caplog.records)
    rows = test._dataset.inter_feat
    last = rows["item_id_list"][torch.arange(len(rows)), rows["item_length"] - 1]
    assert (last != rows["item_id"]).float().mean() > 0.8  # the leak is gone: targets are no copies of inputs


def test_kept_duplicates_leak_and_are_reported(tmp_path, caplog):
    root = write_tiny_dataset(tmp_path / "data", edit=repeat_last_row)
    with caplog.at_level(logging.WARNING):
        _, dataset, _, _, test = build_data(tiny_overrides(root, tmp_path, drop_duplicate_rows=False))
    rows = test._dataset.inter_feat
    last = rows["item_id_list"][torch.arange(len(rows)), rows["item_length"] - 1]
    assert bool((last == rows["item_id"]).all())  # every test target is a copy of its input: the leak
    assert any("24 test targets are the same item as the one just before them (users u1, " in r.message
               for r in caplog.records)


def test_real_repeat_consumption_is_kept_and_reported(tmp_path, caplog):
    """A user who buys the same item again later: a new time, so no exact duplicate; scored, and reported."""
    def again_later(user, rows):
        return rows + [[rows[-1][0], rows[-1][1], rows[-1][2] + 5]] if user == 2 else rows

    clean = build_data(tiny_overrides(write_tiny_dataset(tmp_path / "clean"), tmp_path))[1]
    root = write_tiny_dataset(tmp_path / "data", edit=again_later)
    with caplog.at_level(logging.WARNING):
        dataset = build_data(tiny_overrides(root, tmp_path))[1]
    assert dataset.inter_num == clean.inter_num + 1
    assert any("test targets are the same item as the one just before them (users u2" in r.message
               for r in caplog.records)


def test_items_without_an_item_row_are_logged(tmp_path, caplog):
    root = write_tiny_dataset(tmp_path / "data", items_without_row=(3, 7))
    with caplog.at_level(logging.WARNING):
        build_data(tiny_overrides(root, tmp_path))
    assert any("tiny.item: 2 items of the interactions have no row ('i3', 'i7')" in r.message for r in caplog.records)


def test_ml100k_has_no_duplicate_rows():
    """So removing duplicates changes none of the main job's figures."""
    import recbole

    from ur4rec_recbole.formats.atomic import check_atomic_file

    path = Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
    checked = check_atomic_file(path)
    assert checked.rows == 100_000 and checked.repeats == ()


# -- read-only file systems, damaged caches ---------------------------------------------------------------


def test_a_read_only_file_system_is_one_line(tmp_path, monkeypatch, capsys):
    from ur4rec_recbole.cli.common import command
    from ur4rec_recbole.io import write_text

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("os.replace", read_only)
    with pytest.raises(PermissionError, match=r"cannot write .*x\.txt: read-only file system; make .* writable"):
        write_text(tmp_path / "x.txt", "hello")
    assert not list(tmp_path.iterdir())  # the temporary file is gone too

    def body():
        with command():
            raise OSError(errno.EROFS, "Read-only file system", "log/x.log")

    fails_clearly(capsys, body, r"^error: \[Errno 30\] Read-only file system: 'log/x\.log'$")
    with pytest.raises(ConnectionRefusedError):  # other OS errors are no bad input: a traceback
        with command():
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")


def test_a_damaged_vector_cache_is_rebuilt(tmp_path, caplog):
    root = write_tiny_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, tmp_path)
    first = build_data(overrides)[1].features
    table = root / "tiny" / "tiny.item_know.template.npz"
    data = bytearray(table.read_bytes())
    with zipfile.ZipFile(table) as archive:
        member = archive.getinfo("vectors.npy")
    data[member_data(data, member) + member.file_size - 8] ^= 0x01  # in the last vector
    table.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        second = build_data(overrides)[1].features
    assert any("the cached table is damaged (vectors.npy fails its check); building it again" in r.message
               for r in caplog.records)
    with zipfile.ZipFile(table) as archive:
        assert archive.testzip() is None
    assert torch.equal(torch.as_tensor(first.item_text), torch.as_tensor(second.item_text))
