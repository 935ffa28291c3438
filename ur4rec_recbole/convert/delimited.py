"""Any delimited file with a header: ``csv FILE --user COL --item COL [--time COL] [--rating COL]``.

Items may come with a second file: ``--item-file F --text-cols a,b``
(``--item-key`` is its id column, default the ``--item`` name); the text
columns become ``.item`` columns (cleaned as every converter's text) and
``item_text_fields``; ``--profile-cols`` (a subset) become
``user_profile_fields``. Column names are made RecBole-safe (lower case,
``[a-z0-9_]``: ``Product Name`` -> ``product_name``).

``--time`` holds numbers (e.g. Unix seconds) or ISO dates (``2021-03-04``,
``2021-03-04T10:00:00``; naive times read as UTC). Without ``--time``,
``timestamp`` is each user's position in file order. The separator is
guessed from the header line (tab, comma, semicolon or ``|``) unless
``--sep`` says otherwise; fields are parsed with the ``csv`` module (quoted
fields allowed).

Memory: the on-disk interaction spool; without ``--time``, a counter per user;
the item file is streamed.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ur4rec_recbole.convert.base import Converter, register
from ur4rec_recbole.convert.interactions import InteractionSpool
from ur4rec_recbole.convert.sources import RawFile
from ur4rec_recbole.convert.text import check_id, clean_text
from ur4rec_recbole.convert.writer import Column
from ur4rec_recbole.errors import InputError

SEPARATORS = ("\t", ",", ";", "|")
RESERVED = ("user_id", "item_id", "timestamp", "rating")


def safe_name(column: str) -> str:
    """A RecBole field name for a CSV header (no ':', tabs or spaces)."""
    name = re.sub(r"[^a-z0-9_]+", "_", column.strip().lower()).strip("_")
    return name or "column"


def parse_time(text: str) -> float:
    """Seconds from a number or an ISO 8601 date/time (naive = UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r} is neither a number nor an ISO date (2021-03-04[T10:00:00])") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class _Table:
    """A delimited file with a header: column positions by name, rows with their line numbers."""

    def __init__(self, raw: RawFile, sep: str | None, encoding: str) -> None:
        self.raw, self.encoding = raw, encoding
        header = next((line for _, line in raw.lines(encoding=encoding) if line.strip()), None)
        if header is None:
            raise InputError(f"{raw}: empty file (a header line is expected)")
        self.sep = sep or max(SEPARATORS, key=header.count)
        self.header = next(csv.reader([header], delimiter=self.sep))

    def index(self, column: str, flag: str) -> int:
        if column not in self.header:
            raise InputError(f"{self.raw}: {flag} {column!r} is not a column of its header "
                             f"({', '.join(self.header)}; separator {self.sep!r}, --sep to change it)")
        return self.header.index(column)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        # newlines put back: a quoted field may span lines
        reader = csv.reader((line + "\n" for _, line in self.raw.lines(encoding=self.encoding)), delimiter=self.sep)
        next(reader, None)
        for row in reader:
            if row:
                yield reader.line_num, row


@register
class Delimited(Converter):
    name = "csv"
    summary = "any delimited file with a header: --user COL --item COL [--time COL] [--item-file F --text-cols a,b]"

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--user", required=True, metavar="COL", help="user id column")
        parser.add_argument("--item", required=True, metavar="COL", help="item id column")
        parser.add_argument("--time", metavar="COL", help="time column (numbers or ISO dates); default: file order")
        parser.add_argument("--rating", metavar="COL", help="rating column (optional)")
        parser.add_argument("--sep", help="field separator (default: guessed from the header)")
        parser.add_argument("--encoding", default="utf-8", help="text encoding of the files (default utf-8)")
        parser.add_argument("--item-file", type=Path, metavar="F", help="delimited file of item attributes")
        parser.add_argument("--item-key", metavar="COL", help="item id column of --item-file (default: --item)")
        parser.add_argument("--text-cols", default="", metavar="a,b",
                            help="--item-file columns that describe items (item_text_fields)")
        parser.add_argument("--profile-cols", default="", metavar="a,b",
                            help="of those, the ones summarised over a user's history (user_profile_fields)")

    def __init__(self, sources, args) -> None:
        super().__init__(sources, args)
        if len(self.sources) != 1:
            raise InputError(f"csv takes one interaction file, got {len(self.sources)}: "
                             f"{', '.join(map(str, self.sources))} (items go in --item-file)")
        sep = args.sep.encode().decode("unicode_escape") if args.sep else None  # --sep '\t'
        self.table = _Table(RawFile(self.sources[0]), sep, args.encoding)
        self.inputs = [self.table.raw]
        self.positions = {flag: self.table.index(getattr(args, flag), f"--{flag}")
                          for flag in ("user", "item", "time", "rating") if getattr(args, flag)}
        text_cols = [c for c in args.text_cols.split(",") if c.strip()]
        profile_cols = [c for c in args.profile_cols.split(",") if c.strip()]
        if (text_cols or profile_cols) and args.item_file is None:
            raise InputError("--text-cols/--profile-cols name columns of --item-file, which is not given")
        if not set(profile_cols) <= set(text_cols):
            raise InputError(f"--profile-cols {profile_cols} must be among --text-cols {text_cols}")
        self.items: _Table | None = None
        if args.item_file is not None:
            self.items = _Table(RawFile(args.item_file), sep, args.encoding)
            self.inputs.append(self.items.raw)
            self.item_key = self.items.index(args.item_key or args.item, "--item-key")
            self.text_positions = [self.items.index(c, "--text-cols") for c in text_cols]
        names = [safe_name(c) for c in text_cols]
        clash = [n for n in names if n in RESERVED or names.count(n) > 1]
        if clash:
            raise InputError(f"--text-cols {text_cols} give the RecBole column names {names}; {clash[0]!r} is "
                             f"reserved or repeated: rename that column in {args.item_file}")
        self.item_columns = tuple(Column(n) for n in names)
        self.text_fields = tuple(names)
        self.profile_fields = tuple(safe_name(c) for c in profile_cols)

    @property
    def rating(self) -> bool:
        return "rating" in self.positions

    def read_interactions(self, spool: InteractionSpool) -> None:
        at = self.positions
        width = max(at.values()) + 1
        order: dict[str, int] = {}
        for line, row in self.table.rows():
            try:
                if len(row) < width:
                    raise ValueError(f"{len(row)} fields, but the header names column {width}")
                user = check_id(row[at["user"]], f"user id ({self.args.user})")
                item = check_id(row[at["item"]], f"item id ({self.args.item})")
                if "time" in at:
                    time = parse_time(row[at["time"]])
                else:
                    time = order[user] = order.get(user, -1) + 1
                rating = None
                if "rating" in at and row[at["rating"]].strip():
                    rating = float(row[at["rating"]])
            except ValueError as err:
                self.bad_line(self.table.raw, line, str(err))
                continue
            spool.add(user, item, float(time), rating)

    def item_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        if self.items is None:
            return
        width = max([self.item_key, *self.text_positions]) + 1
        for line, row in self.items.rows():
            if len(row) < width:
                self.bad_line(self.items.raw, line, f"{len(row)} fields, but the header names column {width}")
                continue
            token = row[self.item_key].strip()
            if token in keep:
                yield [token, *(clean_text(row[i], self.args.max_words) for i in self.text_positions)]
