"""What every converter shares: the registry of formats, the ``Converter`` base, one conversion path.

A format is a small :class:`Converter` subclass registered with
:func:`register`: it reads interactions into an
:class:`~ur4rec_recbole.convert.interactions.InteractionSpool` and yields item
(and user) rows; :func:`run_conversion` does the rest the same way for all
formats: k-core filter, ``.inter``, item and user rows only for what is left
(plus an empty row for every kept item or user without one, so RecBole's
``filter_inter_by_user_or_item`` drops nothing), ``NAME.yaml``, counts.
"""

from __future__ import annotations

import argparse
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

from ur4rec_recbole.convert.interactions import Counts, InteractionSpool, inter_columns
from ur4rec_recbole.convert.sources import RawFile, check_sources
from ur4rec_recbole.convert.writer import Column, DatasetWriter
from ur4rec_recbole.errors import InputError

FORMATS: dict[str, type["Converter"]] = {}
SHOWN_BAD_LINES = 10  # bad lines printed one by one with --skip-bad-lines; the rest are counted


def register(cls: type["Converter"]) -> type["Converter"]:
    """Class decorator: make ``cls`` available as ``convert <cls.name>``."""
    FORMATS[cls.name] = cls
    return cls


class Converter(ABC):
    """One source format. Subclasses set the class attributes and implement :meth:`read_interactions`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for ``--help``
    min_user: ClassVar[int] = 0  # k-core defaults of this format
    min_item: ClassVar[int] = 0
    item_columns: ClassVar[tuple[Column, ...]] = ()  # after item_id
    user_columns: ClassVar[tuple[Column, ...]] = ()  # after user_id; none: no .user file
    text_fields: ClassVar[tuple[str, ...]] = ()  # item_text_fields, in order (those with a value are kept)
    profile_fields: ClassVar[tuple[str, ...]] = ()  # user_profile_fields, in order
    labels: ClassVar[dict[str, str]] = {}  # text_field_labels
    image_field: ClassVar[str | None] = None  # item column of image URLs (item_image_field)

    def __init__(self, sources: Sequence[Path], args: argparse.Namespace) -> None:
        check_sources(list(sources))
        self.sources = list(sources)
        self.args = args
        self.bad_lines = 0
        self.inputs: list[RawFile] = []  # the files read, for the report

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Format-specific flags."""

    @property
    def rating(self) -> bool:
        """Whether ``.inter`` gets a rating column."""
        return False

    @abstractmethod
    def read_interactions(self, spool: InteractionSpool) -> None:
        """Stream every interaction into ``spool`` (raw user id, raw item id, time[, rating])."""

    def item_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        """``[item token, *values of item_columns]`` for items in ``keep``, streamed."""
        return iter(())

    def user_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        """``[user token, *values of user_columns]`` for users in ``keep``, streamed."""
        return iter(())

    def bad_line(self, source: RawFile, line: int, reason: str) -> None:
        """Stop with ``file:line: reason``, or with ``--skip-bad-lines`` count it and go on."""
        message = f"{source}:{line}: {reason}"
        if not self.args.skip_bad_lines:
            raise InputError(f"{message} (--skip-bad-lines skips such lines)")
        self.bad_lines += 1
        if self.bad_lines <= SHOWN_BAD_LINES:
            print(f"skipped {message}", file=sys.stderr)


@dataclass
class Report:
    """What a conversion read, kept and wrote (printed by the command, returned by its ``main``)."""

    format: str
    folder: Path
    inputs: list[str]
    read: Counts
    kept: Counts
    min_user: int
    min_item: int
    rounds: int
    bad_lines: int
    rows: dict[str, int] = field(default_factory=dict)
    missing_rows: dict[str, int] = field(default_factory=dict)  # kept items/users without source metadata
    settings: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"format": self.format, "folder": str(self.folder), "inputs": self.inputs,
                "read": self.read.as_json(), "kept": self.kept.as_json(), "min_user": self.min_user,
                "min_item": self.min_item, "k_core_rounds": self.rounds, "bad_lines": self.bad_lines,
                "rows": self.rows, "missing_rows": self.missing_rows, "settings": self.settings}

    def describe(self) -> list[str]:
        core = (f"after the {self.min_user}/{self.min_item}-core filter ({self.rounds} rounds)"
                if self.min_user > 1 or self.min_item > 1 else "no k-core filter")
        lines = [f"read:  {self.read}" + (f" ({self.bad_lines} bad lines skipped)" if self.bad_lines else ""),
                 f"kept:  {self.kept}, {core}"]
        for kind, count in self.rows.items():
            if kind != "inter":
                missing = self.missing_rows.get(kind, 0)
                lines.append(f"{kind}:  {count:,} rows" + (f", {missing:,} of them empty (no metadata in the source)"
                                                            if missing else ""))
        lines.append(f"text fields: {self.settings.get('item_text_fields')}; "
                     f"profile fields: {self.settings.get('user_profile_fields')}")
        return lines


SETTING_COMMENTS = {
    "USER_ID_FIELD": "(str) User id column of the .inter file.",
    "ITEM_ID_FIELD": "(str) Item id column.",
    "RATING_FIELD": "(str) Rating column.",
    "TIME_FIELD": "(str) Time column; sequences are ordered by it.",
    "load_col": "(dict) Columns to load from each atomic file.",
    "item_text_fields": "(list) .item columns that make an item's knowledge text.",
    "user_profile_fields": "(list) .item columns summarised over a user's training history.",
    "text_field_labels": "(dict) Display names of fields in texts.",
    "item_image_field": "(str) .item column of image URLs; images are fetched into images/ by "
                        "`encode --download-images`.",
}


def dataset_settings(converter: Converter, rating: bool, filled: set[str], users: bool) -> dict[str, Any]:
    """The ``NAME.yaml`` settings: ids, time, load_col, text and profile fields that have values, images."""
    inter = [c.name for c in inter_columns(rating)]
    load_col = {"inter": inter, "item": ["item_id"] + [c.name for c in converter.item_columns if c.load]}
    if users:
        load_col["user"] = ["user_id"] + [c.name for c in converter.user_columns if c.load]
    settings: dict[str, Any] = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id"}
    if rating:
        settings["RATING_FIELD"] = "rating"
    settings["TIME_FIELD"] = "timestamp"
    settings["load_col"] = load_col
    settings["item_text_fields"] = [f for f in converter.text_fields if f in filled]
    settings["user_profile_fields"] = [f for f in converter.profile_fields if f in filled]
    labels = {k: v for k, v in converter.labels.items() if k in filled}
    if labels:
        settings["text_field_labels"] = labels
    if converter.image_field and converter.image_field in filled:
        settings["item_image_field"] = converter.image_field
    return settings


def _write_rows(table, rows: Iterable[list[Any]], keep: set[str], order: Sequence[str],
                columns: Sequence[Column]) -> int:
    """Rows for kept tokens (first occurrence wins), then an empty row for each kept token without one."""
    written: set[str] = set()
    for row in rows:
        token = row[0]
        if token in keep and token not in written:
            table.write(row)
            written.add(token)
    empty = [[] if c.type == "token_seq" else None if c.type == "float" else "" for c in columns]
    missing = 0
    for token in order:
        if token in keep and token not in written:
            table.write([token, *empty])
            missing += 1
    return missing


def run_conversion(converter: Converter, name: str, out: Path, min_user: int, min_item: int,
                   command: str) -> Report:
    """Read, filter and write ``out/name/name.{inter,item[,user],yaml}``; nothing is left half-written."""
    out.mkdir(parents=True, exist_ok=True)
    with InteractionSpool(out, rating=converter.rating) as spool:
        converter.read_interactions(spool)
        read = spool.finish()
        if not read.interactions:
            raise InputError(f"no interactions were read from {', '.join(map(str, converter.inputs))}")
        rounds = spool.k_core(min_user, min_item)
        kept = spool.counts()
        if not kept.interactions:
            raise InputError(f"no interaction is left after the {min_user}/{min_item}-core filter ({read}): "
                             f"lower --min-user/--min-item")
        keep_users, keep_items = spool.kept()
        report = Report(converter.name, out / name, [str(f) for f in converter.inputs], read, kept, min_user,
                        min_item, rounds, 0)
        with DatasetWriter(out, name) as writer:
            spool.write(writer.table("inter", inter_columns(converter.rating)))
            item_table = writer.table("item", (Column("item_id"), *converter.item_columns))
            report.missing_rows["item"] = _write_rows(item_table, converter.item_rows(keep_items), keep_items,
                                                      spool.items, converter.item_columns)
            filled = set(item_table.filled_columns())
            if converter.user_columns:
                user_table = writer.table("user", (Column("user_id"), *converter.user_columns))
                report.missing_rows["user"] = _write_rows(user_table, converter.user_rows(keep_users), keep_users,
                                                          spool.users, converter.user_columns)
            report.settings = dataset_settings(converter, converter.rating, filled, bool(converter.user_columns))
            report.bad_lines = converter.bad_lines
            writer.remove_stale(["user"])
            writer.yaml(report.settings, SETTING_COMMENTS, [
                f"{name}: RecBole atomic files written by `{command}`",
                f"from {', '.join(report.inputs)}",
                *report.describe()[:2],
            ])
            report.rows = {suffix: table.rows for suffix, table in writer.tables.items()}
    return report
