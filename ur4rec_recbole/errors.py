"""Errors a user can fix, and how commands report them.

A bad input (a file, a row, a setting) raises :class:`InputError` (or one of
the built-in types listed in :data:`USER_ERRORS`) with a message that names
the file (row, column or setting) and the fix. Commands print that message as
one line on stderr and exit with status 2; the traceback appears only with
``--debug``.
"""

from __future__ import annotations

EXIT_USAGE = 2  # bad input or usage, as argparse uses it


class InputError(ValueError):
    """Bad input the user can fix; the message names the file or setting and the fix."""


def one_line(err: BaseException) -> str:
    """The error's message on one line (continuation lines joined with '; ')."""
    text = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


class MissingExtra(InputError):
    """An optional part of the package is used without the extra that installs it."""


def require(module: str, extra: str, purpose: str):
    """Import ``module`` for ``purpose``; missing, it is one line naming the extra to install.

    The core install is what the main job needs; LLM texts, item images, ``--hyper`` and plots come
    with the extras ``llm``, ``images``, ``hyper`` and ``plots`` of ``pyproject.toml``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(f"{purpose} needs {module} ({err}); install it with: pip install 'ur4rec-recbole[{extra}]' "
                           f"(in a checkout: pip install -e '.[{extra}]')") from err
