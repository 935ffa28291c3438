"""RecBole's atomic files (``.inter``, ``.item``, ``.user``, ...): checked before they are read.

An atomic file is tab-separated text with a ``name:type`` header. Real exports
break RecBole's reader in ways its messages do not explain (a UTF-8
byte-order mark becomes part of the first column's name, a Latin-1 byte stops
the decoder, a text field that starts with a double quote is taken for CSV
quoting and swallows the rows after it). :func:`check_atomic_file` reads a
file once before RecBole does and turns every such problem into one
:class:`InputError` naming the file, the line (and column) and the fix; it
also says whether the file needs :func:`quoted_copy_text`, the same rows
written so that pandas reads double quotes literally. :func:`read_columns` is
the package's own reader of raw columns (tokens, image paths), with the
same rules.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ur4rec_recbole.errors import InputError

TYPES = ("token", "token_seq", "float", "float_seq")  # RecBole's FeatureType values
FIX_ENCODING = ("set the setting encoding to the file's encoding (e.g. --encoding=latin-1 or "
                "`encoding: cp1252` in a yaml file), or save the file as UTF-8")


@dataclass(frozen=True)
class Column:
    """One header entry: ``name:type``."""

    name: str
    type: str

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.type}"


@dataclass(frozen=True)
class CheckedFile:
    """What the check found out about a file that is fit to read."""

    path: Path
    columns: tuple[Column, ...]
    rows: int
    needs_quoting: bool  # a field starts with '"': hand RecBole :func:`quoted_copy_text` instead
    row_lines: tuple[int, ...] = ()  # the line number of each row (blank lines are no rows)
    repeats: tuple[tuple[int, int], ...] = ()  # (row, line it repeats): rows identical to an earlier row


def encoding_label(encoding: str) -> str:
    """``utf-8-sig`` (what the Config makes of ``utf-8``) is shown to users as UTF-8."""
    name = codecs.lookup(encoding).name
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else encoding


def decode(path: str | os.PathLike, raw: bytes, encoding: str) -> str:
    """``raw`` decoded; an undecodable byte is one error naming the file, line and byte."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"{path}, line {line}: byte 0x{raw[err.start]:02x} is not valid {encoding_label(encoding)}; "
            f"{FIX_ENCODING}"
        ) from None


def parse_header(path: str | os.PathLike, header: str, sep: str) -> tuple[Column, ...]:
    """The ``name:type`` columns of a header line; a missing or unknown type or a repeated name is an error."""
    if not header.strip():
        raise InputError(f"{path} is empty or its first line is blank: line 1 must be the header, e.g. "
                         f"user_id:token{sep}item_id:token{sep}timestamp:float, then one row per line")
    columns: list[Column] = []
    for position, entry in enumerate(header.rstrip("\r\n").split(sep), start=1):
        name, colon, kind = entry.strip().partition(":")
        if not colon or not name:
            raise InputError(
                f"{path}, line 1: header column {position} {entry!r} has no type; write it as "
                f"{entry.strip() or 'name'}:token (types: {', '.join(TYPES)}; fields are separated by "
                f"{sep!r})"
            )
        if kind not in TYPES:
            near = difflib.get_close_matches(kind, TYPES, n=1)
            hint = f"did you mean {name}:{near[0]}? " if near else ""
            raise InputError(
                f"{path}, line 1: column {name!r} has type {kind!r}; {hint}RecBole's types are {', '.join(TYPES)}"
            )
        earlier = next((i for i, c in enumerate(columns, start=1) if c.name == name), None)
        if earlier is not None:
            raise InputError(
                f"{path}, line 1: column {name!r} appears twice in the header (columns {earlier} and "
                f"{position}); rename or drop one of them"
            )
        columns.append(Column(name, kind))
    return tuple(columns)


def read_header(path: str | os.PathLike, sep: str = "\t", encoding: str = "utf-8-sig") -> tuple[Column, ...]:
    """The checked header of an atomic file (reads its first line only)."""
    with open(path, "rb") as handle:
        first = handle.readline()
    return parse_header(path, decode(path, first, encoding).lstrip("\ufeff"), sep)


def _starts_with_quote(text: str, sep: str) -> bool:
    return re.search(rf"(?:^|{re.escape(sep)})\"", text, flags=re.MULTILINE) is not None


def _frame(text: str, sep: str, usecols: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows as strings, double quotes literal, blank lines kept (row ``i`` is line ``i + 2``)."""
    return pd.read_csv(io.StringIO(text), sep=sep, quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                       skip_blank_lines=False, usecols=usecols, engine="c")


def check_field_counts(path, body: str, expected: int, sep: str) -> None:
    """Every non-blank row has as many fields as the header (a separator or line break inside a value breaks it)."""
    for number, line in enumerate(body.split("\n"), start=2):
        fields = line.count(sep) + 1
        if fields != expected and line.strip():
            cause = "contains the field separator" if fields > expected else "contains a line break, or fields are missing"
            raise InputError(
                f"{path}, line {number}: {fields} fields but the header has {expected}; a value {cause} "
                f"({sep!r} separates fields, one row per line): remove it from the value"
            )


def check_atomic_file(path: str | os.PathLike, sep: str = "\t", encoding: str = "utf-8-sig",
                      numeric: Iterable[str] | None = None, required: Iterable[str] = ()) -> CheckedFile:
    """Check an atomic file as RecBole will read it; return what was found, or raise one :class:`InputError`.

    Checked: the encoding (line of the first bad byte), the header (types,
    duplicates, ``required`` columns), at least one row, the number of fields
    per row, and that every value of the float columns among ``numeric``
    (default: all) is a number. Empty values are allowed (RecBole reads NaN).
    """
    path = Path(path)
    text = decode(path, path.read_bytes(), encoding).lstrip("\ufeff")
    header, _, body = text.partition("\n")
    columns = parse_header(path, header, sep)
    names = [c.name for c in columns]
    for name in required:
        if name not in names:
            raise InputError(f"{path}, line 1: no column {name!r} (columns: {', '.join(names)}); add it to the header "
                             f"or name the right column in the settings (USER_ID_FIELD, ITEM_ID_FIELD)")
    if not body.strip():
        raise InputError(f"{path} has a header but no rows: add the data (one row per line, fields separated "
                         f"by {sep!r}) or remove the file")
    check_field_counts(path, body, len(columns), sep)
    wanted = set(names if numeric is None else numeric)
    floats = [c for c in columns if c.type in ("float", "float_seq") and c.name in wanted]
    frame = _frame(text, sep, usecols=[c.spec for c in floats] or [columns[0].spec])
    for column in floats:
        values = frame[column.spec]
        if column.type == "float_seq":
            values = values.str.split().explode().fillna("")
        stripped = values.str.strip()
        bad = pd.to_numeric(stripped, errors="coerce").isna() & (stripped != "")
        if bad.any():
            first = int(bad.to_numpy().nonzero()[0][0])
            row, value = values.index[first], values.iloc[first]  # the frame's row (explode keeps it)
            raise InputError(
                f"{path}, line {int(row) + 2}, column {column.name} ({column.type}): {value!r} is not a number; "
                f"fix the value, or declare the column {column.name}:{column.type.replace('float', 'token')}"
            )
    row_lines, first_line, repeats = [], {}, []
    for number, line in enumerate(body.split("\n"), start=2):
        if not line.strip():
            continue
        line = line.rstrip("\r")
        if line in first_line:
            repeats.append((len(row_lines), first_line[line]))
        else:
            first_line[line] = number
        row_lines.append(number)
    return CheckedFile(path, columns, len(row_lines), _starts_with_quote(body, sep), tuple(row_lines), tuple(repeats))


def quoted_copy_text(path: str | os.PathLike, sep: str = "\t", encoding: str = "utf-8-sig") -> str:
    """The file's text with every field that starts with ``"`` written as a CSV-quoted field.

    RecBole's reader (pandas, default quoting) then reads ``"Stay" 14" x 14"``
    as those characters instead of taking the first quote for CSV quoting.
    """
    text = decode(path, Path(path).read_bytes(), encoding).lstrip("\ufeff")

    def quote(field: str) -> str:
        return '"' + field.replace('"', '""') + '"' if field.startswith('"') else field

    lines = text.split("\n")
    for i, line in enumerate(lines):
        if '"' in line:
            end = "\r" if line.endswith("\r") else ""
            fields = line[: len(line) - len(end)].split(sep)
            lines[i] = sep.join(quote(f) for f in fields) + end
    return "\n".join(lines)


def read_columns(path: str | os.PathLike, names: Sequence[str], sep: str = "\t",
                 encoding: str = "utf-8-sig") -> pd.DataFrame:
    """Raw string values of the columns ``names`` (a missing column is an error naming the file)."""
    path = Path(path)
    columns = read_header(path, sep, encoding)
    specs = {c.name: c.spec for c in columns}
    for name in names:
        if name not in specs:
            raise InputError(f"{path}, line 1: no column {name!r} (columns: {', '.join(specs)})")
    text = decode(path, path.read_bytes(), encoding).lstrip("\ufeff")
    frame = _frame(text, sep, usecols=[specs[n] for n in names])
    frame = frame.rename(columns={specs[n]: n for n in names})[list(names)]
    return frame[(frame != "").any(axis=1)]  # blank lines
