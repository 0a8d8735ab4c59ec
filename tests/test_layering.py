"""The design guide's layering, checked on the source: trainables/ imports neither search/ nor analysis/, and
analysis/ does not import search/ (what both need lives below both, e.g. trainables/experiment.py and
trainables/presets.py)."""
from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

FORBIDDEN = {"trainables": ("search", "analysis"), "analysis": ("search",), "spaces": ("search", "analysis")}


def imported_packages(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):  # function-level imports count too
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_up_the_layers(package):
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in sorted((REPO / package).rglob("*.py"))
           for m in imported_packages(p) if m in FORBIDDEN[package]]
    assert not bad, bad


def test_the_experiment_folder_names_are_defined_once():
    """spec.json, asha_state.json, optuna.db and evaluation.json are spelled out only in trainables/experiment.py."""
    names = ('"spec.json"', '"asha_state.json"', '"optuna.db"', '"evaluation.json"', "/optuna.db")
    spelled = [f"{p.relative_to(REPO)}: {n}" for package in ("search", "analysis", "trainables")
               for p in sorted((REPO / package).rglob("*.py")) if p.name != "experiment.py"
               for n in names if n in p.read_text()]
    assert not spelled, spelled
