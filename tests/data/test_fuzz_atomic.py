"""Fuzzed atomic files: every one is read, split and checked, or refused in one line (exit 2); never a traceback.

``hypothesis`` writes ``.inter`` (and sometimes ``.item``) files with random
headers, types, encodings, line ends, quotes, separators, blank and repeated
rows. Each goes through the one setup path (Config, atomic-file checks,
RecBole's reader, the leave-one-out split) as a command runs it, without
training. The examples are few and tiny, and derandomized, so the test is
quick and the same on every machine.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ur4rec_recbole.cli.common import command

SEPARATORS = ["\t", "\t", "\t", ",", ";"]
EXTRA_COLUMNS = ["rating:float", "title:token_seq", "tags:float_seq", "note:token"]
HEADER_CHANGES = [None] * 16 + ["drop a column", "a typo in a type", "no type", "a repeated column", "blank"]
WORDS = st.text(st.sampled_from(list("ab1 0.-\"'\\é\u00a0ü🙂")), max_size=6)  # no separator, no line break
ODD = st.text(st.sampled_from(list("a1 \"\t,;\r\ufeff")), max_size=4)  # may break a row


def values(kind: str, draw) -> str:
    """Mostly sensible values of a column; one in twenty is odd (blank, a word in a number, a separator)."""
    if draw(st.integers(0, 19)) == 19:
        return draw(st.one_of(st.sampled_from(["", " ", "abc"]), ODD))
    return draw({
        "user_id:token": st.sampled_from(["u1", "u2", "u3"]),
        "item_id:token": st.sampled_from(["i1", "i2", "i3", "i4", '"i5', "i 6"]),
        "timestamp:float": st.integers(0, 40).map(str),
        "rating:float": st.sampled_from(["1", "4.5", "1e3", "nan", "inf", "-2"]),
        "tags:float_seq": st.lists(st.sampled_from(["1", "2.5", "-3"]), max_size=3).map(" ".join),
    }.get(kind, WORDS))


@st.composite
def inter_file(draw) -> tuple[str, str, bytes]:
    """(separator, encoding, bytes) of an ``.inter`` file: usually well formed, often not quite."""
    sep = draw(st.sampled_from(SEPARATORS))
    columns = ["user_id:token", "item_id:token", "timestamp:float"]
    columns += draw(st.lists(st.sampled_from(EXTRA_COLUMNS), max_size=2, unique=True))
    rows = []
    for _ in range(draw(st.integers(0, 24))):
        row = [values(c, draw) for c in columns]
        if draw(st.integers(0, 30)) == 30:
            row = row[:-1] if draw(st.booleans()) else row + ["extra"]  # a field too few or too many
        rows.append(sep.join(row))
        if draw(st.integers(0, 6)) == 6:
            rows.append(rows[-1])  # a repeated row
        if draw(st.integers(0, 12)) == 12:
            rows.append("")  # a blank line
    change = draw(st.sampled_from(HEADER_CHANGES))
    header = list(columns)
    if change == "drop a column":
        header.pop(draw(st.integers(0, len(header) - 1)))
    elif change == "a typo in a type":
        header[-1] = header[-1].replace("float", "flaot").replace("token", "tokn")
    elif change == "no type":
        header[0] = header[0].split(":")[0]
    elif change == "a repeated column":
        header.append(header[0])
    lines = ["" if change == "blank" else sep.join(header), *rows]
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = end.join(lines) + draw(st.sampled_from([end, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1"]))
    return sep, encoding, text.encode(encoding, errors="replace")


@st.composite
def item_file(draw, sep: str, encoding: str) -> bytes:
    """An ``.item`` file for items i1..i6: some missing, some twice, odd titles."""
    lines = ["item_id:token" + sep + "title:token_seq"]
    for item in draw(st.lists(st.sampled_from(["i1", "i2", "i3", "i4", "i9"]), max_size=6)):
        lines.append(item + sep + draw(WORDS))
    return ("\n".join(lines) + "\n").encode(encoding, errors="replace")


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(inter=inter_file(), data=st.data())
def test_a_fuzzed_atomic_file_is_read_or_refused_in_one_line(inter, data, capsys, monkeypatch, tmp_path):
    from ur4rec_recbole.run.prepare import prepare_run

    monkeypatch.chdir(tmp_path)  # RecBole's log/ goes here
    sep, encoding, raw = inter
    root = Path(tempfile.mkdtemp(prefix="ur4rec-fuzz-"))
    try:
        folder = root / "fz"
        folder.mkdir()
        (folder / "fz.inter").write_bytes(raw)
        if data.draw(st.booleans(), label="with an .item file"):
            (folder / "fz.item").write_bytes(data.draw(item_file(sep, encoding), label=".item"))
        overrides = {"data_path": str(root), "field_separator": sep, "MAX_ITEM_LIST_LENGTH": "5",
                     "show_progress": "False", "state": "ERROR", "checkpoint_dir": str(root / "saved")}
        if data.draw(st.booleans(), label="encoding declared"):  # else the files are read as UTF-8
            overrides["encoding"] = encoding
        capsys.readouterr()
        try:
            with command():
                prepared = prepare_run("SASRec", "fz", cmd_overrides=overrides)
                prepared.dataset.build()  # RecBole's split and this package's checks of it
        except SystemExit as stop:
            err = capsys.readouterr().err.strip()
            assert stop.code == 2, (stop.code, err)
            assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    finally:
        shutil.rmtree(root, ignore_errors=True)
