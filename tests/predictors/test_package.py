"""``sol.predictors``: the learners an agent needs, importable from the package, and cheap."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import sol.predictors


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors).failed == 0


def test_the_package_exports_every_learner_its_modules_export() -> None:
    modules = ("base", "conformal", "cost_sensitive", "online", "p2", "quantile", "seasonal")
    exported = set()
    for m in modules:
        module = importlib.import_module(f"sol.predictors.{m}")
        for name in module.__all__:
            exported.add(name)
            assert getattr(sol.predictors, name) is getattr(module, name)
    assert exported == set(sol.predictors.__all__)


def test_importing_the_package_loads_neither_numpy_nor_river() -> None:
    # an agent module imports a learner at the daemon's start: the start must not pay for them
    code = (
        "import sys\n"
        "from sol.predictors import EWMA, RiverRegressor, CostSensitiveClassifier\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'river', 'scipy')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
