"""Where the cgroup files are: v1, v2 or hybrid, detected from a root passed in.

* **v2** (Documentation/admin-guide/cgroup-v2.rst): one hierarchy; ``cgroup.controllers``
  exists at its root. Files: ``cpu.stat``, ``cpu.max``, ``cpu.weight``, ``cpuset.cpus``,
  ``cpu.pressure``, ``cgroup.threads`` ...
* **v1** (Documentation/admin-guide/cgroup-v1/): one hierarchy per controller (or per
  co-mounted set, e.g. ``cpu,cpuacct``), mounted as sub-directories of the root. A **hybrid**
  host adds a v2 hierarchy at ``<root>/unified`` (systemd's layout; it carries the PSI files).

Each controller's directory is found by the file only it has (``cpuset.cpus``,
``cpuacct.usage``, ...), never by parsing mount tables, so a fake tree in a test directory
is a complete host. Groups are paths relative to a hierarchy's root (``""`` is the root).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "cgroup.controllers").write_text("cpuset cpu memory\\n")
>>> layout = CgroupLayout.detect(root)
>>> layout.version, layout.path("cpu", "sol-harvest") == root / "sol-harvest"
(2, True)
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sol.kernel.errors import SensorError, Unsupported
from sol.kernel.procfs import read_file

__all__ = ["V1_MARKERS", "CgroupLayout", "check_group_name"]

#: The file that identifies each v1 controller's hierarchy.
V1_MARKERS: Mapping[str, str] = {
    "cpu": "cpu.shares",
    "cpuacct": "cpuacct.usage",
    "cpuset": "cpuset.cpus",
    "memory": "memory.limit_in_bytes",
}


def check_group_name(group: str) -> str:
    """A relative cgroup path: no ``..``, no absolute path, no empty components."""
    if group == "":
        return group
    parts = group.split("/")
    if group.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad cgroup path {group!r}: must be relative, without '.', '..' or '//'")
    return group


@dataclass(frozen=True)
class CgroupLayout:
    root: Path
    version: Literal[1, 2]
    #: the v2 hierarchy: the root on a v2 host, ``<root>/unified`` on a hybrid one
    unified: Path | None
    #: v1 controller -> its hierarchy's directory
    v1: Mapping[str, Path] = field(default_factory=dict)
    #: controllers the v2 root offers (``cgroup.controllers``)
    v2_controllers: frozenset[str] = frozenset()

    @classmethod
    def detect(cls, root: Path) -> CgroupLayout:
        root = Path(root)
        if (root / "cgroup.controllers").is_file():
            return cls(root, 2, root, {}, cls._controllers(root))
        found: dict[str, Path] = {}
        try:
            subdirs = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError as exc:
            raise Unsupported("cgroup", f"cannot list {root}: {exc.strerror or exc}") from exc
        for controller, marker in V1_MARKERS.items():
            for d in subdirs:
                if (d / marker).is_file():
                    found[controller] = d
                    break
        unified = root / "unified"
        has_unified = (unified / "cgroup.controllers").is_file()
        if not found:
            raise Unsupported(
                "cgroup", f"no cgroup hierarchy under {root} (neither cgroup.controllers nor v1 controllers)"
            )
        return cls(
            root,
            1,
            unified if has_unified else None,
            found,
            cls._controllers(unified) if has_unified else frozenset(),
        )

    @staticmethod
    def _controllers(v2_root: Path) -> frozenset[str]:
        try:
            return frozenset(read_file(v2_root / "cgroup.controllers").split())
        except SensorError:
            return frozenset()

    def describe(self) -> str:
        if self.version == 2:
            return (
                f"cgroup v2 at {self.root} (controllers: {' '.join(sorted(self.v2_controllers)) or 'none'})"
            )
        ctl = ", ".join(f"{c}={p.name}" for c, p in sorted(self.v1.items()))
        extra = f", v2 (PSI) at {self.unified}" if self.unified is not None else ""
        return f"cgroup v1 at {self.root} ({ctl}){extra}"

    def has(self, controller: str) -> bool:
        if self.version == 2:
            # cpu.stat and the PSI files exist without any controller enabled
            return controller in self.v2_controllers or controller in ("cpuacct", "psi")
        if controller == "psi":
            return self.unified is not None
        return controller in self.v1

    def hierarchy(self, controller: str) -> Path:
        """The directory of the hierarchy that carries ``controller``'s files.

        ``cpuacct`` on v2 is the ``cpu.stat`` core accounting; ``psi`` is the v2 hierarchy.
        """
        if self.version == 2:
            assert self.unified is not None
            if not self.has(controller):
                raise Unsupported(
                    f"cgroup.{controller}", f"controller not offered by {self.root}/cgroup.controllers"
                )
            return self.unified
        if controller == "psi":
            if self.unified is None:
                raise Unsupported(
                    "cgroup.psi", f"no cgroup v2 hierarchy at {self.root}/unified for PSI files"
                )
            return self.unified
        path = self.v1.get(controller)
        if path is None:
            raise Unsupported(f"cgroup.{controller}", f"no v1 hierarchy for {controller} under {self.root}")
        return path

    def path(self, controller: str, group: str) -> Path:
        base = self.hierarchy(controller)
        return base / check_group_name(group) if group else base

    def hierarchies(self, controllers: tuple[str, ...]) -> list[Path]:
        """The distinct directories of ``controllers`` (co-mounted ones once), in order."""
        out: list[Path] = []
        for c in controllers:
            p = self.hierarchy(c)
            if p not in out:
                out.append(p)
        return out

    def exists(self, controller: str, group: str) -> bool:
        return self.path(controller, group).is_dir()

    def match(self, controller: str, patterns: tuple[str, ...]) -> list[str]:
        """Groups whose path matches one of the glob ``patterns``, outermost only.

        ``machine.slice/*`` matches each VM's scope but not their children; a match inside
        another match is dropped, so no CPU time is counted twice.
        """
        base = self.hierarchy(controller)
        found: set[str] = set()
        for pattern in patterns:
            check_group_name(pattern.replace("*", "x").replace("?", "x").replace("[", "x").replace("]", "x"))
            depth = pattern.count("/") + 1
            for dirpath, dirnames, _files in os.walk(base):
                rel = os.path.relpath(dirpath, base)
                level = 0 if rel == "." else rel.count("/") + 1
                if level >= depth:
                    dirnames.clear()
                if rel != "." and level == depth and fnmatch.fnmatchcase(rel, pattern):
                    found.add(rel)
        outer = sorted(found)
        return [g for g in outer if not any(g.startswith(o + "/") for o in outer if o != g)]

    def task_ids(self, controller: str, group: str) -> list[int]:
        """Thread ids in ``group`` (v1 ``tasks``, v2 ``cgroup.threads``)."""
        name = "cgroup.threads" if self.version == 2 or controller == "psi" else "tasks"
        return _ids(self.path(controller, group) / name, "a thread id")

    def process_ids(self, controller: str, group: str) -> list[int]:
        """Process ids (thread-group leaders) in ``group``: ``cgroup.procs``, v1 and v2 alike,
        in the kernel's order (not sorted; a process may appear only once)."""
        return _ids(self.path(controller, group) / "cgroup.procs", "a process id")


def _ids(path: Path, what: str) -> list[int]:
    """The integers of a one-id-per-line cgroup file (``tasks``, ``cgroup.procs``)."""
    text = read_file(path)
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if not s.isdigit():
            raise SensorError(path, f"line {lineno}: expected {what}, got {s[:40]!r}")
        out.append(int(s))
    return out
