"""Where a command writes (``--results``, ``--output``, ``checkpoint_dir``): checked before any data is read.

A run must never write into the dataset's folder (``--results DIR/shop/shop.inter``
would replace an atomic file with JSON), onto an existing folder, over a
results file the user did not ask to replace (``--overwrite``), or into a
file another running command is writing. :func:`check_output` refuses each
case in one line; :func:`claim_output` also holds a lock (``.<name>.lock``
beside the path, ``flock``: released when the command ends, even when it is
killed) while the command runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.io import NOT_WRITABLE


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (links and ``..`` resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_outside_dataset(path: str | os.PathLike | None, data_folder: str | os.PathLike, flag: str) -> None:
    """``path`` (an output) is not inside the dataset folder ``data_folder``, whose files a run only reads."""
    if path is not None and inside(path, data_folder):
        raise InputError(f"{flag} {path} is inside the dataset folder {data_folder}, whose files a run must not "
                         f"replace: choose a path outside it")


def check_output(path: str | os.PathLike, flag: str, folder: bool = False, overwrite: bool = False) -> Path:
    """Refuse an output path that names the wrong kind of thing or an existing results file.

    ``folder``: the output is a folder (``--output`` of ``--compare``/``--hyper``,
    which reuses the finished runs it holds), so an existing file is refused.
    Otherwise it is a file: an existing folder is refused, and so is an
    existing file unless ``overwrite``.
    """
    path = Path(path)
    if folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"{flag} {path} is an existing file, not a folder: name a folder (new, or the "
                             f"output of an earlier run of the same command)")
        return path
    if path.is_dir():
        raise InputError(f"{flag} {path} is an existing folder: name a file, e.g. {path / 'results.json'}")
    if path.exists() and not overwrite:
        raise InputError(f"{flag} {path} already exists and is kept: pass --overwrite to replace it, or name "
                         f"another file")
    return path


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextmanager
def output_lock(path: str | os.PathLike, flag: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while the block runs; refuse if another process holds it."""
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+", encoding="utf-8")
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            raise
        raise PermissionError(f"{flag} {path}: cannot write in {lock.parent} ({err.strerror}); choose a writable "
                              "place") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise InputError(f"{flag} {path} is being written by another running command (pid {holder}, lock "
                         f"{lock}): wait for it to finish, or choose another path") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def claim_output(path: str | os.PathLike | None, flag: str, folder: bool = False,
                 overwrite: bool = False) -> Iterator[Path | None]:
    """:func:`check_output`, then hold :func:`output_lock` for the block (nothing to do for ``None``)."""
    if path is None:
        yield None
        return
    checked = check_output(path, flag, folder=folder, overwrite=overwrite)
    with output_lock(checked, flag):
        yield checked
