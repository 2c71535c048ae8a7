"""The daemon's memory, and which agent is growing it.

All agents share one process, so one agent that keeps memory it should let go (a growing
buffer, a model that never forgets) takes the daemon down with it when the process reaches its
cgroup's limit: past ``memory.high`` the kernel throttles every thread in reclaim, at
``memory.max`` the OOM killer ends the daemon, every agent with it. The runtime answers before
that, cheaply:

1. **Watch.** The executor reads the process RSS a few times a second (``/proc/self/statm``,
   one ``pread`` on a descriptor kept open) and compares it with the limit. Nothing else is
   measured while the RSS stays below ``watch`` (a share of the headroom the daemon had when
   it started: limit minus RSS then).
2. **Attribute.** Above it the executor reads the RSS before and after every lane tick (every
   callback in virtual time) and charges the difference to the agent whose tick it was. This
   costs a system call per tick, which the daemon's CPU budget cannot pay all the time, so it
   is on only while the RSS is high; it goes off again when the RSS falls back below ``watch``.
3. **Quarantine.** Above ``act`` the agent that grew the most since attribution began (at
   least :data:`MIN_CULPRIT_SHARE` of the growth and of the headroom) is quarantined
   (``agent.memory_quarantined``): ``clean_up()``, its undo records restored, then the state
   its instance holds is dropped and a collection run, so the memory returns to the process.
   Growth nobody can be charged with (the runtime's own, a library's caches) quarantines
   nobody; it is logged once (``runtime.memory_unattributed``).

The limit is the daemon's own cgroup's (v2 ``memory.high``/``memory.max``, the lower one; v1
``memory.limit_in_bytes``; the lowest along the path to the root), which is what the shipped
unit's ``MemoryHigh=``/``MemoryMax=`` set. With no limit there, :data:`DEFAULT_HEADROOM` over
the RSS at start: the project's RSS target is 128 MiB and the daemon starts at about 35 MiB.

RSS is what the kernel charges for the pages the process touched; memory a callback allocates
and never writes is not counted until it is, which is also when the cgroup charges it.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_HEADROOM",
    "MemoryGuard",
    "MemoryLimit",
    "RssMeter",
    "give_back_freed_memory",
    "own_memory_limit",
    "release_state",
]

MIB = 1024 * 1024
#: Bytes over the RSS at start the daemon may grow when its cgroup sets no limit.
DEFAULT_HEADROOM = 128 * MIB
#: The least headroom the guard works with (a limit already reached at start still leaves
#: the guard something to tell the culprit from noise with).
MIN_HEADROOM = 16 * MIB
#: Shares of the headroom: attribution starts past ``WATCH``, a quarantine past ``ACT``.
WATCH = 0.35
ACT = 0.6
#: Attribution switches off again this share of the headroom below ``WATCH`` (hysteresis).
CALM = 0.05
#: The culprit must have grown at least this share of what the process grew since attribution
#: began, and of the headroom: normal churn quarantines nobody.
MIN_CULPRIT_SHARE = 0.5
MIN_CULPRIT_HEADROOM = 0.05
#: v1 reports "no limit" as the largest page-aligned counter value (about 2**63).
_V1_UNLIMITED = 2**62


@dataclass(frozen=True, slots=True)
class MemoryLimit:
    """The memory an executor keeps its process under.

    ``limit`` bytes of RSS (the cgroup's limit), or, when it is None, ``headroom`` bytes over
    the RSS when the executor starts. ``source`` says where it came from (logs, status).

    >>> MemoryLimit(None, "test", headroom=200 * MIB).describe()
    'RSS at start + 200 MiB (test)'
    """

    limit: int | None
    source: str
    headroom: int = DEFAULT_HEADROOM

    def describe(self) -> str:
        if self.limit is not None:
            return f"{self.limit / MIB:.0f} MiB ({self.source})"
        return f"RSS at start + {self.headroom / MIB:.0f} MiB ({self.source})"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < _V1_UNLIMITED else None


def own_memory_limit(
    proc_self: Path = Path("/proc/self"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> MemoryLimit | None:
    """The memory limit of this process's cgroup (the lowest along its path), or None.

    v2: the lower of ``memory.high`` (past it the kernel throttles) and ``memory.max`` (the
    OOM killer), on the unified hierarchy, mounted at ``cgroup_root`` or at
    ``cgroup_root/unified`` (hybrid hosts). v1: ``memory.limit_in_bytes`` under
    ``cgroup_root/memory``. Roots are parameters so tests point them at a fake tree.
    """
    try:
        lines = (proc_self / "cgroup").read_text().splitlines()
    except OSError:
        return None
    found: list[tuple[int, str]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.strip().lstrip("/")
        files: tuple[str, ...]
        if controllers == "":
            files = ("memory.high", "memory.max")
            bases = [cgroup_root, cgroup_root / "unified"]
        elif "memory" in controllers.split(","):
            files = ("memory.limit_in_bytes",)
            bases = [cgroup_root / "memory"]
        else:
            continue
        for base in bases:
            if not base.is_dir():
                continue
            group = base / rel if rel else base
            # the limit that applies is the lowest on the way up to the (namespace's) root
            for d in (group, *group.parents):
                for name in files:
                    value = _read_int(d / name)
                    if value is not None:
                        found.append((value, str(d / name)))
                if d == base:
                    break
    if not found:
        return None
    value, where = min(found)
    return MemoryLimit(value, f"cgroup {where}")


class RssMeter:
    """The process's resident set size in bytes: one ``pread`` of ``statm`` on a kept fd."""

    def __init__(self, statm: Path = Path("/proc/self/statm")) -> None:
        self._fd = os.open(statm, os.O_RDONLY | os.O_CLOEXEC)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def read(self) -> int:
        # statm: size resident shared text lib data dt, in pages
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class MemoryGuard:
    """Watch → attribute → quarantine (see the module docstring); executors drive it.

    ``check(rss)`` says which agent to quarantine now, if any; ``charge(agent, delta)`` adds a
    tick's RSS difference while :attr:`watching`; ``quarantined(agent, rss)`` starts the
    attribution afresh after a quarantine (what the others grew is not the next culprit's).
    ``charge`` may be called from several lanes at once.
    """

    def __init__(self, limit: MemoryLimit, *, log: Any, meter: RssMeter | None = None) -> None:
        self.spec = limit
        self.log = log
        self._meter = meter
        #: read by the lanes at every tick: measure around the tick while True
        self.watching = False
        self.limit = 0
        self.start_rss = 0
        self.headroom = 0
        self.watch_at = 0
        self.calm_at = 0
        self.act_at = 0
        self._base = 0
        self._growth: dict[str, int] = {}
        self._lock = threading.Lock()
        self._unattributed_told = False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Open the meter and set the thresholds from the RSS now."""
        if self._meter is None:
            self._meter = RssMeter()
        rss = self._meter.read()
        self.start_rss = rss
        spec = self.spec
        self.limit = spec.limit if spec.limit is not None else rss + spec.headroom
        self.headroom = max(self.limit - rss, MIN_HEADROOM)
        self.watch_at = rss + int(WATCH * self.headroom)
        self.calm_at = rss + int((WATCH - CALM) * self.headroom)
        self.act_at = rss + int(ACT * self.headroom)
        event = self.log.warning if self.limit - rss < 2 * MIN_HEADROOM else self.log.info
        event(
            "runtime.memory_guard",
            limit=spec.describe(),
            limit_mib=_mib(self.limit),
            rss_mib=_mib(rss),
            watch_mib=_mib(self.watch_at),
            act_mib=_mib(self.act_at),
        )

    def close(self) -> None:
        self.watching = False
        if self._meter is not None:
            self._meter.close()

    def read(self) -> int:
        """The RSS in bytes; -1 when it cannot be read (before ``start``, after ``close``: a
        lane still ticking while the executor stops)."""
        meter = self._meter
        if meter is None:
            return -1
        try:
            return meter.read()
        except (OSError, ValueError, IndexError):
            return -1

    # -- the lanes --------------------------------------------------------------------------
    def charge(self, agent: str, delta: int) -> None:
        with self._lock:
            self._growth[agent] = self._growth.get(agent, 0) + delta

    def growth(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._growth)

    # -- the decision -----------------------------------------------------------------------
    def check(self, rss: int) -> str | None:
        """The agent to quarantine at RSS ``rss`` (None: nobody); switches attribution."""
        if not self.watching:
            if rss >= self.watch_at:
                self._restart(rss)
                self.watching = True
                self.log.warning(
                    "runtime.memory_watch",
                    rss_mib=_mib(rss),
                    limit_mib=_mib(self.limit),
                    act_mib=_mib(self.act_at),
                )
            return None
        if rss < self.calm_at:
            self.watching = False
            self.log.info("runtime.memory_calm", rss_mib=_mib(rss), growth_mib=self._growth_mib())
            return None
        if rss < self.act_at:
            return None
        grown = rss - self._base
        growth = self.growth()
        culprit = max(growth, key=lambda k: growth[k], default=None)
        if culprit is not None:
            amount = growth[culprit]
            if amount >= MIN_CULPRIT_SHARE * grown and amount >= MIN_CULPRIT_HEADROOM * self.headroom:
                return culprit
        if not self._unattributed_told:
            self._unattributed_told = True
            self.log.warning(
                "runtime.memory_unattributed",
                rss_mib=_mib(rss),
                limit_mib=_mib(self.limit),
                grown_mib=_mib(grown),
                growth_mib=self._growth_mib(),
            )
        return None

    def attributed(self, agent: str) -> int:
        with self._lock:
            return self._growth.get(agent, 0)

    def quarantined(self, agent: str, rss: int) -> None:
        """``agent`` is out: attribute afresh from ``rss``."""
        self._restart(rss)
        if rss < self.calm_at:
            self.watching = False

    def _restart(self, rss: int) -> None:
        with self._lock:
            self._growth = {}
            self._base = rss
        self._unattributed_told = False

    def _growth_mib(self) -> dict[str, float]:
        return {k: _mib(v) for k, v in self.growth().items()}


def _mib(n: int) -> float:
    return round(n / MIB, 1)


def release_state(agent: object) -> None:
    """Drop what an agent instance that is out of service holds, and give the memory back.

    The runtime keeps the instance (its class and name start a fresh one on resume), so
    whatever its attributes hold would stay alive with it: they are cleared (``name`` kept).
    A callback of it still running on a hung lane fails on its next attribute, which no longer
    matters: its results are discarded.
    """
    state = getattr(agent, "__dict__", None)
    if isinstance(state, dict):
        keep = {"name": state["name"]} if "name" in state else {}
        state.clear()
        state.update(keep)
    give_back_freed_memory()


def give_back_freed_memory() -> None:
    """Collect, then return the C allocator's free pages to the kernel (glibc ``malloc_trim``).

    glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
    after a few megabyte-sized buffers were freed the next ones come from the heap, and freed
    heap pages stay resident: the RSS (what the cgroup charges) would not come down after a
    quarantine, and a later leak would refill those pages unseen until they are used up.
    Elsewhere than glibc (musl) this only collects.
    """
    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
