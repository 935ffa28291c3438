"""The documentation cannot drift: the configuration reference is the generated one, every relative
link of README.md and docs/ resolves (file and #anchor), and every documented command's --help runs
(``python -m ur4rec_recbole ...``, ``python run_ur4rec.py``, ``python benchmarks/X.py``)."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ur4rec_recbole.__main__ import COMMANDS
from ur4rec_recbole.config import PROPERTIES_DIR
from ur4rec_recbole.config import reference
from ur4rec_recbole.convert import FORMATS

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*```")


def prose_lines(path: Path):
    """(line number, line) outside fenced code blocks."""
    inside = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            yield number, line


def code_lines(path: Path):
    """Lines of fenced code blocks, and inline code spans of the prose."""
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside:
            yield line
        else:
            yield from re.findall(r"`([^`]+)`", line)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line in prose_lines(path) if re.match(r"^#{1,6} ", line)}


def test_configuration_reference_is_the_generated_one():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference.generate(), (
        "docs/configuration.md differs from the yaml files: python -m ur4rec_recbole.config.reference "
        "--write docs/configuration.md")


@pytest.mark.parametrize("path", sorted(PROPERTIES_DIR.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_setting_has_a_type_and_a_meaning(path):
    _, sections = reference.parse(path)
    parsed = {s.key: s for section in sections for s in section.settings}
    assert set(parsed) == set(yaml.safe_load(path.read_text()) or {})
    for setting in parsed.values():
        assert setting.type in ("bool", "int", "float", "str", "list", "dict"), (path.name, setting.key)
        assert " ".join(setting.meaning).strip(), (path.name, setting.key)


def test_reference_parses_a_typed_comment_above_and_a_continued_meaning(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("# The header.\n\n# --- part ---\na: 1   # (int) First\n   # and more.\n"
                    "# (list) Second.\nb: [x, y]\nc:\n  d: 2\n")
    header, sections = reference.parse(path)
    assert header == "The header."
    (section,) = sections
    a, b, c = section.settings
    assert (section.title, a.type, " ".join(a.meaning), a.default) == ("part", "int", "First and more.", "1")
    assert (b.type, b.meaning, b.default) == ("list", ["Second."], "[x, y]")
    assert c.default == "{d: 2}" and c.type == ""


def test_reference_check_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(reference.generate().replace("| `seed` |", "| `seeds` |"))
    assert reference.main(["--check", str(stale)]) == 1
    assert "regenerate it" in capsys.readouterr().err
    reference.main(["--write", str(stale)])
    assert reference.main(["--check", str(stale)]) == 0


def relative_links():
    for path in DOCS:
        for number, line in prose_lines(path):
            for target in LINK.findall(line):
                if not re.match(r"^[a-z]+:", target):
                    yield path, number, target


def test_docs_have_relative_links():
    assert len(list(relative_links())) > 50


def test_every_relative_link_resolves():
    broken = []
    for path, number, target in relative_links():
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.exists():
            broken.append(where)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(where + " (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def documented_commands() -> set[tuple[str, ...]]:
    """Distinct commands shown in code blocks, as the argv of their --help."""
    found = set()
    for path in DOCS:
        for line in code_lines(path):
            for match in re.finditer(r"python (?:-m (ur4rec_recbole(?:\.[\w.]+)?)|run_ur4rec\.py)((?: [\w-]+)*)", line):
                module = match.group(1) or "ur4rec_recbole"
                words = match.group(2).split()
                if module != "ur4rec_recbole":
                    found.add((module,))
                elif words and words[0] in COMMANDS:
                    fmt = words[1:2] if words[0] == "convert" and words[1:2] and words[1] in FORMATS else []
                    found.add((module, words[0], *fmt))
                else:
                    found.add((module, "run"))
    return found


def test_documented_commands_are_found():
    commands = documented_commands()
    for expected in [("ur4rec_recbole", "run"), ("ur4rec_recbole", "generate"), ("ur4rec_recbole", "recommend"),
                     ("ur4rec_recbole", "convert", "csv"), ("ur4rec_recbole.config.reference",)]:
        assert expected in commands


@pytest.mark.parametrize("argv", sorted(documented_commands()), ids=" ".join)
def test_documented_command_help_runs(argv):
    module, *words = argv
    main = importlib.import_module("ur4rec_recbole.__main__" if module == "ur4rec_recbole" else module).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code in (0, None)
    assert "usage" in out.getvalue().lower()


def documented_scripts() -> set[str]:
    """The repository's scripts shown as ``python benchmarks/X.py ...`` (or ``python tests/helpers/X.py``)."""
    return {match for path in DOCS for line in code_lines(path)
            for match in re.findall(r"python ((?:benchmarks|tests/helpers)/\w+\.py)", line)}


def test_documented_scripts_exist():
    scripts = documented_scripts()
    assert "benchmarks/speed.py" in scripts
    assert all((ROOT / script).is_file() for script in scripts), sorted(scripts)


@pytest.mark.parametrize("script", sorted(documented_scripts()))
def test_documented_script_help_runs(script):
    done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr[-2000:]
