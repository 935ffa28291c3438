"""Command-line pieces shared by ``run_ur4rec.py`` and the ``python -m ur4rec_recbole.*`` tools."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def split_overrides(extra: list[str]) -> dict[str, str]:
    """``['--a=1', '--b=x']`` -> ``{'a': '1', 'b': 'x'}``; anything else is an error.

    These are RecBole settings (``--data_path=DIR``, ``--item_text_fields=[...]``),
    handed to :class:`ur4rec_recbole.config.Config` explicitly, never via ``sys.argv``.
    """
    overrides: dict[str, str] = {}
    for arg in extra:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"unrecognised argument {arg!r}: settings are given as --key=value")
        key, value = arg[2:].split("=", 1)
        if key in overrides and overrides[key] != value:
            raise SystemExit(f"--{key} given twice with different values")
        overrides[key] = value
    return overrides


def quiet_library_warnings() -> None:
    """Hide RecBole's pandas FutureWarnings (dozens per run, nothing a user can act on)."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")


def dated_output(kind: str) -> Path:
    """The default output folder of ``--compare``/``--hyper``: ``saved/<kind>-<date>-<time>/``."""
    from ur4rec_recbole.config import PROJECT_ROOT  # imported here: it pulls in RecBole

    return PROJECT_ROOT / "saved" / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"
