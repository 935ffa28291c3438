"""Raw datasets in each source layout the converters read, small enough to train on for one epoch.

Every layout has the same shape: ``N_USERS`` users, each with ``PER_USER``
interactions among ``N_ITEMS`` items in time order (every item is seen by
at least five users), plus what each test needs: a latin-1 title, an HTML
description, a description that starts with a double quote, an item without
metadata, and (Amazon) a sparse user, a rare item and a user who falls under
five interactions only once the rare item is gone (k-core to a fixed point).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
from pathlib import Path

N_USERS, N_ITEMS, PER_USER = 12, 10, 7
GENRES = ["Action", "Comedy", "Drama", "Sci-Fi"]
HTML_DESCRIPTION = '<p>Great &amp; <b>bold</b>\tproduct<br/>with\nlines</p>'
QUOTED_DESCRIPTION = '"Best" glue in town'
NO_METADATA = 9  # the item that has no metadata row in any layout


def sequences() -> dict[int, list[int]]:
    """User -> items in time order; every item is seen by 8 or more users."""
    return {u: [(u + 3 * k) % N_ITEMS for k in range(PER_USER)] for u in range(N_USERS)}


def events() -> list[tuple[int, int, int, int]]:
    """(user, item, rating, time) rows, user by user; times increase within a user."""
    return [(u, i, 1 + (u + i) % 5, 1_000_000 + 1000 * u + 10 * k)
            for u, items in sequences().items() for k, i in enumerate(items)]


def title(item: int) -> str:
    return "Les Misérables (1995)" if item == 1 else f"Movie {item} ({1980 + item})"


def genres(item: int) -> list[str]:
    return [GENRES[item % 4], GENRES[(item + 1) % 4]] if item != 2 else []


def write_ml100k(folder: Path, bad_line: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{u + 1}\t{i + 1}\t{r}\t{t}" for u, i, r, t in events()]
    if bad_line:
        lines.insert(2, "7\tnot enough fields")
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
             "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    rows = []
    for i in range(N_ITEMS):
        if i == NO_METADATA:
            continue
        flags = ["1" if n in genres(i) else "0" for n in names]
        rows.append(f"{i + 1}|{title(i)}|01-Jan-{1980 + i}||http://example.com/{i}|" + "|".join(flags))
    (folder / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("".join(f"{u + 1}|{20 + u}|{'MF'[u % 2]}|writer|0{u}123\n"
                                           for u in range(N_USERS)))
    return folder


def write_ml1m(folder: Path, as_zip: bool = False) -> Path:
    """ML-1M's ``::`` files (latin-1 titles); with ``as_zip`` the folder zipped as GroupLens ships it."""
    files = {
        "ratings.dat": "".join(f"{u + 1}::{i + 1}::{r}::{t}\n" for u, i, r, t in events()).encode(),
        "movies.dat": "".join(f"{i + 1}::{title(i)}::{'|'.join(genres(i)) or 'Drama'}\n"
                              for i in range(N_ITEMS) if i != NO_METADATA).encode("latin-1"),
        "users.dat": "".join(f"{u + 1}::{'MF'[u % 2]}::25::{u % 21}::0{u}123\n" for u in range(N_USERS)).encode(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    if as_zip:
        archive = folder / "ml-1m.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
            for name, data in files.items():
                handle.writestr(f"ml-1m/{name}", data)
        return archive
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_ml_csv(folder: Path) -> Path:
    """ML-20M-style CSVs (UTF-8, quoted titles with commas, half-star ratings, tags)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u + 1},{i + 1},{r - 0.5},{t}\n" for u, i, r, t in events()))
    movies = ["movieId,title,genres"]
    for i in range(N_ITEMS):
        if i != NO_METADATA:
            name = '"American President, The (1995)"' if i == 3 else title(i)
            movies.append(f"{i + 1},{name},{'|'.join(genres(i)) or '(no genres listed)'}")
    (folder / "movies.csv").write_text("\n".join(movies) + "\n", encoding="utf-8")
    tags = ["userId,movieId,tag,timestamp"] + [f"{u + 1},1,{tag},{1000 + u}"
                                               for u, tag in enumerate(["funny", "funny", "sad", '"musical"'])]
    (folder / "tags.csv").write_text("\n".join(tags) + "\n")
    return folder


# --- Amazon -----------------------------------------------------------------------------------------

def amazon_events() -> list[tuple[str, str, int, int]]:
    """The shared events, plus a sparse user, a rare item and a user who only has 5 with the rare item."""
    rows = [(f"U{u}", f"B{i:03d}", r, t) for u, i, r, t in events()]
    rows += [("SPARSE", "B000", 5, 10), ("SPARSE", "B001", 4, 20)]  # 2 reviews: dropped in round 1
    rows += [("EDGE", f"B00{k}", 3, 30 + k) for k in range(4)] + [("EDGE", "RARE", 3, 40)]  # 5, then 4: round 2
    rows += [("U0", "RARE", 2, 50)]  # RARE: 2 users only
    return rows


def amazon_meta(item: int) -> dict:
    return {"title": f"Gadget {item}" if item != 1 else "Crème brûlée torch", "brand": f"Brand{item % 3}",
            "description": HTML_DESCRIPTION if item == 0 else QUOTED_DESCRIPTION if item == 2 else f"Thing {item}",
            "path": ["Beauty", "Tools", f"Kind{item % 2}"]}


def write_amazon(folder: Path, version: int, bad_review: bool = False, bad_meta: bool = False) -> list[Path]:
    """(reviews, metadata) files of Amazon Reviews ``version`` (2014: gz + Python-literal metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    reviews, metas = [], []
    for user, item, rating, time in amazon_events():
        if version == 2023:
            reviews.append(json.dumps({"rating": float(rating), "title": "ok", "text": "fine", "asin": item + "X",
                                       "parent_asin": item, "user_id": user, "timestamp": time * 1000}))
        else:
            reviews.append(json.dumps({"reviewerID": user, "asin": item, "overall": float(rating),
                                       "unixReviewTime": time, "reviewText": "fine"}))
    if bad_review:
        reviews.insert(3, '{"reviewerID": "U1", "asin": ')
    for i in range(N_ITEMS):
        if i == NO_METADATA:
            continue
        meta = amazon_meta(i)
        token = f"B{i:03d}"
        image = f"http://127.0.0.1:1/images/{token}.jpg"
        if version == 2014:
            record = {"asin": token, "title": meta["title"], "brand": meta["brand"], "imUrl": image,
                      "categories": [meta["path"], ["Beauty", "Gift Sets"]], "description": meta["description"]}
            metas.append(repr(record))  # a Python literal, as the 2014 files are
        elif version == 2018:
            metas.append(json.dumps({"asin": token, "title": meta["title"], "brand": meta["brand"],
                                     "category": meta["path"], "description": [meta["description"], "More."],
                                     "feature": ["Light", "Strong"], "imageURL": [image + "?small"],
                                     "imageURLHighRes": [image]}))
        else:
            metas.append(json.dumps({"parent_asin": token, "title": meta["title"], "store": meta["brand"],
                                     "categories": meta["path"], "description": [meta["description"]],
                                     "features": ["Light"], "main_category": "All Beauty",
                                     "images": [{"thumb": image + "?t", "large": image, "variant": "MAIN"}]}))
    if bad_meta:
        metas.insert(4, "{'asin': 'B004', 'title': ")
    names = {2014: ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz"), 2018: ("Beauty_5.json", "meta_Beauty.json"),
             2023: ("Beauty.jsonl", "meta_Beauty.jsonl.gz")}[version]
    paths = []
    for name, lines in zip(names, (reviews, metas)):
        data = ("\n".join(lines) + "\n").encode()
        path = folder / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        paths.append(path)
    return paths


# --- LC-Rec and CSV ---------------------------------------------------------------------------------

def write_lcrec(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inter = {str(u): items for u, items in sequences().items()}
    items = {str(i): {"title": amazon_meta(i)["title"], "brand": amazon_meta(i)["brand"],
                      "categories": ", ".join(amazon_meta(i)["path"]), "description": amazon_meta(i)["description"]}
             for i in range(N_ITEMS) if i != NO_METADATA}
    (folder / "Shop.inter.json.xz").write_bytes(lzma.compress(json.dumps(inter, indent=4).encode()))
    (folder / "Shop.item.json.bz2").write_bytes(bz2.compress(json.dumps(items, indent=4).encode()))
    return folder


def write_csv(folder: Path) -> tuple[Path, Path]:
    """Interactions (ISO dates, semicolons) and an item table with text columns."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["customer;product;when;stars"] + [
        f"c{u};p{i};2021-01-{1 + u % 28:02d}T10:{k:02d}:00;{r}"
        for u, items in sequences().items() for k, (i, r) in enumerate((i, 1 + i % 5) for i in items)]
    (folder / "clicks.csv").write_text("\n".join(rows) + "\n")
    items = ["product;Product Name;Kind;Blurb"] + [
        f'p{i};{amazon_meta(i)["title"]};Kind{i % 2};"{amazon_meta(i)["description"].replace(chr(34), chr(34) * 2)}"'
        for i in range(N_ITEMS) if i != NO_METADATA]
    (folder / "items.csv").write_text("\n".join(items) + "\n")
    return folder / "clicks.csv", folder / "items.csv"
