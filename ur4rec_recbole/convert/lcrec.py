"""The LC-Rec JSON layout: ``X.inter.json`` and ``X.item.json`` (``.xz``, ``.gz`` or plain).

Used by several public LLM-recommendation projects (LC-Rec, and the shared
``amazon-office`` data of this project):

- ``X.inter.json``: ``{"user": [item, item, ...]}``, each list in time order;
- ``X.item.json``: ``{"item": {"title", "description", "brand", "categories"}}``
  (``categories`` a ``"general, ..., specific"`` string or a list).

SRC are the two files or the folder that holds them. The source has order,
not times: ``timestamp`` is the position in the user's sequence (0, 1, ...).
Ids are kept as they are. Item columns are those of ``make_atomic.py``
(``title``, ``brand``, ``category`` = most specific, ``categories``,
``description`` of at most ``--max-words`` words), cleaned the same way.

Memory: both files are single JSON objects, read one ``key: value`` pair at a
time (:func:`~ur4rec_recbole.convert.sources.json_object_items`); the
interactions go through the on-disk spool.
"""

from __future__ import annotations

from typing import Any, Iterator

from ur4rec_recbole.convert.amazon import PRODUCT_COLUMNS, product_row
from ur4rec_recbole.convert.base import Converter, register
from ur4rec_recbole.convert.interactions import InteractionSpool
from ur4rec_recbole.convert.sources import RawFile, json_object_items
from ur4rec_recbole.convert.text import check_id
from ur4rec_recbole.errors import InputError


def _find(sources, kind: str) -> RawFile:
    """The ``*.<kind>.json[.xz|.gz|.bz2]`` file among ``sources`` (files, or folders holding them)."""
    found = []
    for source in sources:
        for path in sorted(source.iterdir()) if source.is_dir() else [source]:
            if f".{kind}.json" in path.name:
                found.append(path)
    if len(found) != 1:
        what = "none" if not found else ", ".join(map(str, found))
        raise InputError(f"expected one *.{kind}.json[.xz|.gz] among {', '.join(map(str, sources))}, found {what}")
    return RawFile(found[0])


@register
class LCRec(Converter):
    name = "lcrec"
    summary = "LC-Rec layout: X.inter.json {user: [items in time order]} + X.item.json {item: {title, ...}}"
    item_columns = PRODUCT_COLUMNS
    text_fields = ("title", "brand", "categories", "description")
    profile_fields = ("category", "brand")

    def __init__(self, sources, args) -> None:
        super().__init__(sources, args)
        self.inter, self.items = _find(self.sources, "inter"), _find(self.sources, "item")
        self.inputs = [self.inter, self.items]

    def read_interactions(self, spool: InteractionSpool) -> None:
        for user, sequence, line in json_object_items(self.inter):
            try:
                user = check_id(user, "user id")
                if not isinstance(sequence, list):
                    raise ValueError(f"the value of user {user!r} is a {type(sequence).__name__}, not a list of items")
                items = [check_id(_item_token(item), "item id") for item in sequence]
            except ValueError as err:
                self.bad_line(self.inter, line, str(err))
                continue
            for position, item in enumerate(items):
                spool.add(user, item, float(position))

    def item_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        for token, meta, line in json_object_items(self.items):
            if token not in keep:
                continue
            if not isinstance(meta, dict):
                self.bad_line(self.items, line, f"the value of item {token!r} is a {type(meta).__name__}, "
                                                "not an object")
                continue
            yield product_row(token, meta.get("title"), meta.get("brand"), meta.get("categories"),
                              meta.get("description"), self.args.max_words)


def _item_token(item: Any) -> str:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise ValueError(f"item {item!r} is neither an integer nor a string")
    return str(item)
