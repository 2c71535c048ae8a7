"""sol.lazy: a module imported on first use, and never half-registered in sys.modules."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest

import sol.lazy
from sol.lazy import LazyModule


def test_doctests() -> None:
    assert doctest.testmod(sol.lazy).failed == 0


def test_imports_on_first_attribute_and_not_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sol_lazy_probe.py").write_text("LOADS = []\nLOADS.append(1)\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sol_lazy_probe", raising=False)
    m = LazyModule("sol_lazy_probe")
    assert "sol_lazy_probe" not in sys.modules  # "is it loaded?" stays a true answer
    assert "not loaded yet" in repr(m)
    assert m.VALUE == 42
    assert m.LOADS == [1]  # imported once, whatever the number of reads
    assert "sol_lazy_probe" in sys.modules and "loaded" in repr(m)
    monkeypatch.delitem(sys.modules, "sol_lazy_probe")


def test_a_missing_module_fails_at_first_use_with_the_import_error() -> None:
    m = LazyModule("sol_no_such_module_anywhere")
    with pytest.raises(ModuleNotFoundError, match="sol_no_such_module_anywhere"):
        _ = m.anything
