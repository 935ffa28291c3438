"""MovieLens: ML-100K raw files, ML-1M/ML-10M ``::`` files, ML-20M/25M/32M and ml-latest CSVs.

SRC is the unpacked folder or the ``.zip`` as downloaded from
https://grouplens.org/datasets/movielens/ (or the files themselves). The
layout is recognised by its ratings file:

- ``u.data`` (ML-100K): ``user \\t item \\t rating \\t time``; ``u.item`` is
  ``|``-separated latin-1 with 19 genre flags (names from ``u.genre`` when
  present); ``u.user`` gives age, gender, occupation, zip code;
- ``ratings.dat`` (ML-1M, ML-10M): ``user::item::rating::time``; ``movies.dat``
  ``item::title::Genre|Genre``; ``users.dat`` (ML-1M only) gender, age and
  occupation codes (written as the README's labels), zip code;
- ``ratings.csv`` (ML-20M and later, ml-latest): ``userId,movieId,rating,timestamp``
  with ``movies.csv`` (``movieId,title,genres``).

Titles keep their year (``Toy Story (1995)``); ``year`` is also a column of its
own and ``genres`` a ``token_seq`` (``(no genres listed)`` is no genre). With
``tags.dat``/``tags.csv`` the ten most frequent tags of each movie become a
``tags`` column, left out of ``item_text_fields``: users tag movies at any
time, so the tags may describe interactions of the validation and test
periods (add it to ``item_text_fields`` if that is acceptable for you).
Lines are decoded as UTF-8, or latin-1 where that fails (ML-100K/1M titles).

Memory: the interactions go through the on-disk spool; movie titles and
genres are streamed; with a tags file, a tag counter per movie.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from typing import Any, Callable, Iterator

from ur4rec_recbole.convert.base import Converter, register
from ur4rec_recbole.convert.interactions import InteractionSpool
from ur4rec_recbole.convert.sources import RawFile, locate
from ur4rec_recbole.convert.text import check_id, clean_text
from ur4rec_recbole.convert.writer import Column
from ur4rec_recbole.errors import InputError

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
               "War", "Western")
# ML-1M README: users.dat codes
AGES_1M = {"1": "Under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                  "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
NO_GENRE = "(no genres listed)"
YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")
TOP_TAGS = 10


def _fields(line: str, separator: str, count: int, what: str) -> list[str]:
    parts = line.split(separator)
    if len(parts) != count:
        raise ValueError(f"expected {count} {separator!r}-separated fields ({what}), found {len(parts)}")
    return parts


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None


@register
class MovieLens(Converter):
    name = "movielens"
    summary = "MovieLens 100K (u.data), 1M/10M (ratings.dat) or 20M/25M/32M/latest (ratings.csv)"
    item_columns = (Column("title"), Column("year"), Column("genres", "token_seq"), Column("tags"))
    user_columns = (Column("age"), Column("gender"), Column("occupation"), Column("zip_code"))
    text_fields = ("title", "year", "genres")
    profile_fields = ("genres", "year")

    def __init__(self, sources, args) -> None:
        super().__init__(sources, args)
        for layout, ratings in (("100k", "u.data"), ("dat", "ratings.dat"), ("csv", "ratings.csv")):
            found = locate(self.sources, ratings)
            if found is not None:
                self.layout, self.ratings = layout, found
                break
        else:
            raise InputError(f"no u.data, ratings.dat or ratings.csv in {', '.join(map(str, self.sources))}: "
                             f"pass the MovieLens folder or its .zip")
        names = {"100k": ("u.item", "u.user", None), "dat": ("movies.dat", "users.dat", "tags.dat"),
                 "csv": ("movies.csv", None, "tags.csv")}[self.layout]
        self.movies, self.people, self.tags = (locate(self.sources, n) if n else None for n in names)
        self.inputs = [f for f in (self.ratings, self.movies, self.people, self.tags) if f is not None]
        if self.people is None:
            self.user_columns = ()  # no .user file (ML-10M and the CSV releases have no user data)
        if self.tags is None:
            self.item_columns = self.item_columns[:-1]  # no tags column

    @property
    def rating(self) -> bool:
        return True

    def _rows(self, source: RawFile, parse: Callable[[str], Any]) -> Iterator[Any]:
        """Parsed lines of a ``::``, tab or ``|`` file (or CSV rows), bad ones reported as ``file:line``."""
        if self.layout == "csv":
            lines = source.lines(encoding="utf-8")
            reader = csv.reader(line + "\n" for _, line in lines)  # a quoted field may span lines
            header = next(reader, None)
            for row in reader:
                if not row:
                    continue
                try:
                    yield parse(row)
                except ValueError as err:
                    self.bad_line(source, reader.line_num, f"{err} (header: {','.join(header or [])})")
            return
        for lineno, line in source.lines(encoding="utf-8", fallback="latin-1"):
            if not line.strip():
                continue
            try:
                yield parse(line)
            except ValueError as err:
                self.bad_line(source, lineno, str(err))

    def read_interactions(self, spool: InteractionSpool) -> None:
        def parse(line):
            if self.layout == "csv":
                parts = line
                if len(parts) != 4:
                    raise ValueError(f"expected 4 fields (userId,movieId,rating,timestamp), found {len(parts)}")
            else:
                parts = (_fields(line, "\t", 4, "user, item, rating, time") if self.layout == "100k" else
                         _fields(line, "::", 4, "UserID::MovieID::Rating::Timestamp"))
            user, item = check_id(parts[0], "user id"), check_id(parts[1], "movie id")
            return user, item, _number(parts[3], "timestamp"), _number(parts[2], "rating")

        for user, item, time, rating in self._rows(self.ratings, parse):
            spool.add(user, item, time, rating)

    def item_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        tags = self._top_tags(keep) if self.tags is not None else {}
        if self.movies is None:
            return
        genre_names = self._genres_100k() if self.layout == "100k" else None

        def parse(line):
            if self.layout == "100k":
                parts = line.split("|")
                if len(parts) != 5 + len(genre_names):
                    raise ValueError(f"expected {5 + len(genre_names)} '|'-separated fields (id, title, release "
                                     f"date, video date, URL, {len(genre_names)} genre flags), found {len(parts)}")
                flags = parts[5:]
                if any(flag not in ("0", "1") for flag in flags):
                    raise ValueError("genre flags must be 0 or 1")
                genres = [g for g, flag in zip(genre_names, flags) if flag == "1"]
                item, title, date = parts[0], parts[1], parts[2]
            elif self.layout == "dat":
                item, title, genre_text = _fields(line, "::", 3, "MovieID::Title::Genres")
                genres, date = genre_text.split("|"), ""
            else:
                if len(line) != 3:
                    raise ValueError(f"expected 3 fields (movieId,title,genres), found {len(line)}")
                item, title, genre_text = line
                genres, date = genre_text.split("|"), ""
            title = clean_text(title, self.args.max_words)
            year = YEAR.search(title)
            year = year.group(1) if year else (date[-4:] if date[-4:].isdigit() else "")
            genres = [clean_text(g).replace(" ", "_") for g in genres if g.strip() and g != NO_GENRE]
            item = check_id(item, "movie id")
            return [item, title, year, genres] + ([tags.get(item, "")] if self.tags is not None else [])

        yield from self._rows(self.movies, parse)

    def _genres_100k(self) -> tuple[str, ...]:
        genre_file = locate(self.sources, "u.genre")
        if genre_file is None:
            return GENRES_100K
        names = [line.rsplit("|", 1)[0] for _, line in genre_file.lines(fallback="latin-1") if line.strip()]
        return tuple(names)

    def _top_tags(self, keep: set[str]) -> dict[str, str]:
        counts: dict[str, Counter] = defaultdict(Counter)

        def parse(line):
            if self.layout == "csv":
                if len(line) != 4:
                    raise ValueError(f"expected 4 fields (userId,movieId,tag,timestamp), found {len(line)}")
                return line[1], line[2]
            return tuple(_fields(line, "::", 4, "UserID::MovieID::Tag::Timestamp")[1:3])

        for item, tag in self._rows(self.tags, parse):
            item = item.strip()
            if item in keep:
                tag = clean_text(tag, 8).lower()
                if tag:
                    counts[item][tag] += 1
        return {item: ", ".join(t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TAGS])
                for item, c in counts.items()}

    def user_rows(self, keep: set[str]) -> Iterator[list[Any]]:
        if self.people is None:
            return

        def parse(line):
            if self.layout == "100k":
                user, age, gender, occupation, zip_code = _fields(line, "|", 5, "id|age|gender|occupation|zip")
            else:
                user, gender, age, occupation, zip_code = _fields(line, "::", 5,
                                                                  "UserID::Gender::Age::Occupation::Zip-code")
                age = AGES_1M.get(age, age)
                if occupation.isdigit() and int(occupation) < len(OCCUPATIONS_1M):
                    occupation = OCCUPATIONS_1M[int(occupation)]
            return [check_id(user, "user id"), *(clean_text(v) for v in (age, gender, occupation, zip_code))]

        yield from self._rows(self.people, parse)

