"""Train and test UR4Rec, or any RecBole model: ``python run_ur4rec.py --dataset ml-100k``.

The same as ``python -m ur4rec_recbole``; see ``ur4rec_recbole/cli/main.py``
or ``python run_ur4rec.py --help`` for every flag.
"""

from time import time

_START = time()  # the wall time printed at the end includes the imports

from ur4rec_recbole.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main(started=_START)
