"""``python -m ur4rec_recbole [COMMAND] ...`` (also installed as the ``ur4rec`` command).

    python -m ur4rec_recbole --dataset ml-100k            # train and test: the same as run_ur4rec.py
    python -m ur4rec_recbole run --dataset ml-100k        # the same, named
    python -m ur4rec_recbole generate --dataset ml-100k --backend openai --llm-model gpt-4o-mini
    python -m ur4rec_recbole encode --dataset mydata --images --image-pretrained none
    python -m ur4rec_recbole convert movielens ml-1m.zip --name ml-1m --out dataset
    python -m ur4rec_recbole recommend --checkpoint saved/UR4Rec-....pth --user 196 --k 10 --explain

Each command's flags: ``python -m ur4rec_recbole COMMAND --help``.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {  # command -> module whose main(argv) runs it
    "run": "ur4rec_recbole.cli.main",
    "generate": "ur4rec_recbole.cli.generate",
    "encode": "ur4rec_recbole.cli.encode",
    "convert": "ur4rec_recbole.cli.convert",
    "recommend": "ur4rec_recbole.cli.recommend",
}


def main(argv: list[str] | None = None):
    """Dispatch to a command; without one (or with flags first) run the main command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help") and len(argv) == 1:
        print(__doc__.strip() + "\n\ncommands: " + ", ".join(COMMANDS))
        return None
    name = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    if argv and not argv[0].startswith("-") and name == "run" and argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        raise SystemExit(2)
    return importlib.import_module(COMMANDS[name]).main(argv)


if __name__ == "__main__":
    main()
