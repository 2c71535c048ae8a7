"""Errors of the Linux backend: every kernel-interface problem becomes one of these.

A sensor that reads garbage, a file that vanished with its cgroup, a facility the kernel
lacks: each is an exception that names the file (or the feature) and what was wrong, never
a bare ``OSError``/``ValueError`` traceback out of a sensor. The runtime turns a raising
``collect()`` into default predictions (DESIGN §4, guarantee 5), so a clear message is all
the daemon needs to fall back safely.
"""

from __future__ import annotations

import errno as _errno
import os
from pathlib import Path

__all__ = ["SensorError", "Unsupported", "errno_name", "os_problem"]


class SensorError(Exception):
    """A sensor source could not be read, or its content made no sense.

    ``path`` is the file (or the interface, e.g. ``netlink:TASKSTATS``) and ``problem`` what
    was wrong with it; ``errno_name`` is set when the kernel refused the read.

    >>> str(SensorError("/proc/pressure/cpu", "line 1: expected 'some avg10=...', got 'xx'"))
    "/proc/pressure/cpu: line 1: expected 'some avg10=...', got 'xx'"
    """

    def __init__(self, path: str | Path, problem: str, *, errno_name: str | None = None) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.errno_name = errno_name


class Unsupported(SensorError):
    """The host lacks a facility or feature (no such file, no NVML, no DAMON ops...).

    Raised by probes and by the methods that need the feature; ``feature`` names it.
    """

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(feature, f"unsupported: {reason}")
        self.feature = feature
        self.reason = reason





def errno_name(exc: OSError) -> str:
    return _errno.errorcode.get(exc.errno or 0, "EIO")


_HINTS = {
    "ENOENT": "missing: the cgroup or process vanished, the controller is off, or the kernel lacks it",
    "ESRCH": "the process exited",
    "EACCES": "permission denied: needs root",
    "EPERM": "not permitted: needs root (CAP_SYS_ADMIN / CAP_SYS_NICE)",
    "ENODEV": "the device or kernel interface is gone",
    "EBUSY": "busy: in use by another owner",
}


def os_problem(exc: OSError, what: str = "cannot read") -> str:
    """``"cannot read: ENOENT (No such file or directory); missing: ..."``: errno, text, hint."""
    name = errno_name(exc)
    text = exc.strerror or os.strerror(exc.errno or _errno.EIO)
    hint = _HINTS.get(name)
    return f"{what}: {name} ({text})" + (f"; {hint}" if hint else "")
