"""Restorers: how a before-image of each knob kind is put back on the host.

The undo journal stores ``(kind, target, before)``; at restore it calls
``restorers[kind](target, before)``. A restorer raises on failure (the record then stays open
and the restore is reported as failed); an unknown kind is a reported failure too, naming the
known kinds. Adding a kind is one entry in :func:`default_restorers`.

>>> sorted(default_restorers())  # doctest: +ELLIPSIS
['damon.kdamond', 'damos.scheme', 'file', ...]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from sol.actuators.file import read_text, write_existing

__all__ = ["RestoreMismatch", "Restorer", "default_restorers", "restore_file"]

#: ``restorer(target, before)``: put ``before`` back on ``target``; raise on failure.
Restorer: TypeAlias = Callable[[str, Any], None]


class RestoreMismatch(Exception):
    """The knob did not read back the before-image after it was written back."""


def restore_file(target: str, before: Any) -> None:
    """Write the text ``before`` back to the existing file ``target``, then verify it.

    Same semantics as :class:`~sol.actuators.file.FileKnob`: never creates the file (a knob
    that has vanished, e.g. a removed cgroup, is ``ENOENT``: there is nothing left to restore).
    The before-image is what the kernel printed, so it reads back identically, modulo
    surrounding whitespace.
    """
    if not isinstance(before, str):
        raise TypeError(f"file before-image must be text, got {type(before).__name__}")
    path = Path(target)
    write_existing(path, before)
    readback = read_text(path)
    if readback.strip() != before.strip():
        raise RestoreMismatch(f"{target} reads back {readback.strip()!r}, expected {before.strip()!r}")


def default_restorers() -> dict[str, Restorer]:
    """The restorer of every knob kind sol writes. A new kind: add one line here."""
    return {
        "file": restore_file,
        "numa.pages": lambda t, b: __import__("sol.actuators.numa", fromlist=["_"]).restore_pages(t, b),
        "numa.process": lambda t, b: __import__("sol.actuators.numa", fromlist=["_"]).restore_process(t, b),
        "damos.scheme": lambda t, b: __import__("sol.actuators.numa", fromlist=["_"]).restore_damos(t, b),
        "damon.kdamond": lambda t, b: __import__("sol.linux.damon", fromlist=["_"]).restore_kdamond(t, b),
        "nvml.power_limit": lambda t, b: __import__("sol.actuators.nvml", fromlist=["_"]).restore_limit(t, b),
        "nvml.clocks": lambda t, b: __import__("sol.actuators.nvml", fromlist=["_"]).restore_clocks(t, b),
        "pagecache": lambda t, b: __import__("sol.actuators.pagecache", fromlist=["_"]).restore_advice(t, b),
        "tc.qdisc": lambda t, b: __import__("sol.actuators.tc", fromlist=["_"]).restore_qdisc(t, b),
        "tc.class": lambda t, b: __import__("sol.actuators.tc", fromlist=["_"]).restore_class(t, b),
    }
