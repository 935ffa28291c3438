"""Join a MovieLens-1M poster set to another MovieLens item table by title and year.

Poster sets name their files by ML-1M ``MovieID`` (``<folder>/<MovieID>.jpg``)
and come with ML-1M's ``movies.dat`` (``MovieID::Title (Year)::Genres``,
Latin-1). ml-100k numbers its movies differently, so its items are found by
title and release year. Both tables write titles the MovieLens way
("Usual Suspects, The", "City of Lost Children, The (Cité des enfants perdus, La)"),
but not always the same way, so every title is compared in a normal form
(trailing article moved to the front, accents, case and punctuation dropped)
and the join tries, in order, until one step gives a single poster:

1. ``exact``: the normal form of the whole title and the same year;
2. ``main``: the title without its bracketed alternative names, same year;
3. ``alias``: any one of a title's names (main or bracketed), same year;
4. ``year±1``: step 2 with the year one off (the tables disagree on some years);
5. ``part``: a part of a poster's title split at ``:`` and `` - `` (ml-100k's "Star Wars" is
   ML-1M's "Star Wars: Episode IV - A New Hope"), same year.

A step that finds two or more posters makes the item ``ambiguous`` (no image:
a wrong poster is worse than none); an item no step finds is ``unmatched``.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ur4rec_recbole.errors import InputError

ARTICLES = ("the", "a", "an", "les", "la", "le", "l'", "il", "el", "das", "die", "der", "den", "det", "lo")
_TRAILING_ARTICLE = re.compile(r"^(?P<rest>.+),\s*(?P<article>" + "|".join(re.escape(a) for a in ARTICLES) + r")$",
                               re.IGNORECASE)
_BRACKETED = re.compile(r"\s*\(([^()]*)\)")
_YEAR_AT_END = re.compile(r"^(?P<title>.*\S)\s*\((?P<year>\d{4})\)\s*$")
STEPS = ("exact", "main", "alias", "year±1", "part")
_PARTS = re.compile(r":\s+|\s+-\s+")


def normal_title(title: str) -> str:
    """Comparable form: "Usual Suspects, The" and "The usual suspects!" both give "the usual suspects"."""
    title = title.strip()
    if title.lower().startswith("a.k.a."):
        title = title[6:].strip()
    match = _TRAILING_ARTICLE.match(title)
    if match:
        title = f"{match['article']} {match['rest']}"
    ascii_only = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_only.lower().replace("&", " and ")).split())


def title_names(title: str) -> tuple[str, list[str]]:
    """The normal form of the main title (brackets removed) and of every name: main and bracketed."""
    main = normal_title(_BRACKETED.sub("", title))
    aliases = [a for bracket in _BRACKETED.findall(title) for a in re.split(r",\s*(?=a\.k\.a\.)", bracket)]
    names = [main] + [normal_title(alias) for alias in aliases]
    return main, [n for n in dict.fromkeys(names) if n]


def split_year(title_with_year: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; no year at the end -> ``(title, None)``."""
    match = _YEAR_AT_END.match(title_with_year.strip())
    return (match["title"], int(match["year"])) if match else (title_with_year.strip(), None)


def read_movies_dat(path: str | Path) -> dict[str, tuple[str, int | None]]:
    """``{MovieID: (title, year)}`` of an ML-1M ``movies.dat`` (``::``-separated, Latin-1)."""
    path = Path(path)
    movies: dict[str, tuple[str, int | None]] = {}
    for number, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise InputError(f"{path}, line {number}: expected MovieID::Title (Year)::Genres, got {line[:80]!r}")
        movies[parts[0].strip()] = split_year(parts[1])
    return movies


@dataclass
class PosterJoin:
    """Which poster each item got, and why the others got none."""

    matched: dict[str, str] = field(default_factory=dict)  # item token -> poster id
    step: dict[str, str] = field(default_factory=dict)  # item token -> the step that matched it
    unmatched: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # item token -> candidate poster ids
    absent: dict[str, str] = field(default_factory=dict)  # item token -> matched poster id that has no file

    def as_json(self) -> dict:
        by_step = {s: sum(1 for v in self.step.values() if v == s) for s in STEPS}
        return {"matched": len(self.matched), "unmatched": len(self.unmatched), "ambiguous": len(self.ambiguous),
                "poster_file_absent": len(self.absent), "matched_by_step": by_step, "unmatched_items": self.unmatched,
                "ambiguous_items": self.ambiguous, "absent_items": self.absent, "item_to_poster": self.matched}


def join_posters(items: Mapping[str, tuple[str, int | None]], posters: Mapping[str, tuple[str, int | None]],
                 ) -> PosterJoin:
    """Match ``{item token: (title, year)}`` to ``{poster id: (title, year)}`` (module docstring: the steps)."""
    index: dict[str, dict[tuple[str, int | None], set[str]]] = {
        s: defaultdict(set) for s in ("exact", "main", "alias", "part")}
    for poster, (title, year) in posters.items():
        main, names = title_names(title)
        index["exact"][normal_title(title), year].add(poster)
        index["main"][main, year].add(poster)
        for name in names:
            index["alias"][name, year].add(poster)
        for part in _PARTS.split(_BRACKETED.sub("", title)):
            index["part"][normal_title(part), year].add(poster)
    join = PosterJoin()
    for token, (title, year) in items.items():
        main, names = title_names(title)
        tries: list[tuple[str, Iterable[tuple[str, int | None]]]] = [
            ("exact", [(normal_title(title), year)]),
            ("main", [(main, year)]),
            ("alias", [(name, year) for name in names]),
            ("year±1", [(main, year - 1), (main, year + 1)] if year is not None else []),
            ("part", [(main, year)]),
        ]
        for step, keys in tries:
            table = index["main" if step == "year±1" else step]  # year±1 looks up main titles
            found = set().union(*(table.get(key, set()) for key in keys))
            if len(found) == 1:
                join.matched[token], join.step[token] = found.pop(), step
                break
            if len(found) > 1:
                join.ambiguous[token] = sorted(found, key=int)
                break
        else:
            join.unmatched.append(token)
    return join


def copy_posters(join: PosterJoin, poster_folder: str | Path, target: str | Path, suffix: str = ".jpg") -> int:
    """Write ``<target>/<item>.jpg`` for every matched item, replacing ``target`` whole; returns how many.

    The folder is filled under a temporary name and renamed at the end, so an interrupted
    run never leaves a half-filled ``images/``. A matched item whose poster has no file
    moves from ``join.matched`` to ``join.absent``; a folder with none of them is an error.
    """
    poster_folder, target = Path(poster_folder), Path(target)
    for token, poster in list(join.matched.items()):
        if not (poster_folder / f"{poster}{suffix}").is_file():
            join.absent[token] = join.matched.pop(token)
            join.step.pop(token)
    if join.absent and not join.matched:
        raise InputError(f"{poster_folder}: none of the matched posters is there (e.g. "
                         f"{next(iter(join.absent.values()))}{suffix}); pass the folder that holds <MovieID>{suffix}")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for token, poster in join.matched.items():
        shutil.copyfile(poster_folder / f"{poster}{suffix}", tmp / f"{token}{suffix}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return len(join.matched)
