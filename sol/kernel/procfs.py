"""Readers and parsers of the procfs, sysfs and cgroupfs files the sensors use.

Each parser takes the file's text and its path (for the error message) and raises
:class:`~sol.kernel.errors.SensorError` naming the file, the line and what was wrong: a
garbage byte in a kernel file is a clear, local error, never a ``ValueError`` from deep
inside a sensor. The formats are the kernel's, cited per parser.

>>> parse_cpulist("0-3,8,10-11", "cpuset.cpus")
(0, 1, 2, 3, 8, 10, 11)
>>> format_cpulist([0, 1, 2, 5, 7, 8])
'0-2,5,7-8'
>>> psi = parse_psi("some avg10=1.50 avg60=0.50 avg300=0.10 total=2000000\\n", "cpu.pressure")
>>> psi.some_avg10, psi.some_total_s, psi.full_avg10
(0.015, 2.0, 0.0)
>>> parse_schedstat("123 456 7\\n", "/proc/1/schedstat")
Schedstat(run_ns=123, wait_ns=456, timeslices=7)
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sol.kernel.errors import SensorError, errno_name, os_problem

__all__ = [
    "KeptOpen",
    "NumaMapping",
    "Psi",
    "Schedstat",
    "format_cpulist",
    "parse_cpulist",
    "parse_flat_keyed",
    "parse_int",
    "parse_node_meminfo",
    "parse_numa_maps",
    "parse_proc_schedstat",
    "parse_psi",
    "parse_schedstat",
    "read_file",
]

# Kernel attribute files are at most a page; a few procfs files we read (numa_maps of a big
# process) are larger, so read until EOF in chunks.
_CHUNK = 1 << 16


def read_file(path: Path | str) -> str:
    """The text of a kernel file; an ``OSError`` becomes a ``SensorError`` with errno and hint."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SensorError(path, os_problem(exc), errno_name=errno_name(exc)) from exc
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except OSError as exc:
                # ESRCH: /proc/PID files of a process that exited while we read.
                raise SensorError(path, os_problem(exc), errno_name=errno_name(exc)) from exc
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return _decode(b"".join(chunks), path)


def _decode(data: bytes, path: Path | str) -> str:
    if b"\0" in data:
        raise SensorError(path, "contains NUL bytes: not a kernel text attribute")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SensorError(path, f"non-ASCII byte at offset {exc.start}: not a kernel text attribute") from exc


class KeptOpen:
    """Small kernel files read at every window (a cgroup's CPU time): kept open, re-read with
    ``pread`` at offset 0, which makes the kernel generate them afresh.

    An open, a read and a close cost ~2.5x one ``pread`` (measured in benchmarks/linux_io.py).
    A file whose object went away (a removed cgroup reads ``ENODEV``) is dropped and opened
    again by path, so a group recreated under the same name is followed and a gone one is a
    ``SensorError`` as with :func:`read_file`. At most ``limit`` files stay open.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, path: str) -> str:
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None:
                try:
                    data = os.pread(fd, 4096, 0)
                except OSError:
                    self._drop(path)
                else:
                    if len(data) < 4096:
                        return _decode(data, path)
            text = read_file(path)  # the errors, by path; and files larger than one read
            if path not in self._fds and len(text) < 4096:
                if len(self._fds) >= self.limit:
                    self._drop(next(iter(self._fds)))
                with contextlib.suppress(OSError):  # else: read by path next time too
                    self._fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            return text

    def _drop(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            for path in list(self._fds):
                self._drop(path)

    def __len__(self) -> int:
        return len(self._fds)


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def parse_int(text: str, path: Path | str, *, what: str = "an integer", lo: int | None = None) -> int:
    """One integer (surrounding whitespace allowed), as in ``cpuacct.usage`` or ``cpu.shares``."""
    s = text.strip()
    digits = s[1:] if s.startswith("-") else s
    # str methods, not a regex: read at every window, and 20x slower cold than warm
    if not (digits.isascii() and digits.isdigit()):
        raise SensorError(path, f"expected {what}, got {_show(s)}")
    value = int(s)
    if lo is not None and value < lo:
        raise SensorError(path, f"expected {what} >= {lo}, got {value}")
    return value


# ---------------------------------------------------------------------------------------
# CPU lists (Documentation/admin-guide/cgroup-v2.rst "cpuset.cpus": "comma-separated
# numbers or ranges", e.g. "0-4,6,8-10"; the same list format as /sys/.../cpulist)
# ---------------------------------------------------------------------------------------


def parse_cpulist(text: str, path: Path | str) -> tuple[int, ...]:
    """``"0-3,8"`` -> ``(0, 1, 2, 3, 8)``; an empty file is the empty set."""
    s = text.strip()
    if not s:
        return ()
    out: set[int] = set()
    for part in s.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if m is None:
            raise SensorError(path, f"bad CPU/node list {_show(s)}: part {_show(part)}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo or hi - lo > 1 << 16:
            raise SensorError(path, f"bad CPU/node list {_show(s)}: range {part}")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def format_cpulist(ids: Iterable[int]) -> str:
    """The kernel's own compact form (what it prints back), so a read-back compares equal."""
    values = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


# ---------------------------------------------------------------------------------------
# PSI (Documentation/accounting/psi.rst): "some avg10=0.00 avg60=0.00 avg300=0.00 total=0"
# and a "full" line of the same shape; avg* are percentages, total is microseconds. The
# system-wide cpu file has had a "full" line since 5.13 (always zero there); older kernels
# print only "some", which reads as full = 0.
# ---------------------------------------------------------------------------------------

_PSI_LINE = re.compile(r"(some|full) avg10=(\d+\.\d+) avg60=(\d+\.\d+) avg300=(\d+\.\d+) total=(\d+)")


@dataclass(frozen=True, slots=True)
class Psi:
    """Shares are 0..1 (the file prints percent); totals are seconds (the file: µs)."""

    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_s: float
    full_avg10: float
    full_avg60: float
    full_avg300: float
    full_total_s: float


def parse_psi(text: str, path: Path | str) -> Psi:
    values: dict[str, tuple[float, float, float, float]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _PSI_LINE.fullmatch(line.strip())
        if m is None:
            raise SensorError(
                path,
                f"line {lineno}: expected 'some|full avg10=.. avg60=.. avg300=.. total=..', "
                f"got {_show(line)}",
            )
        kind = m.group(1)
        if kind in values:
            raise SensorError(path, f"line {lineno}: a second {kind!r} line")
        a10, a60, a300 = (float(m.group(i)) / 100.0 for i in (2, 3, 4))
        if not all(0.0 <= a <= 1.0 for a in (a10, a60, a300)):
            raise SensorError(path, f"line {lineno}: an average above 100%: {_show(line)}")
        values[kind] = (a10, a60, a300, int(m.group(5)) / 1e6)
    if "some" not in values:
        raise SensorError(path, "no 'some' line")
    full = values.get("full", (0.0, 0.0, 0.0, 0.0))
    return Psi(*values["some"], *full)


# ---------------------------------------------------------------------------------------
# /proc/PID/schedstat (Documentation/scheduler/sched-stats.rst): "time spent on the cpu (ns)",
# "time spent waiting on a runqueue (ns)", "# of timeslices run on this cpu".
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedstat:
    run_ns: int
    wait_ns: int
    timeslices: int


def parse_schedstat(text: str, path: Path | str) -> Schedstat:
    fields = text.split()
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        raise SensorError(
            path, f"expected three counters 'run_ns wait_ns timeslices', got {_show(text.strip())}"
        )
    return Schedstat(int(fields[0]), int(fields[1]), int(fields[2]))


# ---------------------------------------------------------------------------------------
# /proc/schedstat (Documentation/scheduler/sched-stats.rst, CONFIG_SCHEDSTATS): a "version"
# line, then per CPU "cpuN" and nine counters, of which (from version 15 on) the 7th is the
# time tasks ran on that CPU and the 8th the time they waited on its run queue, both in ns;
# "domainN" lines follow each CPU. Versions before 15 counted in jiffies.
# ---------------------------------------------------------------------------------------

#: the first /proc/schedstat version whose per-CPU times are nanoseconds
SCHEDSTAT_MIN_VERSION = 15


def parse_proc_schedstat(text: str, path: Path | str) -> int:
    """The host's run-queue wait so far (ns): field 8 of every ``cpuN`` line, summed.

    >>> text = "version 15\\ntimestamp 1\\ncpu0 0 0 9 2 5 3 700 40 9\\ncpu1 0 0 1 1 1 1 5 2 1\\n"
    >>> parse_proc_schedstat(text, "/proc/schedstat")
    42
    """
    version: int | None = None
    total = 0
    cpus = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        head = parts[0]
        if head == "version":
            if len(parts) != 2 or not parts[1].isdigit():
                raise SensorError(path, f"line {lineno}: expected 'version N', got {_show(line)}")
            version = int(parts[1])
            if version < SCHEDSTAT_MIN_VERSION:
                raise SensorError(
                    path,
                    f"version {version} counts in jiffies; need version >= {SCHEDSTAT_MIN_VERSION} (ns)",
                )
        elif head.startswith("cpu") and head[3:].isdigit():
            fields = parts[1:]
            if len(fields) < 9 or not all(f.isdigit() for f in fields[:9]):
                raise SensorError(
                    path, f"line {lineno}: expected '{head}' and nine counters, got {_show(line)}"
                )
            total += int(fields[7])
            cpus += 1
    if version is None:
        raise SensorError(path, "no 'version' line: not /proc/schedstat")
    if cpus == 0:
        raise SensorError(path, "no 'cpuN' lines")
    return total


# ---------------------------------------------------------------------------------------
# Flat keyed files ("usage_usec 123\nuser_usec 100\n": cgroup v2 cpu.stat, memory.stat,
# v1 cpu.stat "nr_periods 0 ...": Documentation/admin-guide/cgroup-v2.rst "Format")
# ---------------------------------------------------------------------------------------


def parse_flat_keyed(text: str, path: Path | str) -> dict[str, int]:
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise SensorError(path, f"line {lineno}: expected 'key value', got {_show(line)}")
        out[parts[0]] = int(parts[1])
    return out


# ---------------------------------------------------------------------------------------
# /sys/devices/system/node/nodeN/meminfo: "Node 0 MemTotal:  4286240 kB"
# ---------------------------------------------------------------------------------------

_NODE_MEMINFO = re.compile(r"Node\s+(\d+)\s+(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?")


def parse_node_meminfo(text: str, path: Path | str) -> dict[str, int]:
    """Bytes (``kB`` lines scaled; ``HugePages_*`` counts kept as counts)."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _NODE_MEMINFO.fullmatch(line.strip())
        if m is None:
            raise SensorError(path, f"line {lineno}: expected 'Node N Key: value kB', got {_show(line)}")
        out[m.group(2)] = int(m.group(3)) * (1024 if line.rstrip().endswith("kB") else 1)
    if "MemTotal" not in out:
        raise SensorError(path, "no MemTotal line")
    return out


# ---------------------------------------------------------------------------------------
# /proc/PID/numa_maps (Documentation/filesystems/proc.rst "numa_maps"):
# "<start hex> <policy> [file=..|anon=N|heap|stack|...] N<node>=<pages> ... kernelpagesize_kB=4"
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumaMapping:
    start: int
    policy: str
    #: bytes resident on each node
    node_bytes: Mapping[int, int]
    page_size: int


def parse_numa_maps(text: str, path: Path | str) -> list[NumaMapping]:
    out: list[NumaMapping] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2 or not re.fullmatch(r"[0-9a-f]+", parts[0]):
            raise SensorError(path, f"line {lineno}: expected '<start hex> <policy> ...', got {_show(line)}")
        pages: dict[int, int] = {}
        page_kb = 4
        for token in parts[2:]:
            key, sep, value = token.partition("=")
            if not sep:
                continue  # flags such as "heap", "stack", "huge"
            if re.fullmatch(r"N\d+", key):
                if not value.isdigit():
                    raise SensorError(path, f"line {lineno}: bad page count {_show(token)}")
                pages[int(key[1:])] = int(value)
            elif key == "kernelpagesize_kB":
                if not value.isdigit() or int(value) == 0:
                    raise SensorError(path, f"line {lineno}: bad page size {_show(token)}")
                page_kb = int(value)
        size = page_kb * 1024
        out.append(NumaMapping(int(parts[0], 16), parts[1], {n: c * size for n, c in pages.items()}, size))
    return out


def finite_or_error(value: float, path: Path | str, what: str) -> float:
    if not math.isfinite(value):
        raise SensorError(path, f"{what} is not finite: {value!r}")
    return value
