"""Amazon Reviews 2014, 2018 and 2023: review files and metadata files, ``.gz`` or plain.

SRC are review and metadata files in any order (each is recognised by its
first record), e.g. ``reviews_Beauty_5.json.gz meta_Beauty.json.gz`` (2014,
https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html),
``Beauty_5.json.gz meta_Beauty.json.gz`` (2018,
https://nijianmo.github.io/amazon/) or ``Beauty.jsonl.gz meta_Beauty.jsonl.gz``
(2023, https://amazon-reviews-2023.github.io/):

- reviews: ``reviewerID``/``asin``/``unixReviewTime``/``overall`` (2014, 2018) or
  ``user_id``/``parent_asin``/``timestamp`` (milliseconds)/``rating`` (2023);
- metadata: one record per line, JSON (2018, 2023) or a Python literal (2014,
  read with ``ast.literal_eval``, never ``eval``); ``title``, ``brand`` (2023:
  ``store``), categories (2014 ``categories`` lists, 2018 ``category``, 2023
  ``categories``/``main_category``), ``description``, ``feature(s)`` and images
  (``imUrl``; ``imageURLHighRes``; the first ``large`` of ``images``).

Users and items are k-core filtered (``--min-user``/``--min-item``, 5/5 by
default) until every user and item has enough interactions. Item columns:
``title``, ``brand``, ``category`` (most specific), ``categories`` (the path(s),
flattened), ``description`` and ``features`` (HTML unescaped and stripped, at
most ``--max-words`` words each) and ``image_url``.

Memory: the on-disk interaction spool (the ids of users and items, not the
reviews: it grows with the number of distinct users and items, not with the
size of the files); metadata is streamed and only rows of kept items are
written.
"""

from __future__ import annotations

import ast
import json
from typing import Any, Iterator

from ur4rec_recbole.convert.base import Converter, register
from ur4rec_recbole.convert.interactions import InteractionSpool
from ur4rec_recbole.convert.sources import RawFile
from ur4rec_recbole.convert.text import check_id, clean_list, clean_text
from ur4rec_recbole.convert.writer import Column
from ur4rec_recbole.errors import InputError

PRODUCT_COLUMNS = (Column("title"), Column("brand"), Column("category"), Column("categories"), Column("description"))
REVIEW_KEYS = ({"reviewerID", "asin"}, {"user_id", "parent_asin"}, {"user_id", "asin"})


def parse_record(line: str) -> dict:
    """A JSON object, or a Python dict literal (the 2014 metadata); ValueError otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        why = f"{err.msg} at column {err.colno}"
        if not line.lstrip().startswith("{"):
            raise ValueError(f"not a JSON object ({why})") from None
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as literal_err:
            reason = getattr(literal_err, "msg", None) or str(literal_err).splitlines()[0] if str(literal_err) else ""
            raise ValueError(f"neither JSON ({why}) nor a Python literal ({reason or type(literal_err).__name__})") \
                from None
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, found {type(record).__name__}")
    return record


def category_path(value: Any) -> list[str]:
    """Categories as a list, most general first: a ``"a, b, c"`` string, a list, or 2014's list of lists.

    A string is split at every comma and kept as is (a name with a comma in it becomes two, as in the
    LC-Rec files' own ``make_atomic.py``); lists keep their names, repeats dropped.
    """
    if isinstance(value, str):
        return [part for part in (clean_text(c) for c in value.split(",")) if part]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        return clean_list(c for path in value for c in path)  # 2014: every path, flattened, repeats dropped
    return clean_list(value or [])


def most_specific(value: Any) -> str:
    """The last category of the first path (2014 lists several paths; the first is the product's own)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        value = value[0]
    path = category_path(value)
    return path[-1] if path else ""


def product_row(token: str, title: Any, brand: Any, categories: Any, description: Any, max_words: int) -> list[str]:
    """``[token, title, brand, category, categories, description]`` cleaned as the LC-Rec layout's make_atomic.py."""
    return [token, clean_text(title, max_words), clean_text(brand, max_words), most_specific(categories),
            ", ".join(category_path(categories)), clean_text(description, max_words)]


def first_image(record: dict) -> str:
    """The first large image URL of a metadata record (2014 ``imUrl``, 2018 ``imageURLHighRes``, 2023 ``images``)."""
    candidates: list[Any] = [record.get("imUrl"), *(record.get("imageURLHighRes") or []),
                             *(record.get("imageURL") or [])]
    images = record.get("images")
    if isinstance(images, dict):  # column layout: {"large": [...], ...}
        candidates += list(images.get("large") or []) + list(images.get("hi_res") or [])
    elif isinstance(images, list):
        candidates += [image.get("large") or image.get("hi_res") for image in images if isinstance(image, dict)]
    for url in candidates:
        if isinstance(url, str) and url.startswith(("http://", "https://")) and not any(c.isspace() for c in url):
            return url
    return ""


@register
class Amazon(Converter):
    name = "amazon"
    summary = "Amazon Reviews 2014/2018/2023 review and metadata files (.json, .jsonl, .gz), k-core filtered"
    min_user = 5
    min_item = 5
    item_columns = (*PRODUCT_COLUMNS, Column("features"), Column("image_url", load=False))
    text_fields = ("title", "brand", "categories", "description", "features")
    profile_fields = ("category", "brand")
    image_field = "image_url"

    def __init__(self, sources, args) -> None:
        super().__init__(sources, args)
        files = [RawFile(p) for source in self.sources
                 for p in (sorted(f for f in source.iterdir() if f.is_file()) if source.is_dir() else [source])]
        self.reviews: list[RawFile] = []
        self.metadata: list[RawFile] = []
        for raw in files:
            (self.reviews if self._is_reviews(raw) else self.metadata).append(raw)
        if not self.reviews:
            raise InputError(f"none of {', '.join(map(str, files))} holds reviews (records with reviewerID/asin "
                             f"or user_id/parent_asin)")
        self.inputs = self.reviews + self.metadata

    @property
    def rating(self) -> bool:
        return True

    def _is_reviews(self, raw: RawFile) -> bool:
        """Whether ``raw`` is a review file, judged by its first record."""
        for lineno, line in raw.lines():
            if not line.strip():
                continue
            try:
                record = parse_record(line)
            except ValueError as err:
                raise InputError(f"{raw}:{lineno}: {err}; is this an Amazon review or metadata file?") from None
            if any(keys <= record.keys() for keys in REVIEW_KEYS):
                return True
            if "asin" in record or "parent_asin" in record:
                return False
            raise InputError(f"{raw}:{lineno}: neither a review (reviewerID/asin, user_id/parent_asin) nor "
                             f"metadata (asin, parent_asin): keys are {sorted(record)[:12]}")
        raise InputError(f"{raw}: empty file")

    def _records(self, raw: RawFile) -> Iterator[tuple[int, dict]]:
        for lineno, line in raw.lines():
            if not line.strip():
                continue
            try:
                yield lineno, parse_record(line)
            except ValueError as err:
                self.bad_line(raw, lineno, str(err))

    def read_interactions(self, spool: InteractionSpool) -> None:
        for raw in self.reviews:
            for lineno, record in self._records(raw):
                try:
                    user = check_id(str(record.get("reviewerID") or record.get("user_id") or ""), "user id")
                    item = check_id(str(record.get("parent_asin") or record.get("asin") or ""), "item id")
                    time = record.get("unixReviewTime", record.get("timestamp"))
                    if isinstance(time, bool) or not isinstance(time, (int, float, str)):
                        raise ValueError("no unixReviewTime/timestamp")
                    time = float(time)
                    rating = record.get("overall", record.get("rating"))
                    rating = None if rating is None else float(rating)
                except (TypeError, ValueError) as err:
                    self.bad_line(raw, lineno, str(err))
                    continue
                spool.add(user, item, time, rating)

    def item_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        max_words = self.args.max_words
        for raw in self.metadata:
            for _, record in self._records(raw):
                token = str(record.get("parent_asin") or record.get("asin") or "").strip()
                if token not in keep:
                    continue
                details = record.get("details")
                brand = (record.get("brand") or record.get("store")
                         or (details.get("Brand") if isinstance(details, dict) else None))
                categories = record.get("categories") or record.get("category") or record.get("main_category")
                row = product_row(token, record.get("title"), brand, categories, record.get("description"), max_words)
                row += [clean_text(record.get("features") or record.get("feature"), max_words), first_image(record)]
                yield row

