"""Imports run one way: commands -> run modes -> model/data/training -> features/texts -> io/config.

Every ``import`` of a package module (top level or inside a function) is read
from the source; a module may import its own layer or a lower one, and no
package module imports from ``tests/`` (the loopback server, fixtures, conftest).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ur4rec_recbole"
LAYERS = {  # first path component under the package -> layer (higher may import lower)
    "io": 0, "errors": 0, "registry": 0, "config": 0, "formats": 0,
    "features": 1, "texts": 1, "convert": 1,
    "model": 2, "data": 2, "training": 2,
    "run": 3, "serve": 3, "generate": 3,
    "cli": 4, "__main__": 4,
}
TESTS = PACKAGE.parent / "tests"
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
    return found


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
