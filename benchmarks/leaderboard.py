"""The leaderboard: UR4Rec against its ablations, text-aware peers, RecBole's built-ins and the floors.

    python benchmarks/leaderboard.py --dataset ml-100k --seeds 5 --output benchmarks/results/leaderboard-ml-100k
    python benchmarks/leaderboard.py --dataset amazon-office --seeds 5 --unmasked \\
        --output benchmarks/results/leaderboard-amazon-office-unmasked
    python benchmarks/leaderboard.py --dataset amazon-office --seeds 1 --rows UR4Rec,UniSRec --output DIR

Every row is a ``--compare`` run (``run/compare/``): the same Config chain,
split, full-ranking evaluator and history masks (``run/protocol.py``; ``auto``
unless ``--unmasked`` turns both off for every model), each model with its
package or paper defaults (nothing here is tuned), seeds 2020, 2021, ...; the
report (``benchmark.md``/``.json``/``.png`` in ``--output``) gives test
Recall/NDCG/MRR/Hit@10 and @20, seconds per epoch, the per-user Wilcoxon test
and the seed-level t-test against UR4Rec (the first row), the frequency
buckets, and whether every row ran under the same protocol. ``--rows`` runs
a subset (by label, in the table's order): a partial table, to be labelled
so. Repeating a command reuses the runs it finished; ``--report_only`` writes
the table from them alone, counting the rest as not run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ur4rec_recbole.cli.common import command, split_overrides
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.run.compare.runner import compare, seeds_for
from ur4rec_recbole.run.compare.spec import parse_spec

ROWS = {  # label -> --compare spec; UR4Rec first: every paired test is against it
    "UR4Rec": "UR4Rec",
    "ablation": "UR4Rec[retriever_weight=0;fusion=none]",  # the same SASRec backbone, no text, no retriever
    "item_text": "UR4Rec[fusion=item_text;retriever_weight=0]",  # text in the item table alone
    "UniSRec": "UniSRec",  # transductive: ID + adapted text
    "UniSRec-inductive": "UniSRec[train_stage=inductive_ft]",  # adapted text alone
    "SASRecF": "SASRecF",  # the item's category/brand tokens (selected_features from user_profile_fields)
    "FDSA": "FDSA",
    "SASRec": "SASRec",
    "GRU4Rec": "GRU4Rec",
    "BERT4Rec": "BERT4Rec",  # evaluation mask only: its masked-item loss cannot take the training mask
    "TransitionsTextKNN": "TransitionsTextKNN",
    "Transitions": "Transitions",
    "TextKNN": "TextKNN",
}
UNMASKED = {"exclude_history": "False", "train_exclude_history": "False"}


def chosen_rows(names: str | None) -> list[str]:
    """The rows to run, in the table's order; an unknown name is one line naming the known ones."""
    if names is None:
        return list(ROWS)
    asked = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in asked if name not in ROWS]
    if unknown:
        raise InputError(f"--rows: unknown row {unknown[0]!r}; rows: {', '.join(ROWS)}")
    return [name for name in ROWS if name in asked]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--unmasked", action="store_true",
                        help="history left in the ranking and the loss for every model (both masks False)")
    parser.add_argument("--rows", default=None, help=f"a subset of the rows: {','.join(ROWS)}")
    parser.add_argument("--report_only", action="store_true",
                        help="write the table from the runs finished in --output; train nothing (missing runs are "
                             "counted as not run)")
    parser.add_argument("--config_files", nargs="*", default=[])
    parser.add_argument("--debug", action="store_true", help="a full traceback instead of one line on bad input")
    args, rest = parser.parse_known_args(argv)
    with command(args.debug):
        overrides = split_overrides(rest)  # --key=value settings for every row
        if args.unmasked:
            overrides.update(UNMASKED)
        specs = [parse_spec(ROWS[name]) for name in chosen_rows(args.rows)]
        return compare(specs, args.dataset, seeds_for(args.seeds), args.output, args.config_files or None,
                       overrides, run_missing=not args.report_only)


if __name__ == "__main__":
    main()
