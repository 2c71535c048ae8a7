"""The CPU facility on a real host: primaries, a harvest cgroup, usage, PSI, run-queue delay.

* **Groups.** ``harvest`` is one cgroup (``linux.cpu.harvest_cgroup``, default ``sol-harvest``)
  created on the first real (non-dry-run) write; batch work is placed in it by the operator.
  ``primary`` is the set of cgroups matching ``linux.cpu.primary_cgroups`` (globs, matched at each
  read, outermost matches only), or, when that list is empty, *everything on the host but the
  harvest group* (root usage minus harvest usage; all tasks but the harvest's).
* **Usage** is the delta of cumulative CPU time: v1 ``cpuacct.usage`` (ns), v2 ``cpu.stat``
  ``usage_usec`` (Documentation/admin-guide/cgroup-v2.rst, "cpu.stat").
* **Pressure** is the group's ``cpu.pressure`` where the v2 hierarchy has the group (PSI,
  Documentation/accounting/psi.rst), else the system's ``/proc/pressure/cpu`` (logged once).
  Several primary groups: the worst group's averages, the sum of their totals.
* **Run-queue delay** is the sum over the group's threads of ``/proc/TID/schedstat`` field 2
  (Documentation/scheduler/sched-stats.rst), or of taskstats ``cpu_delay_total``. When the
  primaries are the whole host and the kernel has ``/proc/schedstat`` (CONFIG_SCHEDSTATS, as on
  the common distribution kernels), theirs is the host's per-CPU run-queue wait minus the
  harvest group's threads': a few lines per CPU instead of a file per thread. A thread scan
  costs ~5 us of CPU per thread, so readings are reused: one that cost ``c`` seconds of CPU is
  served again for ``c / run_delay_cpu_share`` seconds (at most ``run_delay_max_age_s``), which
  keeps the sensor under that share of one core however often agents ask and however many
  threads the host runs. A reused reading keeps its own ``t``.
* **Harvest cores.** ``set_harvest_cores(n)`` gives the harvest group the ``n`` highest
  numbered cores not in ``linux.cpu.reserved_cores`` (``cpuset.cpus``) and lifts its CFS quota;
  ``n = 0`` parks it: quota 1 ms per period, one core. A populated v1 cpuset cannot have an
  empty ``cpuset.cpus`` (cgroup-v1/cpusets.rst, ``-ENOSPC``) and an empty v2 one inherits
  the parent's CPUs, so the quota is what makes "no cores" true. In ``quota`` mode only the
  quota moves (``n`` cores' worth of runtime per period) and the cpuset is left alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from sol.actuators.base import HostWriter, WriteError
from sol.actuators.cgroup import (
    CPU_MAX,
    CPU_WEIGHT,
    CPUSET_CPUS,
    CgroupResource,
    CpuMax,
    create_group,
    init_cpuset,
)
from sol.actuators.file import read_text, write_existing
from sol.facilities import CPU_GROUPS, CpuPressure, CpuUsage, RunQueueDelay
from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError, Unsupported, errno_name, os_problem
from sol.kernel.procfs import (
    KeptOpen,
    Psi,
    parse_cpulist,
    parse_flat_keyed,
    parse_int,
    parse_proc_schedstat,
    parse_psi,
    parse_schedstat,
    read_file,
)
from sol.linux._util import DeltaTracker, Expiring, LogOnce
from sol.linux.gate import check_writer, gated
from sol.linux.taskstats import TaskstatsReader
from sol.safety.guard import ActuationGuard

__all__ = ["CgroupWriter", "CpuHost", "CpuSettings", "CpuThrottling", "LinuxCpuActuators", "LinuxCpuSensors"]

#: seconds a harvest group's existence and the primary globs' matches are cached
CACHE_S = 1.0
#: seconds the harvest group's cores (its cgroup files, read at every window) are cached;
#: sol's own writes and journal restores forget them at once
HARVEST_STATE_S = 0.25
#: A parked harvest group's quota: 1 ms per period, the kernel's minimum (sched-bwc.rst).
PARK_QUOTA_US = 1_000
_ZERO_PSI = Psi(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class CpuThrottling:
    """CFS bandwidth throttling of a group (cumulative): ``cpu.stat`` ``nr_periods``,
    ``nr_throttled`` and the time throttled (v1 ``throttled_time`` ns, v2 ``throttled_usec``)."""

    t: float
    group: str
    nr_periods: int
    nr_throttled: int
    throttled_s: float


@dataclass(frozen=True)
class CpuSettings:
    harvest_cgroup: str = "sol-harvest"
    primary_cgroups: tuple[str, ...] = ()
    reserved_cores: tuple[int, ...] = ()
    harvest_mode: Literal["cpuset", "quota"] = "cpuset"
    cfs_period_us: int = 100_000
    harvest_weight: int = 1
    run_delay_source: Literal["schedstat", "taskstats"] = "schedstat"
    #: the most of one core the run-queue delay sensor may spend (None: a fresh reading on
    #: every call), and the longest a reading is reused to stay under it
    run_delay_cpu_share: float | None = 0.002
    run_delay_max_age_s: float = 2.0
    #: most cores one set_harvest_cores() may add or take (None: any step)
    max_step: int | None = None
    #: least seconds between two applied harvest changes (None: no limit)
    min_interval: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CgroupWriter:
    """Writes logical cgroup resources of groups through one owner's :class:`HostWriter`."""

    def __init__(self, layout: CgroupLayout, writer: HostWriter) -> None:
        self.layout = layout
        self.writer = writer

    @property
    def dry_run(self) -> bool:
        return self.writer.dry_run

    def set(self, resource: CgroupResource, group: str, value: Any, *, now: float = 0.0) -> list[Any]:
        """Write ``value`` to ``resource`` of ``group``: each file guard -> undo -> write -> read back."""
        results = []
        for file, text in resource.texts(self.layout.version, value):
            results.append(self.writer.write(resource.knob(self.layout, group, file), text, now=now))
        return results

    def get(self, resource: CgroupResource, group: str) -> Any:
        return resource.read(self.layout, group)


class CpuHost:
    """What the CPU sensors and every owner's CPU actuators share: the layout and counters."""

    def __init__(
        self,
        layout: CgroupLayout,
        *,
        proc_root: Path,
        sys_root: Path,
        clock: Callable[[], float],
        settings: CpuSettings,
        log: Any,
        taskstats: TaskstatsReader | None = None,
    ) -> None:
        self.layout = layout
        self.proc_root = Path(proc_root)
        self.sys_root = Path(sys_root)
        self.now = clock
        self.settings = settings
        self.log = log
        self.once = LogOnce(log)
        self.taskstats = taskstats
        self.harvest = settings.harvest_cgroup
        if self.harvest in ("", "/"):
            raise ValueError("linux.cpu.harvest_cgroup must name a cgroup below the root")
        self.cores = self._root_cores()
        reserved = set(settings.reserved_cores)
        unknown = sorted(reserved - set(self.cores))
        if unknown:
            raise ValueError(
                f"linux.cpu.reserved_cores {unknown} are not CPUs of this host ({list(self.cores)})"
            )
        #: cores that may be lent, highest first (the harvest takes from the top)
        self.lendable = tuple(sorted((c for c in self.cores if c not in reserved), reverse=True))
        self.park_core = self.lendable[0] if self.lendable else max(self.cores)
        self._lock = threading.RLock()
        t = clock()
        self._usage = {g: DeltaTracker(t) for g in CPU_GROUPS}
        self._delay = {g: DeltaTracker(t) for g in CPU_GROUPS}
        share = settings.run_delay_cpu_share
        if share is not None and not 0.0 < share <= 1.0:
            raise ValueError(f"run_delay_cpu_share must be in (0, 1] or None, got {share!r}")
        #: per group: the last run-queue reading and until when it is served again
        self._proc = str(self.proc_root)
        #: the CPU-time files read at every window, kept open (pread)
        self._files = KeptOpen(limit=256)
        self._usage_paths: dict[str, str] = {}
        #: what changes rarely but costs a directory walk or stats per read: cached briefly
        #: keys: "exists", "harvest" (its cores), ("match", controller), ("delay", group)
        self._recent = Expiring()
        # whole-host primaries: the host's run-queue wait (one file) minus the harvest's
        self._host_schedstat: str | None = None
        self._host_wait = DeltaTracker(t)
        self._harvest_wait = DeltaTracker(t)
        if not settings.primary_cgroups and settings.run_delay_source == "schedstat":
            path = f"{self._proc}/schedstat"
            try:
                parse_proc_schedstat(read_file(path), path)
            except SensorError as exc:
                log.info("linux.cpu.run_delay_per_thread", reason=str(exc))
            else:
                self._host_schedstat = path
        # Baselines now, so the first usage() covers the time since start.
        for g in CPU_GROUPS:
            try:
                self._usage[g].update(self._usage_values(g), t)
            except SensorError as exc:
                self.once(
                    ("usage-baseline", g),
                    "linux.cpu.baseline_failed",
                    level="warning",
                    group=g,
                    error=str(exc),
                )

    # -- topology ----------------------------------------------------------------------
    def _root_cores(self) -> tuple[int, ...]:
        candidates: list[Path] = []
        if self.layout.has("cpuset"):
            base = self.layout.hierarchy("cpuset")
            names = (
                ("cpuset.cpus.effective", "cpuset.cpus")
                if self.layout.version == 2
                else ("cpuset.effective_cpus", "cpuset.cpus")
            )
            candidates += [base / n for n in names]
        candidates.append(self.sys_root / "devices" / "system" / "cpu" / "online")
        for path in candidates:
            if path.is_file():
                cores = parse_cpulist(read_file(path), path)
                if cores:
                    return cores
        raise Unsupported("cpu", f"no CPU list in {', '.join(map(str, candidates))}")

    def harvest_exists(self) -> bool:
        """Whether the harvest group exists (cached for ``CACHE_S``: it is read at every window
        and changes when sol creates it, which resets the cache, or an operator removes it)."""
        now = self.now()
        hit, found = self._recent.get("exists", now)
        if hit:
            return bool(found)
        controllers = ("cpuset", "cpu", "cpuacct") if self.layout.version == 1 else ("cpu",)
        found = all(self.layout.exists(c, self.harvest) for c in controllers if self.layout.has(c))
        self._recent.put("exists", found, now, CACHE_S)
        return bool(found)

    @property
    def uses_proc_schedstat(self) -> bool:
        """Whole-host primaries' run-queue delay comes from ``/proc/schedstat`` (not a scan)."""
        return self._host_schedstat is not None

    def matched(self, controller: str) -> list[str]:
        """The primary groups matching ``linux.cpu.primary_cgroups`` (a directory walk, cached for
        ``CACHE_S``: a new VM is counted within that)."""
        now = self.now()
        hit, groups = self._recent.get(("match", controller), now)
        if not hit:
            groups = self.layout.match(controller, self.settings.primary_cgroups)
            self._recent.put(("match", controller), groups, now, CACHE_S)
        return list(groups)

    def close(self) -> None:
        self._files.close()

    def probe(self) -> list[str]:
        """Problems that stop the harvest actuator on this host (empty: usable)."""
        problems = []
        needed = ("cpu", "cpuacct") + (("cpuset",) if self.settings.harvest_mode == "cpuset" else ())
        for c in needed:
            if not self.layout.has(c):
                problems.append(f"no {c} controller ({self.layout.describe()})")
        if self.layout.version == 2 and not problems:
            parent = self.layout.path("cpu", self.harvest).parent
            try:
                enabled = set(read_file(parent / "cgroup.subtree_control").split())
            except SensorError as exc:
                problems.append(str(exc))
            else:
                for c in needed:
                    if c != "cpuacct" and c not in enabled:
                        problems.append(
                            f"controller {c} not enabled for children of {parent} "
                            f"(echo +{c} > {parent}/cgroup.subtree_control)"
                        )
        return problems

    def ensure_harvest(self) -> None:
        """Create the harvest group, parked, if it is absent (a real write: never in dry-run).

        Not journaled: an empty group changes nothing for the host's workloads, and it stays
        after sol stops because batch jobs may live in it. Its first state (parked) is the
        before-image of every later write, so a restore parks it again.
        """
        with self._lock:
            self._recent.forget("exists", "harvest")
            if self.harvest_exists():
                return
            problems = self.probe()
            if problems:
                raise Unsupported("cpu.harvest", "; ".join(problems))
            controllers = ("cpuset", "cpu", "cpuacct") if self.layout.version == 1 else ("cpu",)
            made = create_group(self.layout, self.harvest, [c for c in controllers if self.layout.has(c)])
            if self.layout.version == 1 and self.layout.has("cpuset"):
                init_cpuset(self.layout, self.harvest, [self.park_core])
            elif self.layout.has("cpuset") and self.settings.harvest_mode == "cpuset":
                self._write_checked(CPUSET_CPUS, [self.park_core])
            self._write_checked(CPU_MAX, CpuMax(PARK_QUOTA_US, self.settings.cfs_period_us))
            self._write_checked(CPU_WEIGHT, self.settings.harvest_weight)
            self._recent.forget("exists")
            self.log.info(
                "linux.cpu.harvest_created",
                group=self.harvest,
                dirs=[str(p) for p in made],
                parked_on=self.park_core,
            )

    def _write_checked(self, resource: CgroupResource, value: Any) -> None:
        for file, text in resource.texts(self.layout.version, value):
            path = self.layout.path(resource.controller, self.harvest) / file
            write_existing(path, text)
            back = read_text(path)
            if not resource.same(self.layout.version, file, text, back):
                raise OSError(f"{path}: wrote {text!r}, reads back {back.strip()!r}")

    # -- usage -------------------------------------------------------------------------
    def _group_usage_ns(self, group: str) -> float:
        path = self._usage_paths.get(group)
        if path is None:
            name = "cpu.stat" if self.layout.version == 2 else "cpuacct.usage"
            path = str(self.layout.path("cpuacct", group) / name)
            if len(self._usage_paths) >= 1024:
                self._usage_paths.clear()  # groups come and go (VMs): start over
            self._usage_paths[group] = path
        text = self._files.read(path)
        if self.layout.version == 2:
            stat = parse_flat_keyed(text, path)
            if "usage_usec" not in stat:
                raise SensorError(path, "no usage_usec line")
            return stat["usage_usec"] * 1e3
        return float(parse_int(text, path, what="nanoseconds of CPU time", lo=0))

    def _harvest_usage_ns(self) -> float:
        if not self.harvest_exists():
            return 0.0  # not created yet: no tasks, no time
        try:
            return self._group_usage_ns(self.harvest)
        except SensorError as exc:
            if exc.errno_name != "ENOENT":
                raise
            self._recent.forget("exists")  # removed since the cache said it was there
            return 0.0

    def _usage_values(self, group: str) -> dict[Any, float]:
        if group == "harvest":
            return {"harvest": self._harvest_usage_ns()}
        if self.settings.primary_cgroups:
            return {g: self._group_usage_ns(g) for g in self.matched("cpuacct")}
        return {"host-minus-harvest": self._group_usage_ns("") - self._harvest_usage_ns()}

    def usage(self, group: str) -> CpuUsage:
        check_group(group)
        with self._lock:
            now = self.now()
            tracker = self._usage[group]
            delta_ns, interval = tracker.update(self._usage_values(group), now)
            # Clamp to what the host's cores can give: a removed group or a counter reset
            # must not read as a burst of impossible usage.
            cores = 0.0 if interval <= 0 else min(len(self.cores), max(0.0, delta_ns / 1e9 / interval))
            return CpuUsage(
                t=now, group=group, cores=cores, interval=interval, total_core_s=tracker.total / 1e9
            )

    # -- pressure ----------------------------------------------------------------------
    def _group_psi_path(self, group: str) -> Path | None:
        if not self.layout.has("psi"):
            return None
        path = self.layout.path("psi", group) / "cpu.pressure"
        return path if path.is_file() else None

    def _system_psi(self, group: str) -> Psi:
        path = self.proc_root / "pressure" / "cpu"
        self.once(("psi-fallback", group), "linux.cpu.psi_system_fallback", group=group, source=str(path))
        if not path.exists():
            raise Unsupported(
                "psi", f"{path} is missing: the kernel has no PSI (CONFIG_PSI, boot with psi=1)"
            )
        return parse_psi(read_file(path), path)

    def _psi(self, group: str) -> tuple[Psi, str]:
        """The group's PSI and its scope: ``"group"``, or ``"host"`` from ``/proc/pressure``."""
        if group == "harvest":
            if not self.harvest_exists():
                return _ZERO_PSI, "group"
            path = self._group_psi_path(self.harvest)
            if path is None:
                return self._system_psi(group), "host"
            return parse_psi(read_file(path), path), "group"
        if not self.settings.primary_cgroups:
            return self._system_psi(group), "host"
        controller = "psi" if self.layout.has("psi") else "cpuacct"
        paths = [self._group_psi_path(g) for g in self.matched(controller)]
        found = [p for p in paths if p is not None]
        if not found:
            return self._system_psi(group), "host"
        values = [parse_psi(read_file(p), p) for p in found]
        return Psi(
            max(v.some_avg10 for v in values),
            max(v.some_avg60 for v in values),
            max(v.some_avg300 for v in values),
            sum(v.some_total_s for v in values),
            max(v.full_avg10 for v in values),
            max(v.full_avg60 for v in values),
            max(v.full_avg300 for v in values),
            sum(v.full_total_s for v in values),
        ), "group"

    def pressure(self, group: str) -> CpuPressure:
        check_group(group)
        psi, scope = self._psi(group)
        return CpuPressure(
            self.now(),
            group,
            psi.some_avg10,
            psi.some_avg60,
            psi.some_avg300,
            psi.some_total_s,
            psi.full_avg10,
            psi.full_avg60,
            psi.full_avg300,
            psi.full_total_s,
            scope,
        )

    # -- throttling --------------------------------------------------------------------
    def _group_throttling(self, group: str) -> tuple[int, int, float]:
        path = self.layout.path("cpu", group) / "cpu.stat"
        stat = parse_flat_keyed(read_file(path), path)
        if "nr_periods" not in stat or "nr_throttled" not in stat:
            return 0, 0, 0.0  # the root group: never throttled, no counters
        if "throttled_usec" in stat:
            throttled = stat["throttled_usec"] / 1e6
        elif "throttled_time" in stat:
            throttled = stat["throttled_time"] / 1e9
        else:
            raise SensorError(path, "no throttled_usec / throttled_time line")
        return stat["nr_periods"], stat["nr_throttled"], throttled

    def throttling(self, group: str) -> CpuThrottling:
        check_group(group)
        if group == "harvest":
            groups = [self.harvest] if self.layout.exists("cpu", self.harvest) else []
        elif self.settings.primary_cgroups:
            groups = self.matched("cpu")
        else:
            groups = [""]
        total = [0, 0, 0.0]
        for g in groups:
            periods, throttled, seconds = self._group_throttling(g)
            total[0] += periods
            total[1] += throttled
            total[2] += seconds
        return CpuThrottling(self.now(), group, int(total[0]), int(total[1]), float(total[2]))

    # -- run-queue delay ---------------------------------------------------------------
    def _tids(self, group: str) -> list[int]:
        controller = "cpu" if self.layout.has("cpu") else "cpuacct"
        if group == "harvest":
            if not self.layout.exists(controller, self.harvest):
                return []
            return self.layout.task_ids(controller, self.harvest)
        if self.settings.primary_cgroups:
            tids: set[int] = set()
            for g in self.matched(controller):
                tids.update(self.layout.task_ids(controller, g))
            return sorted(tids)
        harvest = set(self._tids("harvest"))
        return [t for t in self._all_tids() if t not in harvest]

    def _all_tids(self) -> list[int]:
        out: list[int] = []
        proc = self._proc
        for pid in os.listdir(proc):
            if not pid.isdigit():
                continue
            try:
                out.extend(int(t) for t in os.listdir(f"{proc}/{pid}/task") if t.isdigit())
            except OSError:
                continue  # exited while we listed
        return out

    def _wait_ns(self, tid: int) -> float | None:
        if self.settings.run_delay_source == "taskstats" and self.taskstats is not None:
            try:
                return float(self.taskstats.delay(tid).cpu_delay_ns)
            except SensorError as exc:
                if exc.errno_name == "ESRCH":
                    return None
                raise
        path = f"{self._proc}/{tid}/schedstat"
        try:
            text = read_file(path)
        except SensorError as exc:
            if exc.errno_name in ("ENOENT", "ESRCH"):
                return None  # the thread exited between the listing and the read
            raise
        return float(parse_schedstat(text, path).wait_ns)

    def _waits(self, group: str) -> dict[Any, float]:
        values: dict[Any, float] = {}
        for tid in self._tids(group):
            w = self._wait_ns(tid)
            if w is not None:
                values[tid] = w
        return values

    def run_queue_delay(self, group: str, *, fresh: bool = False) -> RunQueueDelay:
        """The group's run-queue delay; a recent reading is served again unless ``fresh``."""
        check_group(group)
        with self._lock:
            now = self.now()
            hit, reading = self._recent.get(("delay", group), now)
            if hit and not fresh:
                return cast(RunQueueDelay, reading)
            cpu0 = time.thread_time()
            tracker = self._delay[group]
            first = not tracker.primed
            if group == "primary" and self._host_schedstat is not None:
                path = self._host_schedstat
                host_ns = float(parse_proc_schedstat(read_file(path), path))
                harvest = self._waits("harvest")
                host_delta, _ = self._host_wait.update({"host": host_ns}, now)
                harvest_delta, _ = self._harvest_wait.update(harvest, now)
                _, interval = tracker.update({}, now)
                delta = max(0.0, host_delta - harvest_delta)
                tracker.total += delta
                if first:
                    tracker.total = max(0.0, host_ns - sum(harvest.values()))
            else:
                values = self._waits(group)
                delta, interval = tracker.update(values, now)
                if first:
                    # No baseline yet: the threads' whole history is this group's total so far.
                    tracker.total = sum(values.values())
            rate = delta / 1e9 / interval if interval > 0 else 0.0
            reading = RunQueueDelay(now, group, tracker.total / 1e9, rate, interval)
            share = self.settings.run_delay_cpu_share
            cost = time.thread_time() - cpu0
            reuse = 0.0 if share is None else min(cost / share, self.settings.run_delay_max_age_s)
            self._recent.put(("delay", group), reading, now, reuse)
            return reading

    # -- harvest state -----------------------------------------------------------------
    def harvest_cores(self) -> int:
        """The cores the harvest group holds now. Read at every window by the agent and its
        actuator (three cgroup files), so cached for ``HARVEST_STATE_S``; sol's actuator
        writes and journal restores forget it (``forget_harvest_state``), so only a change
        made outside sol is seen up to that late."""
        now = self.now()
        hit, n = self._recent.get("harvest", now)
        if not hit:
            n = self._read_harvest_cores()
            self._recent.put("harvest", n, now, HARVEST_STATE_S)
        return int(n)

    def forget_harvest_state(self) -> None:
        self._recent.forget("harvest")

    def _read_harvest_cores(self) -> int:
        if not self.harvest_exists():
            return 0
        cpu_max: CpuMax = CPU_MAX.read(self.layout, self.harvest)
        if cpu_max.quota_us is not None and cpu_max.quota_us <= PARK_QUOTA_US:
            return 0
        by_quota = (
            len(self.cores)
            if cpu_max.quota_us is None
            else max(1, round(cpu_max.quota_us / cpu_max.period_us))
        )
        if self.settings.harvest_mode == "quota" or not self.layout.has("cpuset"):
            return min(len(self.cores), by_quota)
        cpus = set(CPUSET_CPUS.read(self.layout, self.harvest)) or set(self.cores)
        return min(by_quota, len(cpus & set(self.cores)))

    def plan(self, n: int) -> list[tuple[CgroupResource, Any]]:
        """The writes that give the harvest group ``n`` cores, in a safe order.

        Taking cores away throttles first and narrows the cpuset second; giving cores widens
        the cpuset first and lifts the quota last, so no intermediate state grants more than
        either the old or the new decision.
        """
        period = self.settings.cfs_period_us
        if self.settings.harvest_mode == "quota" or not self.layout.has("cpuset"):
            quota = PARK_QUOTA_US if n == 0 else n * period
            return [(CPU_MAX, CpuMax(quota, period))]
        if n == 0:
            return [(CPU_MAX, CpuMax(PARK_QUOTA_US, period)), (CPUSET_CPUS, [self.park_core])]
        return [(CPUSET_CPUS, sorted(self.lendable[:n])), (CPU_MAX, CpuMax(None, period))]


def check_group(group: str) -> None:
    if group not in CPU_GROUPS:
        raise ValueError(f"unknown CPU group {group!r} (known: {', '.join(CPU_GROUPS)})")


class LinuxCpuSensors:
    """``CpuSensors`` over cgroupfs, PSI and schedstat."""

    def __init__(self, host: CpuHost) -> None:
        self._h = host

    def total_cores(self) -> int:
        return len(self._h.cores)

    def usage(self, group: str) -> CpuUsage:
        return self._h.usage(group)

    def pressure(self, group: str) -> CpuPressure:
        return self._h.pressure(group)

    def run_queue_delay(self, group: str) -> RunQueueDelay:
        return self._h.run_queue_delay(group)

    def throttling(self, group: str) -> CpuThrottling:
        """CFS throttling counters of the group (an addition to ``CpuSensors``)."""
        return self._h.throttling(group)


class LinuxCpuActuators:
    """``CpuActuators`` of one owner: the harvest group's cores, through that owner's writer."""

    def __init__(self, host: CpuHost, cgroups: CgroupWriter) -> None:
        self._h = host
        self.cgroups = cgroups
        s = host.settings
        self.guard = ActuationGuard(
            lo=0, hi=len(host.lendable), max_step=s.max_step, min_interval=s.min_interval
        )
        #: in dry-run, the cores the owner's last decision would have lent: what it reads back,
        #: so a decision that does not change is logged once, not at every window
        self._dry_cores: int | None = None

    def harvest_cores(self) -> int:
        if self._dry_cores is not None and self.cgroups.dry_run:
            return self._dry_cores
        return self._h.harvest_cores()

    def set_harvest_cores(self, n: int) -> None:
        h = self._h
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"harvest cores must be a whole number, got {n!r}")
        if not 0 <= n <= len(h.cores):
            raise ValueError(f"harvest cores must be in [0, {len(h.cores)}], got {n}")
        check_writer(self.cgroups.writer, f"cpu.harvest:{h.harvest}")
        now = h.now()
        current = self.harvest_cores()
        decision = self.guard.check(current, n, now)
        if decision.rejected or decision.value is None:
            h.log.info(
                "actuation.rejected",
                owner=self.cgroups.writer.owner,
                target=f"cpu.harvest:{h.harvest}",
                requested=n,
                reason=decision.reason,
            )
            return
        target = int(decision.value)
        if decision.clamped:
            h.log.info(
                "actuation.clamped",
                owner=self.cgroups.writer.owner,
                target=f"cpu.harvest:{h.harvest}",
                requested=n,
                value=target,
                reason=decision.reason,
                reserved_cores=list(h.settings.reserved_cores),
            )
        if target == current and (target == 0 or h.harvest_exists() or self._dry_cores is not None):
            return  # parked and absent are the same state: nothing to create for zero cores
        plan = h.plan(target)
        if self.cgroups.dry_run:
            self._dry_cores = target
        if self.cgroups.dry_run and not h.harvest_exists():
            h.log.info(
                "actuation.dry_run",
                owner=self.cgroups.writer.owner,
                kind="cgroup.create",
                target=h.harvest,
                before=None,
                requested=n,
                would_write=[(r.name, _show(v)) for r, v in plan],
            )
            self.guard.applied(target, now)
            return
        if not self.cgroups.dry_run:
            try:
                gated(self.cgroups.writer, f"cgroup:{h.harvest}", h.ensure_harvest)
            except OSError as exc:
                raise WriteError(
                    f"cannot create the harvest cgroup {h.harvest!r}: {os_problem(exc, 'mkdir/init failed')}",
                    target=f"cgroup:{h.harvest}",
                    reason="create-failed",
                    errno_name=errno_name(exc),
                ) from exc
        try:
            for resource, value in plan:
                self.cgroups.set(resource, h.harvest, value, now=now)
        finally:
            h.forget_harvest_state()  # what the files hold now (even after a failed write)
        self.guard.applied(target, now)


def _show(value: Any) -> str:
    if isinstance(value, CpuMax):
        return f"{'max' if value.quota_us is None else value.quota_us} {value.period_us}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ",".join(map(str, value))
    return str(value)
