"""Real posters for ml-100k from a MovieLens-1M poster set, joined on title and year.

    python benchmarks/posters.py --posters DIR/MovieImages --movies DIR/MovieData/movies.dat \\
        [--dataset ml-100k] [--data_path=dataset/]

``--posters`` holds ``<ML-1M MovieID>.jpg``; ``--movies`` is ML-1M's ``movies.dat``.
Writes ``<data_path>/<dataset>/images/<item>.jpg`` for every item the join matches
(``ur4rec_recbole.features.posters``: the steps) and ``<dataset>.poster_join.json``
beside it: matched (by step), unmatched and ambiguous items. One such set is the public
repository ``liangfgithub/liangfgithub.github.io`` (``MovieImages/``, ``MovieData/``);
posters are copyrighted and MovieLens may not be redistributed: keep them out of any
repository. Then encode them: ``python -m ur4rec_recbole encode --dataset ml-100k --images
--image-model efficientnet-lite0`` (docs/guides/images.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ur4rec_recbole.formats.atomic import read_columns
from ur4rec_recbole.cli.common import command, split_overrides
from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.images import IMAGE_FOLDER
from ur4rec_recbole.features.posters import copy_posters, join_posters, read_movies_dat
from ur4rec_recbole.io import data_folder_fix, write_json


def item_titles(config) -> dict[str, tuple[str, int | None]]:
    """``{item token: (title, year)}`` from the dataset's ``.item`` (title and year columns as RecBole writes them)."""
    path = Path(config["data_path"]) / f"{config['dataset']}.item"
    if not path.is_file():
        raise InputError(f"{path} not found: the join needs the item titles of {config['dataset']}")
    table = read_columns(path, [config["ITEM_ID_FIELD"], "movie_title", "release_year"],
                         config["field_separator"], config["encoding"])
    return {token: (title, int(year) if year.isdigit() else None)
            for token, title, year in table.itertuples(index=False)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posters", type=Path, required=True, help="folder of <ML-1M MovieID>.jpg")
    parser.add_argument("--movies", type=Path, required=True, help="ML-1M movies.dat")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--debug", action="store_true")
    args, extra = parser.parse_known_args()
    with command(args.debug):
        from ur4rec_recbole.run.prepare import prepare_run

        config = prepare_run("UR4Rec", args.dataset, cmd_overrides=split_overrides(extra), build_dataset=False).config
        if not args.posters.is_dir():
            raise InputError(f"--posters {args.posters}: not a folder")
        items = item_titles(config)
        join = join_posters(items, read_movies_dat(args.movies))
        data_path = Path(config["data_path"])
        copied = copy_posters(join, args.posters, data_path / IMAGE_FOLDER)
        report = {"posters": str(args.posters), "movies": str(args.movies), "items": len(items),
                  "copied": copied, **join.as_json()}
        out = data_path / f"{args.dataset}.poster_join.json"
        write_json(out, report, fix=data_folder_fix(data_path))
        print(json.dumps({k: report[k] for k in ("items", "matched", "unmatched", "ambiguous", "matched_by_step")}))
        print(f"images: {data_path / IMAGE_FOLDER}/\nreport: {out}")
        return report


if __name__ == "__main__":
    main()
