"""Command-line tools: ``python -m ur4rec_recbole.cli.<command>``.

The names below are re-exported for the importers that predate this package
(``from ur4rec_recbole.cli import split_overrides``); new code imports
``ur4rec_recbole.cli.common``.
"""

from ur4rec_recbole.cli.common import dated_output, quiet_library_warnings, split_overrides

__all__ = ["dated_output", "quiet_library_warnings", "split_overrides"]
