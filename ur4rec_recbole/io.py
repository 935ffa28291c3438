"""The ground floor: atomic file writes, JSON-able values, content hashes, the machine.

Every file this package writes goes through :func:`atomic_path` (temp file in
the same folder, then ``os.replace``), so a reader never sees a half-written
file and a crash leaves only the previous version. Nothing here imports
RecBole or any other module of the package.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, fix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it.

    The folder is created when missing. A folder that cannot be written
    raises :class:`PermissionError` naming ``path`` and ``fix`` (what to do
    instead; by default, make the folder writable).
    """
    path = Path(path)
    fix = fix or f"make {path.parent} writable"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            raise
        raise PermissionError(f"cannot create the folder {path.parent} for {path.name}: {_why(err)}; "
                              f"{fix}") from err
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        _unlink_quietly(tmp)
        if err.errno not in NOT_WRITABLE:
            raise
        raise PermissionError(f"cannot write {path}: {_why(err)}; {fix}") from err
    except BaseException:
        _unlink_quietly(tmp)
        raise


# a folder that cannot be written: no permission, a read-only file system (EROFS is an OSError, not a
# PermissionError), a full disk or quota
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _why(err: OSError) -> str:
    return {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded"}.get(err.errno, "permission denied")


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # on a read-only file system there is nothing to remove
        pass


def data_folder_fix(folder: str | os.PathLike) -> str:
    """What to do when the dataset folder (texts, vectors next to the atomic files) cannot be written."""
    folder = Path(folder)
    return (f"the dataset folder {folder} is read-only: copy it to a writable place and pass "
            f"--data_path=<the folder that holds the copy of {folder.name}/>")


def write_bytes(path: str | os.PathLike, data: bytes, fix: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, fix) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, fix: str | None = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), fix)


def write_if_changed(path: str | os.PathLike, data: bytes, fix: str | None = None) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes.

    Returns whether it wrote. Up-to-date files are only read, so a read-only
    folder works as long as nothing in it has to change.
    """
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_bytes(path, data, fix)
    return True


def write_json(path: str | os.PathLike, payload: Any, fix: str | None = None) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=False), fix)


def write_result_files(path: str | os.PathLike, result: Any, table: str) -> None:
    """A benchmark's result: ``result`` as JSON at ``path``, ``table`` as markdown beside it (``.md``), printed."""
    write_json(path, result)
    write_text(Path(path).with_suffix(".md"), table)
    print(table)


def plain_value(value: Any) -> Any:
    """Turn a value into str/int/float/bool/None/list/dict only (enums, devices, numpy scalars)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain_value(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return plain_value(value.item())
        except (ValueError, RuntimeError):
            pass
    return str(value)


def plain_config(config) -> dict:
    """A RecBole config's final settings as JSON-able primitives."""
    return {str(k): plain_value(v) for k, v in config.final_config_dict.items()}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(header: str, pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Order-independent SHA-256 of a header and (key, value) pairs: the key of every content cache."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    digest = hashlib.sha256(header.encode())
    for key, value in sorted(items):
        digest.update(b"\0" + key.encode() + b"\1" + value.encode())
    return digest.hexdigest()


def machine() -> dict:
    """Where a run happened, for reports: CPU, threads, accelerator."""
    import torch  # here: io stays importable without torch's start-up cost

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def dated_output(kind: str) -> Path:
    """The default output folder of ``--compare``/``--hyper``: ``saved/<kind>-<date>-<time>/``."""
    return Path("saved") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S-%f}"
