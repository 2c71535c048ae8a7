"""Restorers: how a before-image of each knob kind is put back on the host.

The undo journal stores ``(kind, target, before)``; at restore it calls
``restorers[kind](target, before)``. A restorer raises on failure (the record then stays open
and the restore is reported as failed); an unknown kind is a reported failure too, naming the
known kinds. Each module of knobs registers its own kinds (``restorers(roots)``, listed in
:data:`KNOB_MODULES`), with the host roots injected.

>>> sorted(default_restorers())  # doctest: +ELLIPSIS
['damon.kdamond', 'damos.scheme', 'file', ...]
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from sol.actuators.file import read_text, write_existing

__all__ = [
    "KNOB_MODULES",
    "HostRoots",
    "Identity",
    "RestoreMismatch",
    "Restorer",
    "Scope",
    "TargetScope",
    "default_identities",
    "default_restorers",
    "file_identity",
    "pid_identity",
    "restore_file",
    "restorers",
]

#: ``restorer(target, before)``: put ``before`` back on ``target``; raise on failure.
Restorer: TypeAlias = Callable[[str, Any], None]
#: ``identity(target)``: what tells this object from a new one of the same name (``None``: gone).
Identity: TypeAlias = Callable[[str], "str | None"]


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


@dataclass(frozen=True, slots=True)
class HostRoots:
    """Where the host's ``/proc`` and ``/sys`` are (a container, a test's fake tree)."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")

    @classmethod
    def from_linux(cls, linux: Any) -> HostRoots:
        """The roots of a ``[linux]`` config section (:class:`sol.config.LinuxConfig`)."""
        return cls(proc=linux.proc_root, sys=linux.sys_root)


#: The modules that define knob kinds. Each registers its own kinds: a function
#: ``restorers(roots) -> {kind: restorer}`` beside the knob classes. A new kind is one entry in
#: its module's ``restorers``; a new module of knobs is one line here. All are cheap to import
#: (heavy libraries such as pyroute2 and pynvml load only when a restorer runs).
KNOB_MODULES = (
    "sol.actuators.restorers",
    "sol.actuators.numa",
    "sol.actuators.damon",
    "sol.actuators.nvml",
    "sol.actuators.pagecache",
    "sol.actuators.tc",
)


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """This module's own kind: plain files (cgroup knobs)."""
    return {"file": restore_file}


def default_restorers(roots: HostRoots | None = None) -> dict[str, Restorer]:
    """The restorer of every knob kind sol writes, each registered by the module of its knob."""
    roots = roots if roots is not None else HostRoots()
    out: dict[str, Restorer] = {}
    for name in KNOB_MODULES:
        for kind, restore in importlib.import_module(name).restorers(roots).items():
            if kind in out:
                raise RuntimeError(f"knob kind {kind!r} is registered twice (again by {name})")
            out[kind] = restore
    return out


# -- identities: the same object, not just the same name ------------------------------------
def file_identity(target: str) -> str | None:
    """``dev:ino`` of a file, ``None`` if it is gone.

    A cgroup removed and created again under the same name has new kernfs inodes (checked on
    cgroup v1 and v2), so a before-image of the old group is never written to the new one.
    """
    try:
        st = os.stat(target)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return f"{st.st_dev}:{st.st_ino}"


def pid_identity(target: str, *, proc_root: Path = Path("/proc")) -> str | None:
    """``pid@starttime`` of the process a ``numa.*`` target names (``PID`` or ``PID:range``),
    ``None`` if it has exited: a reused pid is another process, whose pages sol never moved."""
    pid = target.partition(":")[0]
    if not pid.isdigit():
        return None
    try:
        stat_line = (proc_root / pid / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # field 22 (starttime) counted after the last ')': the command name may hold spaces
    fields = stat_line.rpartition(")")[2].split()
    return f"{pid}@{fields[19]}" if len(fields) > 19 else None


def default_identities(roots: HostRoots | None = None) -> dict[str, Identity]:
    """Per knob kind, how a restore tells the object sol wrote from a new one of its name."""
    proc = (roots if roots is not None else HostRoots()).proc

    def pid(target: str) -> str | None:
        return pid_identity(target, proc_root=proc)

    return {"file": file_identity, "numa.pages": pid, "numa.process": pid}


# -- scope: the knobs this sol may write, whatever a journal says ----------------------------
class Scope(Protocol):
    def refuses(self, kind: str, target: str) -> str | None:
        """Why a restore must not write ``target`` (of ``kind``); ``None`` when it may."""
        ...


_PID_TARGET = re.compile(r"^[0-9]{1,10}(:0x[0-9a-f]+-0x[0-9a-f]+)?$")
_GPU_TARGET = re.compile(r"^([0-9]{1,3}|GPU-[0-9a-fA-F-]{8,64})$")
_TC_TARGET = re.compile(r"^[A-Za-z0-9_.:-]{0,255}\|[A-Za-z0-9_.@-]{1,15}(\|[0-9a-f]{1,4}:[0-9a-f]{1,4})?$")


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path != root and path.is_relative_to(root) for root in roots)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


@dataclass(frozen=True, slots=True)
class TargetScope:
    """Which targets are this sol's own knobs; a restore writes nothing else.

    The journal is a file: whoever could write it (or the config that names it) could list any
    root-owned file as a "before-image" to put back. Restore therefore checks every record
    against what the backend itself writes: cgroup knob files under the cgroup root (only the
    files sol's cgroup resources use: never ``release_agent``, ``cgroup.procs`` or ``tasks``),
    DAMON's sysfs under the sys root, the page cache of files in the configured cache
    directory, and NUMA placement, NVML limits and tc qdiscs by well-formed names. Paths are
    resolved first, so a symlink cannot lead out of a root.

    >>> scope = TargetScope(cgroup_root=Path("/sys/fs/cgroup"), sys_root=Path("/sys"))
    >>> scope.refuses("file", "/sys/fs/cgroup/cpu/sol-harvest/cpu.cfs_quota_us") is None
    True
    >>> scope.refuses("file", "/etc/shadow")
    'file /etc/shadow is not a cgroup knob under /sys/fs/cgroup'
    >>> scope.refuses("file", "/sys/fs/cgroup/cpu/release_agent")
    'file /sys/fs/cgroup/cpu/release_agent is not a cgroup knob sol writes (release_agent)'
    """

    cgroup_root: Path
    sys_root: Path
    cache_dir: Path | None = None

    @classmethod
    def from_linux(cls, linux: Any) -> TargetScope:
        """The scope of a ``[linux]`` config section (:class:`sol.config.LinuxConfig`)."""
        return cls(cgroup_root=linux.cgroup_root, sys_root=linux.sys_root, cache_dir=linux.faas.cache_dir)

    @staticmethod
    def cgroup_files() -> frozenset[str]:
        """Every file name sol's cgroup resources write (v1 and v2)."""
        from sol.actuators import cgroup

        names: set[str] = set()
        for value in vars(cgroup).values():
            if isinstance(value, cgroup.CgroupResource):
                names.update(value.v1_files)
                if value.v2_file:
                    names.add(value.v2_file)
        return frozenset(names)

    def refuses(self, kind: str, target: str) -> str | None:
        """Why ``target`` (of ``kind``) is not one of this sol's knobs; ``None`` if it is."""
        if kind == "file":
            path = _real(Path(target))
            root = _real(self.cgroup_root)
            if not _within(path.parent, [root]):
                return f"file {target} is not a cgroup knob under {self.cgroup_root}"
            if path.name not in self.cgroup_files():
                return f"file {target} is not a cgroup knob sol writes ({path.name})"
            return None
        if kind in ("damon.kdamond", "damos.scheme"):
            admin = _real(self.sys_root / "kernel/mm/damon/admin")
            if not _within(_real(Path(target)), [admin]):
                return f"{kind} {target} is not under DAMON's sysfs {admin}"
            return None
        if kind == "pagecache":
            if self.cache_dir is None:
                return f"pagecache {target}: no [linux.faas] cache_dir is configured"
            if not _within(_real(Path(target)), [_real(self.cache_dir)]):
                return f"pagecache {target} is not in the cache directory {self.cache_dir}"
            return None
        if kind in ("numa.pages", "numa.process"):
            ok = _PID_TARGET.match(target)
            return None if ok else f"{kind} target {target!r} is not a pid (and range)"
        if kind in ("nvml.power_limit", "nvml.clocks"):
            return (
                None if _GPU_TARGET.match(target) else f"{kind} target {target!r} is not a GPU index or UUID"
            )
        if kind in ("tc.qdisc", "tc.class"):
            return (
                None
                if _TC_TARGET.match(target)
                else f"{kind} target {target!r} is not netns|ifname[|classid]"
            )
        return f"unknown knob kind {kind!r}"
