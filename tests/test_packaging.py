"""The package layout of DESIGN §2 is what pyproject.toml installs."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if any(part.startswith((".", "_")) or part == "__pycache__" for part in rel.parts):
                continue
            name = ".".join([package, *rel.parts])
            # a sub-folder mapped on its own (sol.agents under sol/) belongs to that mapping
            if any(name != p and name.startswith(p + ".") and p in mapping and p != package for p in mapping):
                continue
            found.add(name)
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_every_listed_package_imports() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in cfg["packages"]:
        importlib.import_module(package)
