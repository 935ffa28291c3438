"""The one writer of converted datasets: atomic files streamed row by row, and their yaml.

:class:`DatasetWriter` opens ``DIR/NAME/NAME.<suffix>`` under temporary
names (:func:`ur4rec_recbole.io.atomic_path`); rows are written as they come
(nothing is held), and only when the whole conversion has succeeded are all
files renamed into place. An error anywhere removes every temporary file, so
a failed conversion leaves the folder as it was.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from ur4rec_recbole.io import atomic_path

SEQ_SEPARATOR = " "  # RecBole's default seq_separator


@dataclass(frozen=True)
class Column:
    """One column of an atomic file and what UR4Rec does with it.

    ``text``: part of the item knowledge text (``item_text_fields``) when any
    row has a value; ``profile``: summarised over a user's history
    (``user_profile_fields``); ``load``: listed in ``load_col`` (an image URL
    column is read by the image tools, not by RecBole).
    """

    name: str
    type: str = "token"  # token, token_seq, float
    text: bool = False
    profile: bool = False
    load: bool = True


def number(value: float) -> str:
    """A float as the shortest text that reads back the same (integers without '.0')."""
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class AtomicTable:
    """Rows of one atomic file; counts, per column, the rows with a value."""

    def __init__(self, handle, path: Path, columns: Sequence[Column]) -> None:
        self.handle, self.path, self.columns = handle, path, tuple(columns)
        self.rows = 0
        self.filled = dict.fromkeys((c.name for c in self.columns), 0)
        handle.write("\t".join(f"{c.name}:{c.type}" for c in self.columns) + "\n")

    def write(self, values: Sequence[Any]) -> None:
        """One row; values already cleaned (``convert.text``): str, float, or a list for ``token_seq``."""
        cells = []
        for column, value in zip(self.columns, values, strict=True):
            if column.type == "float":
                cell = "" if value is None else number(value)
            elif column.type == "token_seq":
                cell = SEQ_SEPARATOR.join(value)
            else:
                cell = value
            if cell:
                self.filled[column.name] += 1
            cells.append(cell)
        self.handle.write("\t".join(cells) + "\n")
        self.rows += 1

    def write_cells(self, rows: Iterable[Sequence[str]]) -> None:
        """Rows of cells already formatted (the spool's interactions): no per-column work."""
        write = self.handle.write
        for cells in rows:
            write("\t".join(cells) + "\n")
            self.rows += 1

    def filled_columns(self) -> list[str]:
        return [name for name, count in self.filled.items() if count]


@dataclass
class DatasetWriter:
    """``DIR/NAME/NAME.{inter,item,user,yaml}``, written atomically as one set (use as a context manager)."""

    out: Path
    name: str
    tables: dict[str, AtomicTable] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.out) / self.name
        self._stack = ExitStack()
        self._stale: list[Path] = []

    def __enter__(self) -> "DatasetWriter":
        self._created = not self.folder.exists()
        self._stack.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)  # renames every file on success, deletes every temp on error
        if exc[0] is None:
            for path in self._stale:
                path.unlink(missing_ok=True)
        elif self._created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()  # a failed first conversion leaves no empty folder behind

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.name}.{suffix}"

    def table(self, suffix: str, columns: Sequence[Column]) -> AtomicTable:
        """Start ``NAME.<suffix>`` (inter, item, user) with these columns."""
        tmp = self._stack.enter_context(atomic_path(self.path(suffix)))
        handle = self._stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n"))
        self.tables[suffix] = AtomicTable(handle, self.path(suffix), columns)
        return self.tables[suffix]

    def yaml(self, settings: Mapping[str, Any], comments: Mapping[str, str], header: Sequence[str]) -> Path:
        """``NAME.yaml``: one setting per line, ``# (type) meaning`` beside it, ``header`` lines on top."""
        lines = [f"# {line}" for line in header]
        for key, value in settings.items():
            if isinstance(value, Mapping):
                lines.append(f"{key}:".ljust(31) + f" # {comments[key]}")
                lines += [f"  {k}: {_flow(v)}" for k, v in value.items()]
            else:
                lines.append(f"{key}: {_flow(value)}".ljust(31) + f" # {comments[key]}")
        tmp = self._stack.enter_context(atomic_path(self.path("yaml")))
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.path("yaml")

    def remove_stale(self, suffixes: Sequence[str]) -> list[Path]:
        """``NAME.<suffix>`` files of an earlier conversion that this one does not write: deleted on success."""
        self._stale = [self.path(s) for s in suffixes if s not in self.tables and self.path(s).is_file()]
        return self._stale


def _flow(value: Any) -> str:
    """A yaml value on one line (``[a, b]``, ``{a: b}``, a quoted string where needed)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False).strip().removesuffix(
        "\n...").strip()
