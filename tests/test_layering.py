"""Imports go one way: sol.kernel <- sol.actuators <- sol.linux (and never the reverse).

``sol.kernel`` reads and parses the kernel's interface files; ``sol.actuators`` is the write
pipeline and its knobs (built on the kernel layer); ``sol.linux`` is the Linux backend's
facilities (built on both). A module-level or function-level import against that direction is
a cycle waiting to happen, and it is what made the Linux code hard to follow before.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> (its folder, the packages it must never import)
RULES = {
    "sol.kernel": (ROOT / "sol" / "kernel", ("sol.actuators", "sol.linux", "sol.runtime", "sol.daemon")),
    "sol.actuators": (ROOT / "actuators", ("sol.linux", "sol.runtime", "sol.daemon")),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    # strings handed to importlib count too: a registry of modules is an import by name
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("sol."):
            out.append((node.lineno, node.value))
    return out


@pytest.mark.parametrize("package", sorted(RULES))
def test_imports_go_one_way(package: str) -> None:
    folder, forbidden = RULES[package]
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted(folder.glob("*.py"))
        for line, name in imports_of(path)
        if name.startswith(forbidden)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_knob_kind_is_registered_by_its_own_module() -> None:
    import importlib

    from sol.actuators.restorers import KNOB_MODULES, HostRoots, default_restorers

    kinds = default_restorers(HostRoots(proc=Path("/nonexistent/proc"), sys=Path("/nonexistent/sys")))
    by_module = {m: set(importlib.import_module(m).restorers(HostRoots())) for m in KNOB_MODULES}
    assert set(kinds) == set().union(*by_module.values())
    assert all(by_module.values()), "a module in KNOB_MODULES registers no kind"
