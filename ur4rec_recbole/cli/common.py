"""Pieces every command shares: dataset flags, ``--key=value`` settings, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from ur4rec_recbole.errors import EXIT_USAGE, InputError, one_line
from ur4rec_recbole.io import NOT_WRITABLE


def add_dataset_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--dataset``, ``--config_files`` and ``--debug``: what every command takes."""
    parser.add_argument("--dataset", "-d", required=required, default=None if required else "ml-100k",
                        help="dataset name (a folder of atomic files under --data_path, default dataset/)")
    parser.add_argument("--config_files", nargs="+", default=None, metavar="YAML",
                        help="yaml files with settings, later ones win (--key=value wins over all)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def split_overrides(extra: list[str]) -> dict[str, str]:
    """``['--a=1', '--b=x']`` -> ``{'a': '1', 'b': 'x'}``; anything else is an error.

    These are RecBole settings (``--data_path=DIR``, ``--item_text_fields=[...]``),
    handed to :class:`ur4rec_recbole.config.Config` explicitly, never via ``sys.argv``.
    """
    overrides: dict[str, str] = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise InputError(f"unrecognised argument {arg!r}: settings are given as --key=value")
        key, value = arg[2:].split("=", 1)
        if key in overrides and overrides[key] != value:
            raise InputError(f"--{key} given twice with different values")
        overrides[key] = value
    return overrides


def quiet_library_warnings() -> None:
    """Hide RecBole's pandas FutureWarnings (dozens per run, nothing a user can act on)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, reported in one line."""
    import yaml

    return (InputError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            UnicodeError, yaml.YAMLError)


@contextmanager
def command(debug: bool = False, interrupted: str = "interrupted") -> Iterator[None]:
    """Run a command body: bad input is one line on stderr and exit status 2 (traceback with ``--debug``).

    Ctrl-C prints ``interrupted`` and exits with status 130.
    """
    try:
        yield
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        raise SystemExit(130) from None
    except (*user_errors(), OSError) as err:
        bad_input = isinstance(err, user_errors()) or err.errno in NOT_WRITABLE  # e.g. a read-only file system
        if debug or not bad_input:
            raise
        logging.getLogger().debug(traceback.format_exc())  # the log file keeps the traceback
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
