"""A module imported on first use: what only some agents need stays out of every start.

The daemon starts (and restarts, under its unit's ``CPUQuota=``) with whatever the Linux
backend's modules import. numpy costs ~0.15 s and ~15 MiB there, and only page moves and
page-cache residency use it, so the modules that build them reach it through a
:class:`LazyModule`.

Unlike ``importlib.util.LazyLoader`` it does not put a half-made module in ``sys.modules``:
code that asks "is numpy loaded?" (``sys.modules.get("numpy")``, as the validators do to
recognise arrays) gets a true answer.

>>> m = LazyModule("colorsys")
>>> m.rgb_to_hsv(1.0, 0.0, 0.0)
(0.0, 1.0, 1.0)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule"]


class LazyModule:
    """Stands for the module ``name``; the first attribute read imports it."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not loaded yet"
        return f"<LazyModule {self._name!r}, {state}>"
