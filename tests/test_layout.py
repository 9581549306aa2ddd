"""The package's shape: one module per concern, each importing only the modules before it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "search"
# The order data flows in (README.md, Layout).
ORDER = [
    "quiet",
    "data",
    "space",
    "study",
    "budget",
    "options",
    "results",
    "importance",
    "kt_internals",
    "model",
    "hypermodel",
    "plan",
    "progress",
    "tune",
    "processes",
    "distribute",
    "retrain",
    "ensemble",
    "fidelity",
    "compare",
    "report",
    "export",
    "predict",
    "pipeline",
    "api",
    "board",
    "show",
    "cli",
]


def imported(module: str) -> set[str]:
    """The modules of this package that `module` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "search":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("search."):
                found.add(node.module.split(".")[1])
    return found


def test_every_module_is_placed_and_imports_only_modules_before_it():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(ORDER)
    for i, module in enumerate(ORDER):
        later = imported(module) - set(ORDER[:i])
        assert not later, f"search/{module}.py imports {sorted(later)}, placed after it"
