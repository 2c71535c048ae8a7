"""Cgroup knobs as logical resources: one name, its v1 file(s), its v2 file, a validator.

Agents and facilities never build cgroup paths: they ask for a resource of a group, and
the layout (:class:`~sol.kernel.cgroupfs.CgroupLayout`) says which file(s) carry it on this
host. Values are logical (CPU ids, ``CpuMax``, a v2 weight, bytes); each resource converts
them to the text of its version's file(s), and compares read-backs in the kernel's own form.

========================  ===============================  ===========================
resource                  cgroup v1                         cgroup v2
========================  ===============================  ===========================
``cpuset.cpus``           cpuset/``cpuset.cpus``            ``cpuset.cpus``
``cpuset.mems``           cpuset/``cpuset.mems``            ``cpuset.mems``
``cpuset.memory_migrate`` cpuset/``cpuset.memory_migrate``  (implicit: v2 always migrates)
``cpu.max``               cpu/``cpu.cfs_period_us`` then    ``cpu.max`` ("$MAX $PERIOD")
                          ``cpu.cfs_quota_us`` (-1 = max)
``cpu.weight``            cpu/``cpu.shares`` (w*1024/100)   ``cpu.weight`` (1..10000)
``memory.max``            memory/``memory.limit_in_bytes``  ``memory.max``
``memory.low``            memory/``memory.soft_limit_...``  ``memory.low``
``memory.high``           (none: v1 has no throttle limit)  ``memory.high``
========================  ===============================  ===========================

Sources: Documentation/admin-guide/cgroup-v2.rst (cpu.max, cpu.weight, memory.*, cpuset.*),
cgroup-v1/cpusets.rst (cpuset.memory_migrate: "pages ... are migrated" when ``cpuset.mems``
changes, only while the flag is set), scheduler/sched-bwc.rst (cfs quota: -1 is unlimited,
quota and period at least 1 ms, period at most 1 s), cgroup-v1/memory.rst (limits are
rounded down to the page size; -1 is unlimited). The v1<->v2 weight mapping is systemd's
(``shares = weight * 1024 / 100``).

>>> CPU_MAX.texts(1, CpuMax(50_000, 100_000))
[('cpu.cfs_period_us', '100000'), ('cpu.cfs_quota_us', '50000')]
>>> CPU_MAX.texts(2, CpuMax(None, 100_000))
[('cpu.max', 'max 100000')]
>>> CPU_WEIGHT.texts(1, 100), CPU_WEIGHT.texts(2, 100)
([('cpu.shares', '1024')], [('cpu.weight', '100')])
>>> MEMORY_MAX.same(1, "memory.limit_in_bytes", "1000000", "999424\\n")  # rounded to a page
True
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sol.actuators.file import FileKnob, read_text, write_existing
from sol.kernel.cgroupfs import CgroupLayout, check_group_name
from sol.kernel.errors import Unsupported
from sol.kernel.procfs import format_cpulist, parse_cpulist

__all__ = [
    "CPUSET_CPUS",
    "CPUSET_MEMORY_MIGRATE",
    "CPUSET_MEMS",
    "CPU_MAX",
    "CPU_WEIGHT",
    "MEMORY_HIGH",
    "MEMORY_LOW",
    "MEMORY_MAX",
    "RESOURCES",
    "CgroupKnob",
    "CgroupResource",
    "CpuMax",
    "create_group",
    "remove_group",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: v1 prints an unlimited memory limit as PAGE_COUNTER_MAX pages (LONG_MAX rounded to a page)
_V1_UNLIMITED_FLOOR = 1 << 62


@dataclass(frozen=True, slots=True)
class CpuMax:
    """CFS bandwidth: ``quota_us`` per ``period_us`` (``None``: unlimited)."""

    quota_us: int | None
    period_us: int = 100_000

    def __post_init__(self) -> None:
        # scheduler/sched-bwc.rst: "the minimum quota allowed ... is 1ms"; period 1ms..1s
        if isinstance(self.period_us, bool) or not isinstance(self.period_us, int):
            raise ValueError(f"period_us must be an integer, got {self.period_us!r}")
        if not 1_000 <= self.period_us <= 1_000_000:
            raise ValueError(f"period_us must be in [1000, 1000000], got {self.period_us}")
        if self.quota_us is not None:
            if isinstance(self.quota_us, bool) or not isinstance(self.quota_us, int):
                raise ValueError(f"quota_us must be an integer or None, got {self.quota_us!r}")
            if self.quota_us < 1_000:
                raise ValueError(f"quota_us must be >= 1000 (1 ms) or None, got {self.quota_us}")

    @property
    def cores(self) -> float:
        return float("inf") if self.quota_us is None else self.quota_us / self.period_us


def _int_text(text: str) -> int | None:
    s = text.strip()
    return int(s) if re.fullmatch(r"-?\d+", s) else None


@dataclass(frozen=True)
class CgroupResource:
    """One logical knob. ``texts(version, value)`` -> ``[(file, text)]`` in write order."""

    name: str
    controller: str
    v1_files: tuple[str, ...]
    v2_file: str | None
    encode: Callable[[int, Any], list[tuple[str, str]]]
    #: (version, file, text) -> canonical text, for comparing a write with its read-back
    canonical: Callable[[int, str, str], str]
    decode: Callable[[int, dict[str, str]], Any]
    note: str = ""

    def __repr__(self) -> str:
        return f"CgroupResource({self.name!r})"

    def files(self, version: int) -> tuple[str, ...]:
        if version == 1:
            return self.v1_files
        return (self.v2_file,) if self.v2_file else ()

    def texts(self, version: int, value: Any) -> list[tuple[str, str]]:
        if not self.files(version):
            raise Unsupported(
                f"cgroup.{self.name}", f"cgroup v{version} has no {self.name}. {self.note}".strip()
            )
        return self.encode(version, value)

    def same(self, version: int, file: str, written: str, readback: str) -> bool:
        return self.canonical(version, file, written) == self.canonical(version, file, readback)

    def knob(self, layout: CgroupLayout, group: str, file: str) -> CgroupKnob:
        return CgroupKnob(layout.path(self.controller, check_group_name(group)) / file, self, layout.version)

    def read(self, layout: CgroupLayout, group: str) -> Any:
        """The logical value now held by ``group`` (``OSError`` if a file is unreadable)."""
        files = self.files(layout.version)
        if not files:
            raise Unsupported(
                f"cgroup.{self.name}", f"cgroup v{layout.version} has no {self.name}. {self.note}"
            )
        base = layout.path(self.controller, check_group_name(group))
        return self.decode(layout.version, {f: read_text(base / f) for f in files})


class CgroupKnob(FileKnob):
    """A cgroup file as a :class:`~sol.actuators.base.Knob` (kind ``file``: restorable by the
    generic file restorer), comparing read-backs in the resource's canonical form."""

    def __init__(self, path: Path, resource: CgroupResource, version: int) -> None:
        name = path.name
        super().__init__(path, kind="file", normalise=lambda text: resource.canonical(version, name, text))
        self.resource = resource


# -- cpuset ----------------------------------------------------------------------------


def _ids(value: Any, what: str) -> list[int]:
    if isinstance(value, str):
        return list(parse_cpulist(value, what))
    ids = list(value)
    if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise ValueError(f"{what} must be a non-empty list of ids >= 0, got {value!r}")
    return ids


def _cpuset(name: str, v1file: str) -> CgroupResource:
    return CgroupResource(
        name=name,
        controller="cpuset",
        v1_files=(v1file,),
        v2_file=name,
        encode=lambda v, value: [(name, format_cpulist(_ids(value, name)))],
        canonical=lambda v, f, text: format_cpulist(parse_cpulist(text, f)),
        decode=lambda v, texts: parse_cpulist(texts[name], name),
    )


CPUSET_CPUS = _cpuset("cpuset.cpus", "cpuset.cpus")
CPUSET_MEMS = _cpuset("cpuset.mems", "cpuset.mems")


def _flag(v: int, value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, bool):
        raise ValueError(f"cpuset.memory_migrate must be a bool, got {value!r}")
    return [("cpuset.memory_migrate", "1" if value else "0")]


CPUSET_MEMORY_MIGRATE = CgroupResource(
    name="cpuset.memory_migrate",
    controller="cpuset",
    v1_files=("cpuset.memory_migrate",),
    v2_file=None,
    encode=_flag,
    canonical=lambda v, f, text: text.strip(),
    decode=lambda v, texts: texts["cpuset.memory_migrate"].strip() == "1",
    note="On v2, changing cpuset.mems always migrates the group's pages.",
)

# -- cpu -------------------------------------------------------------------------------


def _cpu_max_encode(version: int, value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, CpuMax):
        raise ValueError(f"cpu.max takes a CpuMax, got {value!r}")
    if version == 2:
        quota = "max" if value.quota_us is None else str(value.quota_us)
        return [("cpu.max", f"{quota} {value.period_us}")]
    # Period first: a quota is judged against the period in force (sched-bwc.rst).
    quota_text = "-1" if value.quota_us is None else str(value.quota_us)
    return [("cpu.cfs_period_us", str(value.period_us)), ("cpu.cfs_quota_us", quota_text)]


def _cpu_max_canonical(version: int, file: str, text: str) -> str:
    s = " ".join(text.split())
    if file == "cpu.cfs_quota_us":
        n = _int_text(s)
        return "max" if n is not None and n < 0 else s
    return s


def _cpu_max_decode(version: int, texts: dict[str, str]) -> CpuMax:
    if version == 2:
        parts = texts["cpu.max"].split()
        if len(parts) != 2 or not parts[1].isdigit() or not (parts[0] == "max" or parts[0].isdigit()):
            raise ValueError(f"cpu.max: expected '$MAX $PERIOD', got {texts['cpu.max'].strip()!r}")
        return CpuMax(None if parts[0] == "max" else int(parts[0]), int(parts[1]))
    quota = _int_text(texts["cpu.cfs_quota_us"])
    period = _int_text(texts["cpu.cfs_period_us"])
    if quota is None or period is None:
        raise ValueError(f"cpu.cfs_quota_us/period_us: not integers: {texts}")
    return CpuMax(None if quota < 0 else quota, period)


CPU_MAX = CgroupResource(
    name="cpu.max",
    controller="cpu",
    v1_files=("cpu.cfs_period_us", "cpu.cfs_quota_us"),
    v2_file="cpu.max",
    encode=_cpu_max_encode,
    canonical=_cpu_max_canonical,
    decode=_cpu_max_decode,
)


def _weight_encode(version: int, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
        raise ValueError(f"cpu.weight must be an integer in [1, 10000], got {value!r}")
    if version == 2:
        return [("cpu.weight", str(value))]
    # cpu.shares range is [2, 262144] (kernel/sched: MIN_SHARES, MAX_SHARES)
    return [("cpu.shares", str(min(262_144, max(2, value * 1024 // 100))))]


def _weight_decode(version: int, texts: dict[str, str]) -> int:
    if version == 2:
        n = _int_text(texts["cpu.weight"])
        if n is None:
            raise ValueError(f"cpu.weight: not an integer: {texts['cpu.weight'].strip()!r}")
        return n
    shares = _int_text(texts["cpu.shares"])
    if shares is None:
        raise ValueError(f"cpu.shares: not an integer: {texts['cpu.shares'].strip()!r}")
    return max(1, min(10_000, round(shares * 100 / 1024)))


CPU_WEIGHT = CgroupResource(
    name="cpu.weight",
    controller="cpu",
    v1_files=("cpu.shares",),
    v2_file="cpu.weight",
    encode=_weight_encode,
    canonical=lambda v, f, text: text.strip(),
    decode=_weight_decode,
)

# -- memory ----------------------------------------------------------------------------


def _memory(name: str, v1file: str | None, note: str = "") -> CgroupResource:
    def encode(version: int, value: Any) -> list[tuple[str, str]]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be bytes >= 0 or None (unlimited), got {value!r}")
        if version == 2:
            return [(name, "max" if value is None else str(value))]
        assert v1file is not None
        return [(v1file, "-1" if value is None else str(value))]

    def canonical(version: int, file: str, text: str) -> str:
        s = text.strip()
        n = _int_text(s)
        if version == 1 and n is not None:
            # v1 rounds a limit down to the page size and prints "unlimited" as a huge value
            if n < 0 or n >= _V1_UNLIMITED_FLOOR:
                return "max"
            return str(n // _PAGE * _PAGE)
        return s

    def decode(version: int, texts: dict[str, str]) -> int | None:
        text = next(iter(texts.values())).strip()
        c = canonical(version, v1file or name, text)
        if c == "max":
            return None
        n = _int_text(c)
        if n is None:
            raise ValueError(f"{name}: expected bytes or 'max', got {text!r}")
        return n

    return CgroupResource(
        name=name,
        controller="memory",
        v1_files=(v1file,) if v1file else (),
        v2_file=name,
        encode=encode,
        canonical=canonical,
        decode=decode,
        note=note,
    )


MEMORY_MAX = _memory("memory.max", "memory.limit_in_bytes")
#: v1's soft limit is the nearest v1 notion: groups above it are reclaimed first under pressure
MEMORY_LOW = _memory("memory.low", "memory.soft_limit_in_bytes")
MEMORY_HIGH = _memory(
    "memory.high", None, note="v1 has no throttling limit; use memory.max (hard) or memory.low (soft limit)."
)

RESOURCES: dict[str, CgroupResource] = {
    r.name: r
    for r in (
        CPUSET_CPUS,
        CPUSET_MEMS,
        CPUSET_MEMORY_MIGRATE,
        CPU_MAX,
        CPU_WEIGHT,
        MEMORY_MAX,
        MEMORY_LOW,
        MEMORY_HIGH,
    )
}


# -- groups ----------------------------------------------------------------------------


def create_group(layout: CgroupLayout, group: str, controllers: Sequence[str]) -> list[Path]:
    """``mkdir`` ``group`` in the hierarchy of each controller; returns the directories made.

    A v1 cpuset group starts with empty ``cpuset.cpus``/``mems`` and no task may join it
    until both are set (cgroup-v1/cpusets.rst); :func:`init_cpuset` does that. Existing
    directories are kept (the group may be there from an earlier run).
    """
    made: list[Path] = []
    for base in layout.hierarchies(tuple(controllers)):
        path = base / check_group_name(group)
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue
        made.append(path)
    return made


def init_cpuset(layout: CgroupLayout, group: str, cpus: Sequence[int]) -> None:
    """Give a new v1 cpuset group CPUs and its parent's memory nodes (v2 inherits both)."""
    if layout.version != 1:
        return
    path = layout.path("cpuset", group)
    parent = path.parent
    mems = (
        read_text(parent / "cpuset.effective_mems")
        if (parent / "cpuset.effective_mems").exists()
        else (read_text(parent / "cpuset.mems"))
    )
    if not read_text(path / "cpuset.mems").strip():
        write_existing(path / "cpuset.mems", mems.strip())
    if not read_text(path / "cpuset.cpus").strip():
        write_existing(path / "cpuset.cpus", format_cpulist(cpus))


def remove_group(layout: CgroupLayout, group: str, controllers: Sequence[str]) -> None:
    """``rmdir`` the group in each hierarchy (the kernel refuses, ``EBUSY``, while it has tasks)."""
    for base in layout.hierarchies(tuple(controllers)):
        path = base / check_group_name(group)
        try:
            path.rmdir()
        except FileNotFoundError:
            continue
