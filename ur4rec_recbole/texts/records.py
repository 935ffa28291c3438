"""Text records on disk: one JSON object per line, with provenance.

Files live next to the atomic files, e.g. ``dataset/ml-100k/``::

    ml-100k.user_pref.template.jsonl   # one preference profile per user
    ml-100k.item_know.template.jsonl   # one knowledge blurb per item

Each line: ``{"token": ..., "text": ..., "backend": ..., "version": ..., ...}``
where ``token`` is the raw RecBole token and ``version`` names the template
or prompt that produced the text. A preference profile also has ``cutoff``
(how many items of the user's training portion it summarises: one user has
up to ``profile_cutoffs`` profiles) and ``fingerprint`` (of exactly those
items, :func:`ur4rec_recbole.texts.profiles.history_fingerprint`), so a run
can tell texts written under another split from its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from ur4rec_recbole.io import data_folder_fix, write_if_changed

USER_KIND = "user_pref"
ITEM_KIND = "item_know"


@dataclass(frozen=True)
class TextRecord:
    """One generated text and where it came from."""

    token: str
    text: str
    backend: str
    version: str
    extra: dict = field(default_factory=dict)
    cutoff: int | None = None  # profiles: the number of training-portion items summarised
    fingerprint: str | None = None  # profiles: fingerprint of those items

    @property
    def key(self) -> str:
        """Identity within a file: the token, with the cut-off for a profile (``u1@12``)."""
        return self.token if self.cutoff is None else f"{self.token}@{self.cutoff}"


def text_path(data_path: str | os.PathLike, dataset: str, kind: str, source: str) -> Path:
    """Where the ``kind`` texts of ``source`` (e.g. ``template``) for ``dataset`` live."""
    return Path(data_path) / f"{dataset}.{kind}.{source}.jsonl"


def records_jsonl(records: Iterable[TextRecord]) -> bytes:
    """The JSONL bytes of ``records``, one object per line (``cutoff``/``fingerprint`` only where set)."""
    lines = []
    for record in records:
        row = {k: v for k, v in asdict(record).items() if v is not None}
        extra = row.pop("extra")
        lines.append(json.dumps({**row, **extra}, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


def write_records(path: str | os.PathLike, records: Iterable[TextRecord]) -> bool:
    """Write records as JSONL atomically, unless the file already holds them; return whether it wrote.

    Readers never see a half-written file, and up-to-date texts are only read
    (a read-only dataset folder works when nothing changes).
    """
    path = Path(path)
    return write_if_changed(path, records_jsonl(records), fix=data_folder_fix(path.parent))


def read_records(path: str | os.PathLike) -> dict[str, TextRecord]:
    """Read a JSONL text file, keyed by :attr:`TextRecord.key`; every malformed line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    records: dict[str, TextRecord] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            missing = [k for k in ("token", "text", "backend", "version") if k not in row]
            if not isinstance(row, dict) or missing:
                raise ValueError(f"{path}:{number}: expected an object with token, text, backend, version; missing {missing}")
            if not isinstance(row["text"], str):
                raise ValueError(f"{path}:{number}: 'text' must be a string, got {type(row['text']).__name__}")
            cutoff = row.pop("cutoff", None)
            if cutoff is not None and (not isinstance(cutoff, int) or isinstance(cutoff, bool) or cutoff < 1):
                raise ValueError(f"{path}:{number}: 'cutoff' must be a positive int, got {cutoff!r}")
            fingerprint = row.pop("fingerprint", None)
            record = TextRecord(
                token=str(row.pop("token")), text=row.pop("text"), backend=str(row.pop("backend")),
                version=str(row.pop("version")), extra=row, cutoff=cutoff,
                fingerprint=None if fingerprint is None else str(fingerprint),
            )
            if record.key in records:
                raise ValueError(f"{path}:{number}: token {record.token!r}"
                                 + (f" with cutoff {cutoff}" if cutoff is not None else "") + " appears twice")
            records[record.key] = record
    return records
