"""Interactions spooled to disk as integer columns, k-core filtered, then written as ``.inter``.

Memory: the raw user and item ids (one dict and one list each, so
O(users + items) strings) and a buffer of :data:`BUFFER_ROWS` rows. The
interactions themselves go to temporary files of 16 bytes per row (int32
user, int32 item, float64 time; +4 for a float32 rating) next to the output
and are read back through ``numpy.memmap`` in chunks, so a source larger than
RAM converts as long as its distinct ids fit (``benchmarks/convert_memory.py``:
the same peak for a 0.4 and a 4 GB review file).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from ur4rec_recbole.convert.writer import AtomicTable, Column, number

BUFFER_ROWS = 1 << 16  # rows held as Python objects at a time (reading and writing)
CHUNK = 1 << 20  # rows per numpy pass over the spooled columns
COLUMNS = {"user": np.int32, "item": np.int32, "time": np.float64, "rating": np.float32}


@dataclass(frozen=True)
class Counts:
    """Interactions, users and items at one stage of a conversion."""

    interactions: int
    users: int
    items: int

    def __str__(self) -> str:
        return f"{self.interactions:,} interactions, {self.users:,} users, {self.items:,} items"

    def as_json(self) -> dict:
        return {"interactions": self.interactions, "users": self.users, "items": self.items}


class InteractionSpool:
    """Collects ``(user, item, time[, rating])`` rows; use as a context manager (removes its files)."""

    def __init__(self, folder: Path, rating: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix=".convert-", dir=folder)
        self.dir = Path(self._tmp.name)
        self.columns = [c for c in COLUMNS if rating or c != "rating"]
        self.user_ids: dict[str, int] = {}
        self.item_ids: dict[str, int] = {}
        self.users: list[str] = []
        self.items: list[str] = []
        self._buffer: dict[str, list] = {c: [] for c in self.columns}
        self._files = {c: open(self.dir / c, "wb") for c in self.columns}
        self.rows = 0
        self.mask: np.ndarray | None = None

    def __enter__(self) -> "InteractionSpool":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._files.values():
            handle.close()
        self.data = None
        self._tmp.cleanup()

    def add(self, user: str, item: str, time: float, rating: float | None = None) -> None:
        uid = self.user_ids.get(user)
        if uid is None:
            uid = self.user_ids[user] = len(self.users)
            self.users.append(user)
        iid = self.item_ids.get(item)
        if iid is None:
            iid = self.item_ids[item] = len(self.items)
            self.items.append(item)
        buffer = self._buffer
        buffer["user"].append(uid)
        buffer["item"].append(iid)
        buffer["time"].append(time)
        if "rating" in buffer:
            buffer["rating"].append(np.nan if rating is None else rating)
        self.rows += 1
        if len(buffer["user"]) >= BUFFER_ROWS:
            self._flush()

    def _flush(self) -> None:
        for name, values in self._buffer.items():
            np.asarray(values, dtype=COLUMNS[name]).tofile(self._files[name])
            values.clear()

    def finish(self) -> Counts:
        """Close the files, map them back; the counts as read."""
        self._flush()
        for handle in self._files.values():
            handle.close()
        self.data = {c: np.memmap(self.dir / c, dtype=COLUMNS[c], mode="r") if self.rows else
                     np.zeros(0, COLUMNS[c]) for c in self.columns}
        self.mask = np.ones(self.rows, dtype=bool)
        return Counts(self.rows, len(self.users), len(self.items))

    def _chunks(self, size: int = CHUNK) -> Iterator[slice]:
        for start in range(0, self.rows, size):
            yield slice(start, min(start + size, self.rows))

    def _degrees(self) -> tuple[np.ndarray, np.ndarray]:
        users = np.zeros(len(self.users), dtype=np.int64)
        items = np.zeros(len(self.items), dtype=np.int64)
        for part in self._chunks():
            keep = self.mask[part]
            users += np.bincount(self.data["user"][part][keep], minlength=len(users))
            items += np.bincount(self.data["item"][part][keep], minlength=len(items))
        return users, items

    def counts(self) -> Counts:
        users, items = self._degrees()
        return Counts(int(self.mask.sum()), int((users > 0).sum()), int((items > 0).sum()))

    def k_core(self, min_user: int, min_item: int) -> int:
        """Drop users with fewer than ``min_user`` and items with fewer than ``min_item`` interactions,
        repeatedly until none is left to drop (a fixed point); returns the number of rounds."""
        rounds = 0
        while min_user > 1 or min_item > 1:
            users, items = self._degrees()
            bad_user, bad_item = (users > 0) & (users < min_user), (items > 0) & (items < min_item)
            if not bad_user.any() and not bad_item.any():
                break
            rounds += 1
            for part in self._chunks():
                self.mask[part] &= ~bad_user[self.data["user"][part]] & ~bad_item[self.data["item"][part]]
        return rounds

    def kept(self) -> tuple[set[str], set[str]]:
        """Raw ids of the users and items that have interactions left."""
        users, items = self._degrees()
        return ({self.users[i] for i in np.flatnonzero(users)}, {self.items[i] for i in np.flatnonzero(items)})

    def write(self, table: AtomicTable) -> None:
        """The kept rows, in source order, as ``user, item, time[, rating]``."""
        with tqdm(total=int(self.mask.sum()), desc=f"writing {table.path.name}", unit=" rows", leave=False,
                  disable=None) as bar:
            for part in self._chunks(BUFFER_ROWS):  # as Python objects: few at a time
                rows = np.flatnonzero(self.mask[part]) + part.start
                columns = [self.data[c][rows] for c in self.columns]
                users, items, times = (c.tolist() for c in columns[:3])
                if len(columns) > 3:  # rating before the time, as in RecBole's own files; NaN: none given
                    ratings = ["" if r != r else number(r) for r in columns[3].tolist()]
                    lines = zip(map(self.users.__getitem__, users), map(self.items.__getitem__, items), ratings,
                                map(number, times))
                else:
                    lines = zip(map(self.users.__getitem__, users), map(self.items.__getitem__, items),
                                map(number, times))
                table.write_cells(lines)
                bar.update(len(rows))


INTER_COLUMNS = (Column("user_id"), Column("item_id"), Column("timestamp", "float"))
RATING_COLUMN = Column("rating", "float")


def inter_columns(rating: bool) -> tuple[Column, ...]:
    """``user_id, item_id, timestamp`` (``rating`` before the time when there is one, as RecBole's files)."""
    return INTER_COLUMNS[:2] + ((RATING_COLUMN,) if rating else ()) + INTER_COLUMNS[2:]
