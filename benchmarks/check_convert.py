"""Check the ``lcrec`` converter against the shared amazon-office atomic files.

    python benchmarks/check_convert.py [--shared ../shared/datasets/amazon-office] \\
        [--results benchmarks/results/convert-amazon-office.json]

Converts ``<shared>/raw/`` with ``python -m ur4rec_recbole convert lcrec`` into
a temporary folder and compares the result with ``<shared>/amazon-office/``
(made by ``make_atomic.py``), both read as RecBole 1.2.1 reads atomic files:
the users, the items, every user's sequence (items in timestamp order, and the
timestamps), every item's text columns and the yaml settings. The reference
prefixes ids (``u0``, ``i0``); the converter keeps the source's ids (``0``), so
the prefixes are removed before comparing. Prints a verdict (SAME or
DIFFERENT with the first differences) and writes it to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ur4rec_recbole.cli import convert  # noqa: E402

NAME = "amazon-office"
SETTINGS = ("load_col", "item_text_fields", "user_profile_fields")


def read_atomic(path: Path) -> pd.DataFrame:
    """An atomic file as RecBole's ``Dataset._load_feat`` reads it (python engine, tab, strings)."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline()[:-1].split("\t")
    table = pd.read_csv(path, delimiter="\t", dtype=str, engine="python", keep_default_na=True)
    table.columns = [h.split(":")[0] for h in header]
    return table.fillna("")


def unprefix(values: pd.Series, prefix: str) -> pd.Series:
    assert values.str.startswith(prefix).all(), f"reference ids without the {prefix!r} prefix"
    return values.str[len(prefix):]


def sequences(inter: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    inter = inter.assign(timestamp=inter["timestamp"].astype(float))
    ordered = inter.sort_values(["user_id", "timestamp"], kind="stable")
    return {user: list(zip(group["item_id"], group["timestamp"])) for user, group in ordered.groupby("user_id")}


def _same_bytes(reference: Path, converted: Path, prefixes: tuple[str, ...]) -> bool:
    """Whether the files are the same line for line once the reference's id prefixes are removed."""
    with open(reference, encoding="utf-8") as ref, open(converted, encoding="utf-8") as new:
        ref_lines, new_lines = ref.readlines(), new.readlines()
    if len(ref_lines) != len(new_lines) or ref_lines[0] != new_lines[0]:
        return False
    for ref_line, new_line in zip(ref_lines[1:], new_lines[1:]):
        cells = ref_line.split("\t")
        cells[:len(prefixes)] = [c[len(p):] for c, p in zip(cells, prefixes)]
        if "\t".join(cells) != new_line:
            return False
    return True


def compare(reference: Path, converted: Path) -> dict:
    ref_inter, new_inter = read_atomic(reference / f"{NAME}.inter"), read_atomic(converted / f"{NAME}.inter")
    ref_item, new_item = read_atomic(reference / f"{NAME}.item"), read_atomic(converted / f"{NAME}.item")
    ref_inter["user_id"] = unprefix(ref_inter["user_id"], "u")
    ref_inter["item_id"] = unprefix(ref_inter["item_id"], "i")
    ref_item["item_id"] = unprefix(ref_item["item_id"], "i")
    differences: list[str] = []

    ref_users, new_users = set(ref_inter["user_id"]), set(new_inter["user_id"])
    ref_items, new_items = set(ref_inter["item_id"]) | set(ref_item["item_id"]), \
        set(new_inter["item_id"]) | set(new_item["item_id"])
    if ref_users != new_users:
        differences.append(f"users: {len(ref_users ^ new_users)} differ, e.g. {sorted(ref_users ^ new_users)[:5]}")
    if ref_items != new_items:
        differences.append(f"items: {len(ref_items ^ new_items)} differ, e.g. {sorted(ref_items ^ new_items)[:5]}")
    ref_seq, new_seq = sequences(ref_inter), sequences(new_inter)
    bad_seq = [u for u in ref_seq if ref_seq[u] != new_seq.get(u)]
    if bad_seq:
        differences.append(f"sequences: {len(bad_seq)} users differ, e.g. user {bad_seq[0]}: "
                           f"{ref_seq[bad_seq[0]][:5]} vs {new_seq.get(bad_seq[0], [])[:5]}")

    columns = [c for c in ref_item.columns if c != "item_id"]
    if list(new_item.columns) != list(ref_item.columns):
        differences.append(f"item columns: {list(ref_item.columns)} vs {list(new_item.columns)}")
    ref_rows = ref_item.set_index("item_id")
    new_rows = new_item.set_index("item_id").reindex(ref_rows.index)
    text_diffs = {}
    for column in columns:
        if column not in new_rows:
            continue
        differ = ref_rows[column] != new_rows[column].fillna("<missing>")
        text_diffs[column] = int(differ.sum())
        if differ.any():
            item = differ[differ].index[0]
            differences.append(f"{column}: {int(differ.sum())} items differ, e.g. item {item}: "
                               f"{ref_rows.at[item, column]!r} vs {new_rows.at[item, column]!r}")

    ref_yaml = yaml.safe_load((reference / f"{NAME}.yaml").read_text())
    new_yaml = yaml.safe_load((converted / f"{NAME}.yaml").read_text())
    for key in SETTINGS:
        if ref_yaml.get(key) != new_yaml.get(key):
            differences.append(f"yaml {key}: {ref_yaml.get(key)} vs {new_yaml.get(key)}")
    identical = {suffix: _same_bytes(reference / f"{NAME}.{suffix}", converted / f"{NAME}.{suffix}", prefixes)
                 for suffix, prefixes in (("inter", ("u", "i")), ("item", ("i",)))}
    return {
        "files_identical_but_id_prefixes": identical,
        "users": len(new_users), "items": len(new_items), "interactions": len(new_inter),
        "reference": {"users": len(ref_users), "items": len(ref_items), "interactions": len(ref_inter)},
        "sequences_compared": len(ref_seq), "item_columns_compared": columns,
        "items_differing_per_column": text_diffs, "yaml_settings_compared": list(SETTINGS),
        "differences": differences,
        "verdict": "SAME" if not differences else "DIFFERENT",
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets" / "amazon-office")
    parser.add_argument("--results", type=Path, default=None, help="write the comparison as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        command = ["lcrec", str(args.shared / "raw"), "--name", NAME, "--out", tmp]
        report = convert.main(command)
        result = compare(args.shared / NAME, Path(tmp) / NAME)
    result["command"] = "python -m ur4rec_recbole convert " + " ".join(command[:-1]) + " TMP"
    result["convert_report"] = {k: v for k, v in report.as_json().items() if k in ("read", "kept", "rows")}
    print(f"{result['verdict']}: {result['users']:,} users, {result['items']:,} items, "
          f"{result['interactions']:,} interactions; compared {result['sequences_compared']:,} sequences, "
          f"item columns {', '.join(result['item_columns_compared'])} and yaml {', '.join(SETTINGS)}; "
          f"files identical but for the id prefixes: "
          f"{', '.join(k for k, v in result['files_identical_but_id_prefixes'].items() if v) or 'none'}")
    for line in result["differences"]:
        print("  " + line)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
