"""Every library the code imports is declared in pyproject.toml: the packages' in ``[project].dependencies``, the
tests' there or in the ``test`` extra. Import names are mapped to distributions by the installed metadata
(``yaml`` -> PyYAML, ``sklearn`` -> scikit-learn, ``PIL`` -> pillow), not by a hand-kept table."""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

import pytest

from tests.conftest import REPO

PACKAGES = ("search", "trainables", "analysis", "benchmarks", "spaces")


def imported(folders) -> dict[str, set[str]]:
    """top-level module -> files importing it (function-level imports count too), stdlib and our own left out."""
    out: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in (*PACKAGES, "tests"):
                        out.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return out


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> set[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    return {normal(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}


def undeclared(modules: dict[str, set[str]], allowed: set[str]) -> list[str]:
    dists = packages_distributions()
    out = []
    for module, files in sorted(modules.items()):
        candidates = {normal(d) for d in dists.get(module, [module])}
        if not candidates & allowed:
            out.append(f"{module} (distribution {'/'.join(sorted(candidates))}; imported in {', '.join(sorted(files))})")
    return out


def test_every_package_the_code_imports_is_a_dependency():
    # An optional feature's library may come from its extra: search/trackers.py names the extra when it is missing.
    missing = undeclared(imported(PACKAGES), declared("mlflow"))
    assert not missing, "add to [project].dependencies in pyproject.toml: " + "; ".join(missing)


def test_every_package_the_tests_import_is_declared():
    missing = undeclared(imported(["tests"]), declared("test"))
    assert not missing, "add to the test extra in pyproject.toml: " + "; ".join(missing)
