"""Command-line tools: ``python -m ur4rec_recbole <command>`` (see ``ur4rec_recbole.__main__``)."""
