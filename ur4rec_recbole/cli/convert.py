"""Convert a raw public dataset to RecBole atomic files and the yaml UR4Rec reads.

    python -m ur4rec_recbole convert movielens ~/Downloads/ml-1m.zip --name ml-1m --out dataset
    python -m ur4rec_recbole convert amazon reviews_Beauty_5.json.gz meta_Beauty.json.gz \\
        --name amazon-beauty --out dataset
    python -m ur4rec_recbole convert lcrec Office.inter.json.xz Office.item.json.xz --name office --out dataset
    python -m ur4rec_recbole convert csv clicks.tsv --user uid --item sku --time ts \\
        --item-file products.csv --text-cols name,category --profile-cols category --name shop --out dataset

Writes ``DIR/NAME/NAME.{inter,item[,user]}`` and ``NAME.yaml`` (load_col, text
and profile fields, image field), all or nothing. Then:
``python run_ur4rec.py --dataset NAME --data_path=DIR`` (every command reads ``NAME.yaml`` from there).
Nothing is downloaded: fetch the raw files first (docs/guides/converters.md).
A bad line stops the conversion with ``file:line`` and the reason (exit status 2)
unless ``--skip-bad-lines``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ur4rec_recbole.cli.common import command
from ur4rec_recbole.convert import FORMATS, Report, run_conversion


def build_parser(prog: str = "python -m ur4rec_recbole convert") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT",
                                    help=", ".join(sorted(FORMATS)))
    for name in sorted(FORMATS):
        converter = FORMATS[name]
        sub = formats.add_parser(name, help=converter.summary, description=sys.modules[converter.__module__].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="raw files, folders or .zip archives")
        sub.add_argument("--name", required=True, help="dataset name: the folder DIR/NAME and its file names")
        sub.add_argument("--out", required=True, type=Path, metavar="DIR", help="data root (run_ur4rec's --data_path)")
        sub.add_argument("--min-user", type=int, default=converter.min_user,
                         help=f"k-core: keep users with at least this many interactions (default {converter.min_user})")
        sub.add_argument("--min-item", type=int, default=converter.min_item,
                         help=f"k-core: keep items with at least this many interactions (default {converter.min_item})")
        sub.add_argument("--max-words", type=int, default=150, help="word cap of each text field (default 150)")
        sub.add_argument("--skip-bad-lines", action="store_true",
                         help="skip lines that cannot be parsed (the first ones are listed) instead of stopping")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        sub.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        converter.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> Report:
    """Run the command (``argv`` without the program name); bad input exits with status 2 and one line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if "/" in args.name or args.name.startswith(".") or not args.name.strip():
        parser.error(f"--name {args.name!r} must be a plain folder name")
    with command(args.debug):  # bad input: one line on stderr, exit status 2 (--debug: the traceback)
        converter = FORMATS[args.format](args.sources, args)
        report = run_conversion(converter, args.name, args.out, args.min_user, args.min_item,
                                "python -m ur4rec_recbole convert " + shlex.join(argv))
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(f"{args.format} -> {report.folder}/")
        print("\n".join("  " + line for line in report.describe()))
        print(f"run:   python run_ur4rec.py --dataset {args.name} --data_path={args.out}  "
              f"(reads {report.folder / (args.name + '.yaml')})")
    return report


if __name__ == "__main__":
    main()
