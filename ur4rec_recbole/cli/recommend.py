"""Top-k recommendations from a trained checkpoint, for known users or histories given on the command line.

    python -m ur4rec_recbole recommend --checkpoint saved/UR4Rec-....pth --user 196 --k 10 --explain
    python -m ur4rec_recbole recommend --checkpoint saved/UR4Rec-....pth --all --output recs.jsonl
    python -m ur4rec_recbole recommend --checkpoint saved/UR4Rec-....pth --history "50,172,133" --output recs.csv

Without ``--output`` a table is printed; ``--output`` writes JSONL (one user per
line) or CSV (one item per row), chosen by the file's suffix. Known users'
histories are everything observed for them (training, validation and test
items); their seen items are left out unless ``--keep-history``. A ``--history``
is a user the model never saw: comma-separated item tokens, oldest first.
"""

from __future__ import annotations

import argparse
import sys

from ur4rec_recbole.cli.common import command, quiet_library_warnings
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.outputs import check_outside_dataset, claim_output


def tokens(text: str) -> list[str]:
    """``"50, 172,133"`` -> ``['50', '172', '133']``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint saved by run_ur4rec.py (saved/*.pth), or the --results JSON of its run")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", nargs="+", metavar="TOKEN", help="known users' tokens")
    who.add_argument("--all", action="store_true", help="every known user (a progress bar shows how far)")
    who.add_argument("--history", action="append", metavar="T1,T2,...",
                     help="a new user's item tokens, oldest first (repeat for several users)")
    parser.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    parser.add_argument("--candidates", default=None, metavar="T1,T2,...",
                        help="rank only these items (reranking) instead of the whole catalogue")
    parser.add_argument("--keep-history", action="store_true", help="do not leave out the items in a user's history")
    parser.add_argument("--no-profile", action="store_true",
                        help="--history users: mask the preference slot instead of writing a profile")
    parser.add_argument("--explain", action="store_true",
                        help="per item: score parts, the proxy that matched it and the memory slots it attended to")
    parser.add_argument("--slots", type=int, default=3, help="memory slots shown per explained item (default 3)")
    parser.add_argument("--output", "-o", default=None, help="write recs.jsonl or recs.csv instead of a table")
    parser.add_argument("--batch-size", type=int, default=256, help="users scored per call (default 256)")
    parser.add_argument("--data_path", "--data-path", default=None, metavar="DIR",
                        help="the folder holding the dataset's folder, if it moved since training")
    parser.add_argument("--title-field", default=None, metavar="COLUMN",
                        help=".item column shown as titles (default: 'title', or the one labelled so)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the number of users answered."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_library_warnings()
    with command(args.debug):
        return _recommend(args)


def _recommend(args: argparse.Namespace) -> int:
    from ur4rec_recbole.serve import Recommender
    from ur4rec_recbole.serve.results import output_format

    if args.output is not None:
        output_format(args.output)  # a bad suffix fails before the model loads
    if args.candidates is not None and not tokens(args.candidates):
        raise InputError("--candidates is empty: give item tokens separated by commas")
    if args.slots < 1:
        raise InputError(f"--slots {args.slots}: expected a positive number of slots")
    with claim_output(args.output, "--output", overwrite=True):  # a file (not a folder) no other command writes
        return _answer(args, Recommender.load(args.checkpoint, data_path=args.data_path, device=args.device,
                                              title_field=args.title_field))


def _answer(args: argparse.Namespace, rec) -> int:
    from ur4rec_recbole.serve import format_table, write_recommendations

    check_outside_dataset(args.output, rec.config["data_path"], "--output")
    if args.explain and not rec.scorer.explains:
        print(f"note: {rec.config['model']} has no retriever in its ranking: scores without explanations",
              file=sys.stderr)
    histories = [tokens(h) for h in args.history] if args.history else None
    users = rec.users() if args.all else args.user
    answers = rec.iter_recommendations(
        users, histories=histories, k=args.k, exclude_history=not args.keep_history,
        candidates=tokens(args.candidates) if args.candidates is not None else None, explain=args.explain,
        profile=not args.no_profile, top_slots=args.slots, batch_size=args.batch_size, progress=args.all)
    if args.output is not None:
        count = write_recommendations(args.output, answers)
        print(f"wrote recommendations for {count} user(s) to {args.output}")
        return count
    count = 0
    for answer in answers:
        print(format_table(answer) + "\n")
        count += 1
    return count


if __name__ == "__main__":
    main()
