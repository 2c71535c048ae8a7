"""Type-check the package as it is imported (``sol.safety`` lives in ``safety/`` etc.).

The top-level folders map onto packages under ``sol`` (pyproject.toml ``package-dir``); mypy
cannot follow an editable install's import hook, so this builds a tree of symlinks with the
installed layout under build/typecheck and runs ``mypy --strict`` on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_view(dest: Path) -> Path:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = cfg["package-dir"]
    if dest.exists():
        shutil.rmtree(dest)
    for package in cfg["packages"]:
        # the folder of a package: its own mapping, or its parent's mapping + the last part
        parts = package.split(".")
        for i in range(len(parts), 0, -1):
            prefix = ".".join(parts[:i])
            if prefix in mapping:
                src = ROOT / mapping[prefix] / Path(*parts[i:])
                break
        else:
            raise SystemExit(f"no package-dir entry covers {package}")
        out = dest / Path(*parts)
        out.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.suffix in (".py", ".pyi") or f.name == "py.typed":
                os.symlink(f, out / f.name)
    return dest


def main(argv: list[str]) -> int:
    view = build_view(ROOT / "build" / "typecheck")
    targets = argv or ["sol"]
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    for t in targets:
        cmd += ["-p", t]
    env = dict(os.environ, MYPYPATH=str(view))
    return subprocess.call(cmd, cwd=view, env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
