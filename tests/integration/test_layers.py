"""Imports run one way: commands -> run modes -> model/data/training -> features/texts -> io/config.

Every ``import`` of a package module (top level or inside a function) is read
from the source, and so is every string constant that names one (an importlib
look-up the import statements cannot show); a module may import its own layer or a lower one, and no
package module imports from ``tests/`` (the loopback server, fixtures, conftest).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ur4rec_recbole"
LAYERS = {  # first path component under the package -> layer (higher may import lower)
    "io": 0, "errors": 0, "registry": 0, "config": 0, "formats": 0, "ranks": 0, "outputs": 1,
    "features": 1, "texts": 1, "convert": 1,
    "model": 2, "data": 2, "training": 2,
    "run": 3, "serve": 3, "generate": 3,
    "cli": 4, "__main__": 4,
}
TESTS = PACKAGE.parent / "tests"
MODULE_STRING = re.compile(r"^ur4rec_recbole(\.\w+)+$")
LOOKUPS_ALLOWED = {  # (file, assigned name): string module names that may point upward, and why
    ("ur4rec_recbole/__init__.py", "API"): "the public re-export, imported lazily on first use",
    ("ur4rec_recbole/registry.py", "MODEL_MODULE"): "name -> class look-ups config/ needs to check a model's settings",
    ("ur4rec_recbole/registry.py", "DATASET_MODULE"): "name -> class look-ups config/ needs to check a model's settings",
    ("ur4rec_recbole/registry.py", "TRAINER_MODULE"): "name -> class look-ups config/ needs to check a model's settings",
}
TEST_MODULES = {p.stem for p in TESTS.rglob("*.py")}  # what sits under tests/: helpers, conftest, test files


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    if part == "__init__":
        return 0
    assert part in LAYERS, f"{module}: add its folder to LAYERS in {__file__}"
    return LAYERS[part]


def package_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names[:1] if n.startswith("ur4rec_recbole")]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("ur4rec_recbole")]
    return found + module_strings(tree, path)


def module_strings(tree: ast.AST, path: Path) -> list[tuple[int, str]]:
    """String constants that name a package module, except in the assignments of LOOKUPS_ALLOWED."""
    where = path.relative_to(PACKAGE.parent).as_posix() if path.is_relative_to(PACKAGE.parent) else str(path)
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and (where, t.id) in LOOKUPS_ALLOWED for t in targets):
                allowed |= {id(n) for n in ast.walk(node)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.match(node.value)
            and id(node) not in allowed]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        for line, target in package_imports(path):
            if target == "ur4rec_recbole":
                continue
            if layer_of(target) > layer_of(here):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_package_module_imports_from_tests():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {n}"
                      for n in names if n.split(".")[0] in TEST_MODULES | {"tests"}]
    assert "loopback" in TEST_MODULES and "conftest" in TEST_MODULES
    assert not found, "package modules that import from tests/:\n" + "\n".join(found)


def test_the_check_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from ur4rec_recbole.run.single import run\n")
    assert package_imports(sample) == [(2, "ur4rec_recbole.run.single")]
    assert layer_of("ur4rec_recbole.run.single") > layer_of("ur4rec_recbole.model.ur4rec")


def test_the_check_sees_module_names_in_strings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('API = {"run": "ur4rec_recbole.run.single"}\n'
                      'def f():\n    return importlib.import_module("ur4rec_recbole.cli.main")\n')
    assert sorted(package_imports(sample)) == [(1, "ur4rec_recbole.run.single"), (3, "ur4rec_recbole.cli.main")]
    listed = [target for _, target in package_imports(PACKAGE / "__init__.py")]  # API is allowed there only
    assert "ur4rec_recbole.serve" not in listed and "ur4rec_recbole.run.quick_start" not in listed
