"""Raw input files: plain, ``.gz``, ``.xz``, ``.bz2`` or a member of a ``.zip``, read as a stream.

A :class:`RawFile` yields ``(line number, line)`` pairs with a tqdm bar over
the bytes read, so no converter holds a whole source file in memory.
:func:`json_object_items` reads a top-level JSON object one ``key: value``
pair at a time (the LC-Rec layout stores whole datasets as one object).
Bad input raises :class:`~ur4rec_recbole.errors.InputError` naming
``file:line``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from tqdm import tqdm

from ur4rec_recbole.errors import InputError

COMPRESSED = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
COMPRESSION_ERRORS = (EOFError, OSError, lzma.LZMAError, zipfile.BadZipFile, UnicodeDecodeError)


@dataclass(frozen=True)
class RawFile:
    """A source file on disk, or ``member`` of the zip archive ``path``."""

    path: Path
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    @property
    def name(self) -> str:
        """The file's own name, compression suffix removed (``ratings.dat``, ``Beauty.jsonl``)."""
        name = Path(self.member or self.path).name
        stem, suffix = os.path.splitext(name)
        return stem if suffix in COMPRESSED else name

    def size(self) -> int:
        """Bytes the progress bar counts: the member's uncompressed size, else the file's size on disk."""
        if self.member:
            with zipfile.ZipFile(self.path) as archive:
                return archive.getinfo(self.member).file_size
        return self.path.stat().st_size

    def lines(self, encoding: str = "utf-8", fallback: str | None = None,
              desc: str | None = None) -> Iterator[tuple[int, str]]:
        """``(line number, line without its newline)``, 1-based, with a tqdm bar over the bytes read.

        A line that is not ``encoding`` is decoded as ``fallback`` when given (``latin-1`` never fails),
        else it stops the conversion with ``file:line``.
        """
        lineno = 0
        with self.opened() as (stream, progress), tqdm(total=self.size(), unit="B", unit_scale=True,
                                                       desc=desc or self.name, leave=False, disable=None) as bar:
            try:
                for lineno, raw_line in enumerate(stream, start=1):
                    if lineno % 8192 == 0:
                        bar.n = progress()
                        bar.refresh()
                    try:
                        line = raw_line.decode(encoding)
                    except UnicodeDecodeError as err:
                        if fallback is not None:
                            line = raw_line.decode(fallback)
                        else:
                            raise InputError(f"{self}:{lineno}: not {encoding} text ({err.reason} at byte "
                                             f"{err.start}); is this the right file?") from None
                    yield lineno, line.rstrip("\r\n")
            except COMPRESSION_ERRORS as err:
                raise InputError(f"{self}: cannot be read after line {lineno}: {err}") from None

    @contextmanager
    def opened(self) -> Iterator[tuple[IO[bytes], Callable[[], int]]]:
        """The decompressed byte stream, and a function giving the bytes read so far for a progress bar."""
        with ExitStack() as stack:
            try:
                if self.member:
                    archive = stack.enter_context(zipfile.ZipFile(self.path))
                    stream = stack.enter_context(archive.open(self.member))
                    raw = stream
                else:
                    raw = stack.enter_context(open(self.path, "rb"))
                    opener = COMPRESSED.get(self.path.suffix)
                    stream = stack.enter_context(opener(raw)) if opener else raw
            except FileNotFoundError:
                raise InputError(f"{self}: no such file") from None
            except COMPRESSION_ERRORS as err:
                raise InputError(f"{self}: cannot be opened: {err}") from None
            yield stream, raw.tell


def locate(sources: list[Path], filename: str) -> RawFile | None:
    """``filename`` (or it compressed) among ``sources``: a file, a folder (or its subfolders), a zip."""
    wanted = {filename} | {filename + suffix for suffix in COMPRESSED}
    for source in sources:
        if source.is_dir():
            for depth in ("", "*/"):
                for name in sorted(wanted):
                    found = sorted(source.glob(depth + name))
                    if found:
                        return RawFile(found[0])
        elif source.suffix == ".zip" and source.is_file():
            with zipfile.ZipFile(source) as archive:
                members = [m for m in archive.namelist() if Path(m).name in wanted]
            if members:
                return RawFile(source, sorted(members, key=len)[0])
        elif source.name in wanted:
            return RawFile(source)
    return None


def check_sources(sources: list[Path]) -> None:
    """Every source exists (one line naming the first that does not)."""
    for source in sources:
        if not source.exists():
            raise InputError(f"{source}: no such file or folder")


_WHITESPACE = " \t\r\n"


def json_object_items(source: RawFile, chunk_chars: int = 1 << 20) -> Iterator[tuple[str, Any, int]]:
    """``(key, value, line)`` of the top-level JSON object in ``source``, one pair in memory at a time."""
    decoder = json.JSONDecoder()
    with source.opened() as (stream, progress), tqdm(total=source.size(), unit="B", unit_scale=True,
                                                     desc=source.name, leave=False, disable=None) as bar:
        text = io.TextIOWrapper(stream, encoding="utf-8")
        reader = _Buffer(text, chunk_chars, lambda: bar.update(progress() - bar.n))

        def fail(message: str, pos: int | None = None) -> InputError:
            return InputError(f"{source}:{reader.line_at(reader.pos if pos is None else pos)}: {message}")

        def value():
            while True:
                reader.skip_ws()
                try:
                    parsed, end = decoder.raw_decode(reader.buf, reader.pos)
                except json.JSONDecodeError as err:
                    if reader.fill():
                        continue
                    raise fail(f"not valid JSON: {err.msg}", err.pos) from None
                if end == len(reader.buf) and reader.fill():  # a number may go on in the next chunk
                    continue
                reader.pos = end
                return parsed

        try:
            reader.fill()
            reader.skip_ws()
            if not reader.take("{"):
                raise fail("expected a JSON object ({...}) at the top level")
            reader.skip_ws()
            if reader.take("}"):
                return
            while True:
                reader.skip_ws()
                line = reader.line_at(reader.pos)
                key = value()
                if not isinstance(key, str):
                    raise fail(f"expected a string key, found {key!r}")
                reader.skip_ws()
                if not reader.take(":"):
                    raise fail(f"expected ':' after the key {key!r}")
                yield key, value(), line
                reader.skip_ws()
                if reader.take("}"):
                    break
                if not reader.take(","):
                    raise fail("expected ',' or '}' after a value")
            reader.skip_ws()
            if reader.pos < len(reader.buf):
                raise fail("unexpected text after the end of the JSON object")
        except UnicodeDecodeError as err:
            raise InputError(f"{source}: not UTF-8 text ({err.reason}); is this the right file?") from None
        except COMPRESSION_ERRORS as err:
            raise InputError(f"{source}: cannot be read: {err}") from None


class _Buffer:
    """A sliding text window over a stream: the part not yet parsed, and the line it starts on."""

    def __init__(self, handle: IO[str], chunk_chars: int, progress: Callable[[], Any]) -> None:
        self.handle, self.chunk, self.progress = handle, chunk_chars, progress
        self.buf, self.pos, self.first_line, self.eof = "", 0, 1, False

    def fill(self) -> bool:
        """Drop the parsed part, read one more chunk; False at the end of the stream."""
        if self.eof:
            return False
        self.first_line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:]
        self.pos = 0
        chunk = self.handle.read(self.chunk)
        self.progress()
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def skip_ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return

    def take(self, char: str) -> bool:
        if self.pos < len(self.buf) and self.buf[self.pos] == char:
            self.pos += 1
            return True
        return False

    def line_at(self, pos: int) -> int:
        return self.first_line + self.buf.count("\n", 0, pos)
