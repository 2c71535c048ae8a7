"""NUMA page placement: ``move_pages(2)`` through ctypes, paced in MB/s, and whole-process
migration with ``migratepages`` (Debian package ``numactl``).

``move_pages(pid, count, pages, nodes, status, flags)`` (man 2 move_pages): with ``nodes``
NULL it only reports, in ``status``, the node of each page (or ``-ENOENT`` for a page not
present, ``-EFAULT`` for an unmapped one); with ``nodes`` it moves each page there, and
``status`` holds the node reached or a negative errno (``-ENOMEM``: the destination is full,
``-EBUSY``/``-EACCES``: pinned or shared). ``MPOL_MF_MOVE`` moves only pages mapped by this
process alone; moving another process's pages needs ``CAP_SYS_NICE``.

Migration copies memory, so it is paced (memtierd does the same): a
:class:`PageMigrator` moves chunks and waits between them (on the runtime's clock) so that
the average rate stays under ``rate_mb_s``.

Undo: page placement is performance-only state; the knob kind ``numa.pages`` records the
node of every page run before the first migration of a range, and the restorer moves the
pages back there, best effort (a page freed since is skipped, a process gone has nothing to
restore). ``numa.process`` records the nodes a whole process used before ``migratepages``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sol.actuators.restorers import HostRoots, Restorer
from sol.kernel.errors import Unsupported
from sol.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    IntArray = npt.NDArray[np.int64]
else:
    np = LazyModule("numpy")  # only page moves use it: not imported at every daemon start

__all__ = [
    "MPOL_MF_MOVE",
    "MigrationPlan",
    "MovePages",
    "PageMigrator",
    "PagesKnob",
    "ProcessNodesKnob",
    "migratepages_available",
    "plan_migration",
    "restore_pages",
    "restore_process",
    "runs_of",
]

MPOL_MF_MOVE = 1 << 1
#: move_pages syscall numbers (glibc has no wrapper; libnuma does, but we avoid the dependency)
_SYSCALL_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "ppc64le": 301, "s390x": 310, "riscv64": 239}
#: pages per syscall: bounds the arrays we build and the time one call holds the mm lock
CHUNK_PAGES = 4096
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class MovePages:
    """The ``move_pages(2)`` system call. Raises ``OSError`` (``ESRCH``, ``EPERM``, ``ENODEV``...)."""

    def __init__(self) -> None:
        nr = _SYSCALL_MOVE_PAGES.get(platform.machine())
        if nr is None:
            raise Unsupported("move_pages", f"no syscall number known for {platform.machine()}")
        self._nr = nr
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long

    def call(
        self,
        pid: int,
        addrs: Sequence[int] | IntArray | npt.NDArray[np.uint64],
        nodes: Sequence[int] | IntArray | None,
        flags: int = MPOL_MF_MOVE,
    ) -> IntArray:
        """Status of each page: its node, or a negative errno (numpy arrays: no per-page Python)."""
        pages = np.ascontiguousarray(addrs, dtype=np.uint64)
        n = int(pages.size)
        status = np.full(n, -errno.EINVAL, dtype=np.int32)
        if n == 0:
            return status.astype(np.int64)
        node_arr = None if nodes is None else np.ascontiguousarray(nodes, dtype=np.int32)
        rc = self._syscall(
            ctypes.c_long(self._nr),
            ctypes.c_int(pid),
            ctypes.c_ulong(n),
            ctypes.c_void_p(pages.ctypes.data),
            None if node_arr is None else ctypes.c_void_p(node_arr.ctypes.data),
            ctypes.c_void_p(status.ctypes.data),
            ctypes.c_int(flags),
        )
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"move_pages(pid={pid}, {n} pages): {os.strerror(err)}")
        return status.astype(np.int64)

    def query(self, pid: int, start: int, end: int) -> IntArray:
        """Node (or ``-errno``) of each page of ``[start, end)``, in chunks."""
        addrs = np.arange(page_floor(start), end, PAGE_SIZE, dtype=np.uint64)
        parts = [
            self.call(pid, addrs[i : i + CHUNK_PAGES], None, 0) for i in range(0, addrs.size, CHUNK_PAGES)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def page_floor(addr: int) -> int:
    return addr - addr % PAGE_SIZE


def runs_of(start: int, status: Sequence[int] | IntArray) -> list[list[int]]:
    """``[[start, end, node], ...]`` of consecutive pages on one node (absent pages left out)."""
    st = np.asarray(status, dtype=np.int64)
    if st.size == 0:
        return []
    base = page_floor(start)
    # a run starts where the node changes (absent pages, < 0, split runs too)
    change = np.flatnonzero(np.diff(st) != 0) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [st.size]))
    return [
        [base + int(a) * PAGE_SIZE, base + int(b) * PAGE_SIZE, int(st[a])]
        for a, b in zip(starts, ends, strict=True)
        if st[a] >= 0
    ]


def bytes_per_node(status: Sequence[int] | IntArray) -> dict[int, int]:
    st = np.asarray(status, dtype=np.int64)
    st = st[st >= 0]
    if st.size == 0:
        return {}
    counts = np.bincount(st)
    return {int(n): int(c) * PAGE_SIZE for n, c in enumerate(counts) if c}


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    moved: int
    failed: int
    already: int
    absent: int
    #: pages that did not move, by the errno ``move_pages`` gave each (``EBUSY``, ``ENOMEM``,
    #: ``EACCES``...); never fatal, counted for the caller to report
    failed_by_errno: Mapping[str, int] = field(default_factory=dict)


class PageMigrator:
    """Moves pages of one process at most ``rate_mb_s`` MB/s on average.

    ``now``/``wait`` are the runtime clock's (``Clock.now``/``Clock.consume``): live, ``wait``
    really sleeps; in virtual time it charges the call. Thread-safe: one pacing budget.
    """

    def __init__(
        self,
        syscall: MovePages,
        *,
        rate_mb_s: float,
        now: Callable[[], float],
        wait: Callable[[float], None],
        chunk_pages: int = CHUNK_PAGES,
    ) -> None:
        if not rate_mb_s > 0:
            raise ValueError(f"migration rate must be > 0 MB/s, got {rate_mb_s}")
        self.syscall = syscall
        self.rate = rate_mb_s * 1e6
        self.now = now
        self.wait = wait
        self.chunk_pages = chunk_pages
        self._next_free: float | None = None
        self._lock = threading.Lock()

    def migrate(self, pid: int, start: int, end: int, to_node: int) -> MigrationOutcome:
        moved = failed = already = absent = 0
        by_errno: dict[str, int] = {}
        addrs = np.arange(page_floor(start), end, PAGE_SIZE, dtype=np.uint64)
        with self._lock:
            for i in range(0, addrs.size, self.chunk_pages):
                chunk = addrs[i : i + self.chunk_pages]
                before = np.asarray(self.syscall.call(pid, chunk, None, 0), dtype=np.int64)
                todo = chunk[(before >= 0) & (before != to_node)]
                already += int(np.count_nonzero(before == to_node))
                absent += int(np.count_nonzero(before < 0))
                if todo.size == 0:
                    continue
                self._pace(int(todo.size) * PAGE_SIZE)
                nodes = np.full(todo.size, to_node, dtype=np.int64)
                status = np.asarray(self.syscall.call(pid, todo, nodes, MPOL_MF_MOVE), dtype=np.int64)
                ok = int(np.count_nonzero(status == to_node))
                moved += ok
                failed += int(todo.size) - ok
                bad = status[status < 0]
                if bad.size:
                    codes, counts = np.unique(-bad, return_counts=True)
                    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                        name = errno.errorcode.get(int(code), str(code))
                        by_errno[name] = by_errno.get(name, 0) + int(count)
        return MigrationOutcome(
            moved * PAGE_SIZE, failed * PAGE_SIZE, already * PAGE_SIZE, absent * PAGE_SIZE, by_errno
        )

    def _pace(self, nbytes: int) -> None:
        now = self.now()
        begin = now if self._next_free is None else max(now, self._next_free)
        if begin > now:
            self.wait(begin - now)
        self._next_free = begin + nbytes / self.rate


# -- planning --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What may be moved to ``to_node`` now: ``bytes`` fits the node's free memory above its
    ``reserve``; ``reason`` says why less (or nothing) is planned."""

    start: int
    end: int
    to_node: int
    bytes: int
    reason: str | None


def plan_migration(
    start: int,
    end: int,
    to_node: int,
    *,
    free_bytes: Mapping[int, int],
    placement: Mapping[int, int],
    reserve_bytes: int = 0,
) -> MigrationPlan:
    """Check a migration request against the topology before any page moves.

    ``free_bytes`` is each node's free memory, ``placement`` the range's bytes per node now.
    An unknown node is a ``ValueError`` (the facility's contract); a destination without room
    for the bytes that would move gets a plan trimmed to what fits (the range's start).
    """
    if end <= start:
        raise ValueError(f"empty or inverted range [{start:#x}, {end:#x})")
    if to_node not in free_bytes:
        raise ValueError(f"unknown NUMA node {to_node} (nodes: {sorted(free_bytes)})")
    to_move = sum(b for node, b in placement.items() if node != to_node)
    room = max(0, free_bytes[to_node] - reserve_bytes)
    if to_move <= room:
        return MigrationPlan(start, end, to_node, to_move, None)
    fit = room - room % PAGE_SIZE
    reason = (
        f"node {to_node} has {free_bytes[to_node]} bytes free ({reserve_bytes} reserved): "
        f"{fit} of {to_move} bytes planned"
    )
    span = end - start
    new_end = start + (span * fit // to_move if to_move else 0)
    return MigrationPlan(start, page_floor(new_end), to_node, fit, reason)


# -- knobs (HostWriter) and restorers ---------------------------------------------------


class PagesKnob:
    """The placement of ``[start, end)`` of ``pid`` as a knob of kind ``numa.pages``.

    ``read`` is the JSON run list ``[[start, end, node], ...]`` (the before-image);
    ``write("N")`` migrates the range to node N through the paced migrator and keeps the
    outcome in :attr:`outcome`.
    """

    kind = "numa.pages"

    def __init__(self, migrator: PageMigrator, pid: int, start: int, end: int) -> None:
        self.migrator = migrator
        self.pid = pid
        self.start = page_floor(start)
        self.end = end
        self.outcome: MigrationOutcome | None = None

    @property
    def target(self) -> str:
        return f"{self.pid}:{self.start:#x}-{self.end:#x}"

    def status(self) -> IntArray:
        return self.migrator.syscall.query(self.pid, self.start, self.end)

    def read(self) -> str:
        return json.dumps(runs_of(self.start, self.status()), separators=(",", ":"))

    def write(self, raw: str) -> None:
        self.outcome = self.migrator.migrate(self.pid, self.start, self.end, int(raw))

    def matches(self, written: str, readback: str) -> bool:
        node = int(written)
        runs: list[list[int]] = json.loads(readback)
        on_node = sum(e - s for s, e, n in runs if n == node)
        if self.outcome is None:  # before any write: "unchanged" when every page is there
            return bool(runs) and on_node == sum(e - s for s, e, _ in runs)
        expected = self.outcome.moved + self.outcome.already
        # Pages freed while we moved others are gone from the read-back, never elsewhere.
        return on_node >= expected * 0.9


def restore_pages(target: str, before: Any, *, syscall: MovePages | None = None) -> None:
    """Move each recorded run back to its node (best effort; a vanished process: nothing to do)."""
    pid_text, _, span = target.partition(":")
    if not pid_text.isdigit() or "-" not in span:
        raise ValueError(f"numa.pages target must be 'PID:START-END', got {target!r}")
    runs = json.loads(before) if isinstance(before, str) else before
    if not isinstance(runs, list):
        raise TypeError(f"numa.pages before-image must be a run list, got {type(runs).__name__}")
    mp = syscall or MovePages()
    pid = int(pid_text)
    for start, end, node in runs:
        addrs = np.arange(int(start), int(end), PAGE_SIZE, dtype=np.uint64)
        for i in range(0, addrs.size, CHUNK_PAGES):
            chunk = addrs[i : i + CHUNK_PAGES]
            try:
                mp.call(pid, chunk, np.full(chunk.size, int(node), dtype=np.int64))
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    return  # the process exited: its pages are gone with it
                raise


def migratepages_available() -> str | None:
    """Path of ``migratepages`` (package ``numactl``), or ``None``."""
    return shutil.which("migratepages")


class ProcessNodesKnob:
    """The NUMA nodes holding a whole process's memory, moved with ``migratepages PID FROM TO``.

    Kind ``numa.process``; ``read`` is the JSON list of nodes with pages (from
    ``/proc/PID/numa_maps``), ``write("FROM>TO")`` (node lists) runs ``migratepages``.
    """

    kind = "numa.process"

    def __init__(self, pid: int, read_nodes: Callable[[int], list[int]], *, timeout: float = 60.0) -> None:
        self.pid = pid
        self.read_nodes = read_nodes
        self.timeout = timeout

    @property
    def target(self) -> str:
        return str(self.pid)

    def read(self) -> str:
        return json.dumps(sorted(self.read_nodes(self.pid)))

    def write(self, raw: str) -> None:
        src, _, dst = raw.partition(">")
        run_migratepages(self.pid, src, dst, timeout=self.timeout)

    def matches(self, written: str, readback: str) -> bool:
        src, _, dst = written.partition(">")
        dst_nodes = {int(n) for n in dst.split(",") if n}
        src_nodes = {int(n) for n in src.split(",") if n} - dst_nodes
        held: set[int] = {int(n) for n in json.loads(readback)}
        return not (held & src_nodes)


def run_migratepages(pid: int, from_nodes: str, to_nodes: str, *, timeout: float = 60.0) -> None:
    exe = migratepages_available()
    if exe is None:
        raise OSError(errno.ENOENT, "migratepages not found: install the numactl package")
    proc = subprocess.run(
        [exe, str(pid), from_nodes, to_nodes], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip()
        code = errno.ESRCH if "No such process" in text or "not exist" in text.lower() else errno.EIO
        raise OSError(code, f"migratepages {pid} {from_nodes} {to_nodes} failed: {text or proc.returncode}")


def restore_process(
    target: str, before: Any, *, proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")
) -> None:
    """Move a process's pages back onto the nodes it used before (best effort)."""
    nodes = json.loads(before) if isinstance(before, str) else before
    if not target.isdigit() or not isinstance(nodes, list) or not nodes:
        raise ValueError(f"numa.process record needs a pid and a node list, got {target!r} {before!r}")
    if not (proc_root / target).exists():
        return
    online = _online_nodes(sys_root)
    others = ",".join(str(n) for n in online if n not in nodes)
    if not others:
        return  # every online node is one it used: nothing can be off its old nodes
    try:
        run_migratepages(int(target), others, ",".join(map(str, nodes)))
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _online_nodes(sys_root: Path) -> list[int]:
    from sol.kernel.procfs import parse_cpulist, read_file

    path = sys_root / "devices/system/node/online"
    return list(parse_cpulist(read_file(path), path))


# -- DAMOS schemes (Documentation/admin-guide/mm/damon/usage.rst, "schemes/N/") -----------

#: the DAMOS actions this module applies; ``stat`` is the neutral one a restore goes back to
DAMOS_ACTIONS = ("stat", "migrate_hot", "migrate_cold")


@dataclass(frozen=True, slots=True)
class DamosScheme:
    """A scheme slot's settings. Ranges are inclusive ``(min, max)`` as the sysfs files hold.

    ``nr_accesses`` counts sampling intervals per aggregation interval; ``age`` aggregation
    intervals; ``sz`` bytes. ``quota_bytes`` per ``quota_reset_ms`` caps how much the action
    may touch (for migrations: the bandwidth cap), 0 = no quota.
    """

    action: str = "stat"
    target_nid: int = 0
    sz: tuple[int, int] = (0, 0)
    nr_accesses: tuple[int, int] = (0, 0)
    age: tuple[int, int] = (0, 0)
    quota_bytes: int = 0
    quota_reset_ms: int = 1000

    def __post_init__(self) -> None:
        if self.action not in DAMOS_ACTIONS:
            raise ValueError(f"DAMOS action must be one of {DAMOS_ACTIONS}, got {self.action!r}")
        for name in ("sz", "nr_accesses", "age"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ValueError(f"{name} must be 0 <= min <= max, got {(lo, hi)}")

    def files(self) -> list[tuple[str, str]]:
        """(relative file, text) in write order: the action last, so a half-written slot is inert."""
        return [
            ("target_nid", str(self.target_nid)),
            ("access_pattern/sz/min", str(self.sz[0])),
            ("access_pattern/sz/max", str(self.sz[1])),
            ("access_pattern/nr_accesses/min", str(self.nr_accesses[0])),
            ("access_pattern/nr_accesses/max", str(self.nr_accesses[1])),
            ("access_pattern/age/min", str(self.age[0])),
            ("access_pattern/age/max", str(self.age[1])),
            ("quotas/bytes", str(self.quota_bytes)),
            ("quotas/reset_interval_ms", str(self.quota_reset_ms)),
            ("action", self.action),
        ]

    @classmethod
    def read(cls, slot: Any) -> DamosScheme:
        from pathlib import Path

        base = Path(slot)

        def num(rel: str) -> int:
            path = base / rel
            return int(path.read_text().strip()) if path.exists() else 0

        return cls(
            action=(base / "action").read_text().strip(),
            target_nid=num("target_nid"),
            sz=(num("access_pattern/sz/min"), num("access_pattern/sz/max")),
            nr_accesses=(num("access_pattern/nr_accesses/min"), num("access_pattern/nr_accesses/max")),
            age=(num("access_pattern/age/min"), num("access_pattern/age/max")),
            quota_bytes=num("quotas/bytes"),
            quota_reset_ms=num("quotas/reset_interval_ms") or 1000,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "action": self.action,
                "target_nid": self.target_nid,
                "sz": list(self.sz),
                "nr_accesses": list(self.nr_accesses),
                "age": list(self.age),
                "quota_bytes": self.quota_bytes,
                "quota_reset_ms": self.quota_reset_ms,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: Any) -> DamosScheme:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(
            action=d["action"],
            target_nid=int(d["target_nid"]),
            sz=(int(d["sz"][0]), int(d["sz"][1])),
            nr_accesses=(int(d["nr_accesses"][0]), int(d["nr_accesses"][1])),
            age=(int(d["age"][0]), int(d["age"][1])),
            quota_bytes=int(d["quota_bytes"]),
            quota_reset_ms=int(d["quota_reset_ms"]),
        )


def _apply_scheme(slot: Any, scheme: DamosScheme) -> None:
    """Write a scheme slot, then ``commit`` it to a running kdamond (``state`` 4 levels up)."""
    from pathlib import Path

    from sol.actuators.file import read_text, write_existing

    base = Path(slot)
    for rel, text in scheme.files():
        write_existing(base / rel, text)
    state = base.parents[3] / "state"
    if read_text(state).strip() == "on":
        write_existing(state, "commit")


class DamosSchemeKnob:
    """One DAMOS scheme slot of sol's kdamond as a knob (kind ``damos.scheme``)."""

    kind = "damos.scheme"

    def __init__(self, slot: Any) -> None:
        self.slot = slot

    @property
    def target(self) -> str:
        return str(self.slot)

    def read(self) -> str:
        return DamosScheme.read(self.slot).to_json()

    def write(self, raw: str) -> None:
        _apply_scheme(self.slot, DamosScheme.from_json(raw))

    def matches(self, written: str, readback: str) -> bool:
        return DamosScheme.from_json(written) == DamosScheme.from_json(readback)


def restore_damos(target: str, before: Any) -> None:
    """Put a scheme slot back (normally ``stat`` matching nothing); a kdamond gone: nothing to do."""
    from pathlib import Path

    if not Path(target).is_dir():
        return
    _apply_scheme(target, DamosScheme.from_json(before))


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """The knob kinds this module defines, with their restorers (host roots injected)."""

    def process(target: str, before: Any) -> None:
        restore_process(target, before, proc_root=roots.proc, sys_root=roots.sys)

    return {"numa.pages": restore_pages, "numa.process": process, "damos.scheme": restore_damos}
