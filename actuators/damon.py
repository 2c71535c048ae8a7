"""A kdamond's ``state`` as a knob (DAMON sysfs, Documentation/admin-guide/mm/damon/usage.rst).

Starting sol's kdamond is journaled (kind ``damon.kdamond``) so that a SIGKILLed daemon's
monitor is stopped, and removed again if sol created it, by the next start or ``sol restore``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sol.actuators.file import write_existing
from sol.actuators.restorers import HostRoots, Restorer

__all__ = ["KdamondKnob", "restore_kdamond", "restorers"]


def _write(path: Path, text: str) -> None:
    write_existing(path, text)


class KdamondKnob:
    """A kdamond's ``state`` as a knob (kind ``damon.kdamond``).

    ``read`` is ``{"state": ..., "created": bool}``: whether sol created this kdamond (and so
    removes it on restore) is part of the before-image.
    """

    kind = "damon.kdamond"

    def __init__(self, kdamond: Path, *, created: bool) -> None:
        self.kdamond = kdamond
        self.created = created

    @property
    def target(self) -> str:
        return str(self.kdamond)

    def read(self) -> str:
        state = (self.kdamond / "state").read_text().strip()
        return json.dumps({"state": state, "created": self.created}, sort_keys=True)

    def write(self, raw: str) -> None:
        _write(self.kdamond / "state", raw)

    def matches(self, written: str, readback: str) -> bool:
        try:
            return bool(json.loads(readback).get("state") == written.strip())
        except ValueError:
            return False


def restore_kdamond(target: str, before: Any) -> None:
    """Turn the kdamond off; if sol created it, remove it again (``nr_kdamonds`` back down)."""
    image = json.loads(before) if isinstance(before, str) else before
    kdamond = Path(target)
    if not kdamond.is_dir():
        return  # gone already: nothing runs there
    state = kdamond / "state"
    if state.read_text().strip() != "off" and image.get("state", "off") == "off":
        _write(state, "off")
    if image.get("created"):
        parent = kdamond.parent
        index = int(kdamond.name)
        nr = int((parent / "nr_kdamonds").read_text().strip())
        others_off = all(
            (parent / str(i) / "state").read_text().strip() == "off"
            for i in range(nr)
            if (parent / str(i)).is_dir()
        )
        if nr == index + 1 and others_off:
            _write(parent / "nr_kdamonds", str(index))


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """The knob kinds this module defines, with their restorers."""
    return {"damon.kdamond": restore_kdamond}
