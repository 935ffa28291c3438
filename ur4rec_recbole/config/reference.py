"""The configuration reference, ``docs/configuration.md``, generated from the yaml defaults.

    python -m ur4rec_recbole.config.reference                  # print it
    python -m ur4rec_recbole.config.reference --write docs/configuration.md
    python -m ur4rec_recbole.config.reference --check docs/configuration.md   # exit 1 when it differs

Every setting of ``config/properties/**/*.yaml`` is one line ``key: value  # (type) meaning``
(RecBole's style; a meaning may go on over indented ``#`` lines, or the typed comment may stand on
the line above the key). The reference is made from those lines alone, so it cannot drift from the
defaults: a test regenerates it and compares it with the committed file.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ur4rec_recbole.config import PROPERTIES_DIR

# (file, what it is), in the order the Config reads them (lowest priority first)
PACKAGE_FILES = (
    ("overall.yaml", "every model, this package's and RecBole's"),
    ("texts.yaml", "this package's models"),
    ("images.yaml", "this package's models"),
)
KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.*)$")
TYPED = re.compile(r"^\((\w+)\)\s*(.*)$")
SECTION = re.compile(r"^#\s*---\s*(.*?)\s*---\s*$")

PRIORITY = """\
## Where a setting comes from

Lowest priority first; a later source overrides an earlier one:

1. RecBole's own yaml defaults (`recbole/properties/`; not listed here: see RecBole's documentation);
2. `overall.yaml` (below): every run, this package's models and RecBole's alike;
3. `texts.yaml` and `images.yaml` (below), for this package's models;
4. `model/<model>.yaml` (below);
5. `dataset/<dataset>.yaml` (below): the package's settings for known datasets;
6. the dataset folder's own `DIR/<dataset>/<dataset>.yaml` (`DIR` = `data_path`;
   [your own dataset](guides/own-dataset.md));
7. `--config_files A.yaml B.yaml` (`config_file_list` in Python);
8. `--key=value` on the command line (`config_dict` of `run_ur4rec(...)`).

Dataset settings that none of them sets (`load_col`, `item_text_fields`, `user_profile_fields`)
are chosen from the atomic files' headers (`config/dataset_files.py`). A key that RecBole, this
package and the chosen model do not know is refused, with the file and line it came from.
`--hyper` search spaces are `config/properties/hyper/*.hyper` ([hyperparameter search](guides/hyper.md)).
"""


@dataclass
class Setting:
    key: str
    default: str
    type: str = ""
    meaning: list[str] = field(default_factory=list)


@dataclass
class Section:
    title: str
    notes: list[str] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)


def parse(path: Path) -> tuple[str, list[Section]]:
    """The header comment and the settings (grouped by ``# --- section ---``) of one yaml file."""
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    header: list[str] = []
    sections = [Section("")]
    pending: list[str] = []  # top-level comment lines since the last key
    last: Setting | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or SECTION.match(stripped):
            if pending and not TYPED.match(pending[0]):  # a free comment block: the file's or section's note
                (header if last is None and len(sections) == 1 else sections[-1].notes).append(" ".join(pending))
                pending = []
            if stripped:
                sections.append(Section(SECTION.match(stripped).group(1)))
            continue
        if line.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if line[0].isspace():  # a nested value, or the meaning of the key above going on
            if stripped.startswith("#") and last is not None:
                last.meaning.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        key, rest = match.groups()
        value, _, comment = rest.partition(" #")
        typed = [c for c in pending if TYPED.match(c)]
        notes = [c for c in pending if not TYPED.match(c)]
        if last is None and len(sections) == 1:  # the comment at the top of the file is its header
            header += notes
            notes = []
        comment = comment.strip() or " ".join(typed)
        pending = []
        found = TYPED.match(comment)
        default = value.strip() or yaml.safe_dump(values.get(key), default_flow_style=True, width=10 ** 6).strip()
        meaning = [found.group(2) if found else comment] + ([f"({' '.join(notes)})"] if notes else [])
        last = Setting(key, default, found.group(1) if found else "", meaning)
        sections[-1].settings.append(last)
    return " ".join(header).strip(), [s for s in sections if s.settings or s.notes]


def cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def render_file(relative: str, applies: str) -> str:
    header, sections = parse(PROPERTIES_DIR / relative)
    out = [f"### `{relative}`", ""]
    if header:
        out += [f"{header} (Applies to: {applies}.)", ""]
    for section in sections:
        if section.title:
            out += [f"**{section.title}**", ""]
        out += [note + "\n" for note in section.notes]
        if not section.settings:
            continue
        out += ["| setting | type | default | meaning |", "|---|---|---|---|"]
        for s in section.settings:
            default = "None" if s.default in ("~", "null") else s.default
            out.append(f"| `{s.key}` | {s.type or '–'} | `{cell(default)}` | {cell(' '.join(s.meaning))} |")
        out.append("")
    return "\n".join(out)


def generate() -> str:
    """The whole reference, as it is committed in docs/configuration.md."""
    parts = ["# Configuration reference", "",
             "Generated by `python -m ur4rec_recbole.config.reference --write docs/configuration.md` from the "
             "comments of `ur4rec_recbole/config/properties/**/*.yaml`; do not edit by hand "
             "(`tests/integration/test_docs.py` fails when this file and the yaml files disagree).", "", PRIORITY,
             "## Package settings", ""]
    parts += [render_file(name, applies) for name, applies in PACKAGE_FILES]
    parts += ["## Model settings", ""]
    models = sorted((PROPERTIES_DIR / "model").glob("*.yaml"), key=lambda p: (p.stem != "UR4Rec", p.stem))
    parts += [render_file(f"model/{p.name}", f"`--model {p.stem}`") for p in models]
    parts += ["## Dataset settings", ""]
    datasets = sorted((PROPERTIES_DIR / "dataset").glob("*.yaml"))
    parts += [render_file(f"dataset/{p.name}", f"`--dataset {p.stem}`") for p in datasets]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ur4rec_recbole.config.reference",
                                     description="Print, write or check the configuration reference.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", help="write the reference to PATH")
    group.add_argument("--check", metavar="PATH", help="exit 1 when PATH differs from the generated reference")
    args = parser.parse_args(argv)
    text = generate()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    elif args.check:
        path = Path(args.check)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            print(f"error: {path} is not the generated reference; regenerate it: "
                  f"python -m ur4rec_recbole.config.reference --write {path}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
