"""A crash-safe store of LLM answers, keyed by (backend, model, prompt version, prompt hash).

SQLite in WAL mode, one committed transaction per answer: a process killed at
any moment (Ctrl-C, SIGKILL) keeps every answer committed before it died,
the primary key makes duplicates impossible, and SQLite's journal means the
file is never left half-written. Failed prompts are kept apart with their
reason (for the summary and the report) and are retried on the next run.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ur4rec_recbole.io import data_folder_fix

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL,
    prompt_hash TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY, reason TEXT NOT NULL, attempts INTEGER NOT NULL, updated REAL NOT NULL
);
"""


def cache_key(backend: str, model: str, prompt_version: str, prompt_hash: str) -> str:
    """One string per (backend, model, prompt version, prompt text hash)."""
    return hashlib.sha256("\x1f".join((backend, model, prompt_version, prompt_hash)).encode()).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


class AnswerCache:
    """``get``/``put`` answers; ``fail`` records a prompt that produced no usable answer."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path.parent, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            raise PermissionError(f"cannot write the answer cache {self.path}: permission denied; "
                                  f"{data_folder_fix(self.path.parent)}")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one txn per statement
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"answer cache {self.path} is not a usable SQLite file ({err}); "
                             f"move it away to start a fresh cache") from err

    def get(self, key: str) -> CachedAnswer | None:
        row = self._db.execute(
            "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else CachedAnswer(row[0], row[1] or 0, row[2] or 0)

    def put(self, key: str, backend: str, model: str, prompt_version: str, prompt_hash: str,
            text: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Store an answer (committed before returning); a key already present is kept as is."""
        with self._db:  # one transaction: the answer in, any earlier failure of this key out
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, backend, model, prompt_version, prompt_hash, text, prompt_tokens, completion_tokens,
                 time.time()),
            )
            self._db.execute("DELETE FROM failures WHERE key = ?", (key,))

    def fail(self, key: str, reason: str, attempts: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", (key, reason, attempts, time.time()))

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "AnswerCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
