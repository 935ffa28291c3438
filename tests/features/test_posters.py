"""The poster join: ML-1M poster ids to another MovieLens item table by title and year (small made-up posters)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from conftest import fails_clearly

from ur4rec_recbole.errors import InputError
from ur4rec_recbole.features.posters import (
    copy_posters,
    join_posters,
    normal_title,
    read_movies_dat,
    split_year,
    title_names,
)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "posters.py"
MOVIES_DAT = [  # ML-1M's spelling (Latin-1 on disk)
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "50::Usual Suspects, The (1995)::Crime|Thriller",
    "29::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi",
    "260::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi",
    "1414::Hard 8 (a.k.a. Sydney, a.k.a. Hard Eight) (1996)::Crime|Thriller",
    "1120::People vs. Larry Flynt, The (1996)::Drama",
    "900::Hamlet (1996)::Drama",
    "901::Hamlet (1996)::Drama",
    "777::Kolya (1997)::Comedy",
]
ITEMS = {  # ml-100k's spelling: title and year in separate columns
    "1": ("Toy Story", 1995),
    "12": ("Usual Suspects, The", 1995),
    "13": ("City of Lost Children, The", 1995),
    "50": ("Star Wars", 1977),
    "1143": ("Hard Eight", 1996),
    "14": ("People vs. Larry Flynt, The", 1996),
    "15": ("Kolya", 1996),  # a year one off
    "16": ("Hamlet", 1996),  # two posters fit
    "267": ("unknown", None),
    "17": ("A Movie Nobody Filmed", 1990),
}
EXPECTED = {"1": "1", "12": "50", "13": "29", "50": "260", "1143": "1414", "14": "1120", "15": "777"}


def write_posters(folder: Path, ids) -> None:
    """A small JPEG per poster id, each a different grey (so copies can be told apart by their bytes)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for n, poster in enumerate(ids):
        Image.new("RGB", (18, 27), (n * 20 % 256,) * 3).save(folder / f"{poster}.jpg")


@pytest.fixture
def poster_set(tmp_path):
    movies = tmp_path / "MovieData" / "movies.dat"
    movies.parent.mkdir()
    movies.write_bytes(("\n".join(MOVIES_DAT) + "\n").encode("latin-1"))
    folder = tmp_path / "MovieImages"
    write_posters(folder, [line.split("::")[0] for line in MOVIES_DAT])
    return folder, movies


def test_titles_in_their_normal_form():
    assert normal_title("Usual Suspects, The") == normal_title("The Usual Suspects") == "the usual suspects"
    assert normal_title("Cité des enfants perdus, La") == "la cite des enfants perdus"
    assert title_names("City of Lost Children, The (Cité des enfants perdus, La)") == (
        "the city of lost children", ["the city of lost children", "la cite des enfants perdus"])
    assert title_names("Hard 8 (a.k.a. Sydney, a.k.a. Hard Eight)")[1] == ["hard 8", "sydney", "hard eight"]
    assert split_year("Toy Story (1995)") == ("Toy Story", 1995) and split_year("unknown") == ("unknown", None)


def test_join_maps_known_titles_and_reports_the_rest(poster_set, tmp_path):
    folder, movies = poster_set
    posters = read_movies_dat(movies)
    assert posters["29"] == ("City of Lost Children, The (Cité des enfants perdus, La)", 1995)
    join = join_posters(ITEMS, posters)
    assert join.matched == EXPECTED
    assert join.step == {"1": "exact", "12": "exact", "13": "main", "50": "part", "1143": "alias", "14": "exact",
                         "15": "year±1"}
    assert join.unmatched == ["267", "17"] and join.ambiguous == {"16": ["900", "901"]}

    (folder / "1120.jpg").unlink()  # a matched poster whose file the set lacks
    target = tmp_path / "data" / "images"
    assert copy_posters(join, folder, target) == len(EXPECTED) - 1
    assert join.absent == {"14": "1120"} and "14" not in join.matched
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{t}.jpg" for t in EXPECTED if t != "14")
    assert (target / "12.jpg").read_bytes() == (folder / "50.jpg").read_bytes()
    assert not list(target.parent.glob(".*.tmp"))
    report = join.as_json()
    assert (report["matched"], report["unmatched"], report["ambiguous"], report["poster_file_absent"]) == (6, 2, 1, 1)


def test_bad_poster_inputs_are_clear(poster_set, tmp_path):
    folder, movies = poster_set
    bad = tmp_path / "bad.dat"
    bad.write_text("1::Toy Story (1995)::Comedy\nnot a movie line\n")
    with pytest.raises(InputError, match=r"bad.dat, line 2: expected MovieID::Title \(Year\)::Genres"):
        read_movies_dat(bad)
    join = join_posters(ITEMS, read_movies_dat(movies))
    with pytest.raises(InputError, match="none of the matched posters is there"):
        copy_posters(join, tmp_path / "empty", tmp_path / "images")


def test_poster_script_writes_images_and_its_report(poster_set, tmp_path, monkeypatch, capsys):
    folder, movies = poster_set
    data = tmp_path / "data" / "movies"
    data.mkdir(parents=True)
    (data / "movies.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\n" + "".join(
        f"{token}\t{title}\t{year or 'unknown'}\n" for token, (title, year) in ITEMS.items()))
    (data / "movies.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"u1\t{token}\t{n}\n" for n, token in enumerate(ITEMS)))
    argv = [str(SCRIPT), "--posters", str(folder), "--movies", str(movies), "--dataset", "movies",
            f"--data_path={tmp_path / 'data'}", "--state=WARNING"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    report = json.loads((data / "movies.poster_join.json").read_text())
    assert report["item_to_poster"] == EXPECTED and report["unmatched_items"] == ["267", "17"]
    assert len(list((data / "images").iterdir())) == len(EXPECTED)
    assert '"matched": 7' in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", argv[:2] + [str(tmp_path / "nowhere")] + argv[3:])
    fails_clearly(capsys, lambda: runpy.run_path(str(SCRIPT), run_name="__main__"), "nowhere: not a folder")
