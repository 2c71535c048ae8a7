"""The memory facility on a real host: DAMON regions, NUMA nodes, page placement, migration.

``[linux.memory] targets`` names the workloads, each a ``pid`` or a ``cgroup`` (resolved to the
processes in its ``cgroup.procs`` when the facility is built). Every target is a workload of
the facility, named as the config describes it (``targets()``: ``"pid 1234"``, ``"cgroup
machine.slice/vm-a"``); the calls take ``target=`` (left out: the first). Of a cgroup, the
first listed process is managed (its other processes are named in the feature line as not
managed yet). sol's one kdamond monitors every managed process, one DAMON target each, and
``placement``/``migrate`` act on the named process's pages (``move_pages(2)``). A target
without a process raises :class:`~sol.kernel.errors.Unsupported` saying why on every call that
names it; ``nodes()`` always works.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from sol.actuators.base import HostWriter
from sol.actuators.cgroup import CPUSET_MEMORY_MIGRATE, CPUSET_MEMS
from sol.actuators.numa import (
    DamosScheme,
    DamosSchemeKnob,
    MovePages,
    PageMigrator,
    PagesKnob,
    ProcessNodesKnob,
    bytes_per_node,
    plan_migration,
)
from sol.config import MemoryTarget
from sol.facilities import DamonSnapshot, MemoryPressure, Migration, NumaNode
from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError, Unsupported
from sol.kernel.procfs import parse_psi, read_file
from sol.linux.cpu import CgroupWriter
from sol.linux.damon import DamonMonitor, DamonSettings
from sol.linux.gate import check_writer
from sol.linux.numa import NumaTopology, process_node_bytes

__all__ = ["LinuxMemoryActuators", "LinuxMemorySensors", "MemoryHost", "build_memory", "resolve_target"]

#: free memory kept on a destination node: migrations never fill a node past it
RESERVE_BYTES = 64 << 20
NO_TARGETS = "no managed process: set [linux.memory] targets"


class MemoryHost:
    def __init__(
        self,
        topology: NumaTopology,
        *,
        pid: int | None,
        pid_problem: str | None = None,
        proc_root: Path,
        clock: Any,
        migrate_mb_s: float,
        monitor: DamonMonitor | None = None,
        monitor_problem: str | None = None,
        syscall: MovePages | None = None,
        log: Any = None,
        psi: tuple[Path, str] | None = None,
        targets: Sequence[tuple[str, int | None, str | None, tuple[Path, str] | None]] | None = None,
    ) -> None:
        self.topology = topology
        #: the workloads: (name, pid or None, why none, memory PSI file and its scope); without
        #: ``targets``, one unnamed workload from ``pid``, ``pid_problem`` and ``psi``
        self.targets = list(targets) if targets is not None else [("workload", pid, pid_problem, psi)]
        #: the memory PSI file of the first workload and its scope ("group" or "host")
        self.psi = self.targets[0][3] if self.targets else psi
        self.pid = self.targets[0][1] if self.targets else None
        #: why there is no managed process (``pid`` None), for every call that needs one
        self.pid_problem = self.targets[0][2] if self.targets else pid_problem
        #: DAMON target index of each workload with a process (the monitor's ``pids`` order)
        self.damon_index = {
            name: i for i, name in enumerate(n for n, p, _, _ in self.targets if p is not None)
        }
        self.proc_root = Path(proc_root)
        self.clock = clock
        self.monitor = monitor
        self.monitor_problem = monitor_problem
        self.syscall = syscall if syscall is not None else MovePages()
        self.migrator = PageMigrator(self.syscall, rate_mb_s=migrate_mb_s, now=clock.now, wait=clock.consume)
        self.lock = threading.Lock()
        self.log = log if log is not None else structlog.get_logger("sol.linux")

    def target(self, target: str | None) -> tuple[str, int | None, str | None, tuple[Path, str] | None]:
        if not self.targets:
            raise Unsupported("memory", self.pid_problem or NO_TARGETS)
        if target is None:
            return self.targets[0]
        for t in self.targets:
            if t[0] == target:
                return t
        raise ValueError(
            f"unknown memory target {target!r}; targets: {', '.join(t[0] for t in self.targets)}"
        )

    def need_pid(self, what: str, target: str | None = None) -> int:
        if not self.targets:
            raise Unsupported(f"memory.{what}", self.pid_problem or NO_TARGETS)
        _, pid, problem, _ = self.target(target)
        if pid is None:
            raise Unsupported(f"memory.{what}", problem or NO_TARGETS)
        return pid


class LinuxMemorySensors:
    """``MemorySensors``: DAMON regions, ``/sys/devices/system/node``, ``move_pages`` queries."""

    def __init__(self, host: MemoryHost) -> None:
        self._h = host

    def targets(self) -> tuple[str, ...]:
        """The workloads, in config order (with or without a process now)."""
        return tuple(t[0] for t in self._h.targets)

    def regions(self, target: str | None = None) -> DamonSnapshot:
        h = self._h
        if h.monitor is None:
            raise Unsupported("memory.regions", h.monitor_problem or "no DAMON monitor")
        name = h.target(target)[0] if h.targets else None
        h.need_pid("regions", target)
        if len(h.damon_index) <= 1:
            return h.monitor.snapshot()
        return h.monitor.snapshot_of(h.damon_index[str(name)])

    def nodes(self) -> tuple[NumaNode, ...]:
        return self._h.topology.nodes(now=self._h.clock.now())

    def placement(self, start: int, end: int, target: str | None = None) -> Mapping[int, int]:
        pid = self._h.need_pid("placement", target)
        if end <= start:
            raise ValueError(f"empty or inverted range [{start:#x}, {end:#x})")
        return bytes_per_node(self._h.syscall.query(pid, start, end))

    def pressure(self, target: str | None = None) -> MemoryPressure:
        """Memory PSI of the workload's cgroup (scope ``"group"``) where the kernel keeps one,
        else the host's ``/proc/pressure/memory`` (``"host"``: every task's stalls)."""
        where = self._h.target(target)[3] if self._h.targets else self._h.psi
        if where is None:
            raise Unsupported("memory.pressure", "no memory PSI file (CONFIG_PSI, boot with psi=1)")
        path, scope = where
        psi = parse_psi(read_file(path), path)
        return MemoryPressure(
            t=self._h.clock.now(), stall_total_s=psi.some_total_s, some_avg10=psi.some_avg10, scope=scope
        )

    def process_nodes(self, target: str | None = None) -> Mapping[int, int]:
        """Bytes of the workload's process on each node (``/proc/PID/numa_maps``)."""
        return process_node_bytes(self._h.proc_root, self._h.need_pid("process_nodes", target))


class LinuxMemoryActuators:
    """``MemoryActuators`` of one owner, plus whole-process, cpuset and DAMOS placement."""

    def __init__(self, host: MemoryHost, writer: HostWriter, cgroups: CgroupWriter | None) -> None:
        self._h = host
        self.writer = writer
        self.cgroups = cgroups
        #: pages ``move_pages`` refused, by errno, since this actuator was made (reported, never fatal)
        self.failures: dict[str, int] = {}

    def migrate(self, start: int, end: int, to_node: int, target: str | None = None) -> Migration:
        h = self._h
        pid = h.need_pid("migrate", target)
        check_writer(self.writer, f"{pid}:{start:#x}-{end:#x}")
        t0 = h.clock.now()
        placement = bytes_per_node(h.syscall.query(pid, start, end))
        plan = plan_migration(
            start,
            end,
            to_node,
            free_bytes=h.topology.free_bytes(),
            placement=placement,
            reserve_bytes=RESERVE_BYTES,
        )
        already = placement.get(to_node, 0)
        if plan.reason is not None:
            self._h.log.info(
                "actuation.clamped",
                owner=self.writer.owner,
                target=f"{pid}:{start:#x}-{end:#x}",
                reason=plan.reason,
            )
        knob = PagesKnob(h.migrator, pid, plan.start, plan.end)
        moved = failed = 0
        if plan.end > plan.start:
            with h.lock:
                result = self.writer.write(knob, str(to_node), now=t0)
            if knob.outcome is not None:
                moved, failed = knob.outcome.moved, knob.outcome.failed
                for name, pages in knob.outcome.failed_by_errno.items():
                    self.failures[name] = self.failures.get(name, 0) + pages
                if knob.outcome.failed_by_errno:
                    h.log.info(
                        "memory.pages_failed",
                        owner=self.writer.owner,
                        target=f"{pid}:{start:#x}-{end:#x}",
                        pages=dict(knob.outcome.failed_by_errno),
                    )
            elif result.dry_run:
                moved = 0
        unplanned = sum(b for n, b in placement.items() if n != to_node) - plan.bytes
        return Migration(
            t=t0,
            start=start,
            end=end,
            to_node=to_node,
            bytes_moved=moved,
            bytes_failed=failed + max(0, unplanned),
            bytes_already=already,
            done_at=h.clock.now(),
        )

    def migrate_process(
        self, from_nodes: Sequence[int], to_nodes: Sequence[int], target: str | None = None
    ) -> Any:
        """All pages of the workload's process on ``from_nodes`` to ``to_nodes`` (``migratepages``)."""
        h = self._h
        pid = h.need_pid("migrate_process", target)
        for n in (*from_nodes, *to_nodes):
            if n not in h.topology.ids:
                raise ValueError(f"unknown NUMA node {n} (nodes: {list(h.topology.ids)})")
        knob = ProcessNodesKnob(pid, lambda p: sorted(process_node_bytes(h.proc_root, p)))
        raw = f"{','.join(map(str, from_nodes))}>{','.join(map(str, to_nodes))}"
        return self.writer.write(knob, raw, now=h.clock.now())

    def set_group_mems(self, group: str, nodes: Sequence[int]) -> list[Any]:
        """A cgroup's memory nodes; on v1 ``cpuset.memory_migrate`` is set first so the group's
        pages follow (cgroup-v1/cpusets.rst 1.9); v2 always migrates them."""
        if self.cgroups is None:
            raise Unsupported("cgroup", "no cgroup hierarchy")
        results = []
        if self.cgroups.layout.version == 1:
            results += self.cgroups.set(CPUSET_MEMORY_MIGRATE, group, True)
        results += self.cgroups.set(CPUSET_MEMS, group, list(nodes))
        return results

    def set_damos(self, slot: int, scheme: DamosScheme) -> Any:
        """Turn a spare scheme slot of sol's kdamond into ``scheme`` (e.g. ``migrate_cold``)."""
        monitor = self._h.monitor
        if monitor is None or not monitor.started:
            raise Unsupported("damos", self._h.monitor_problem or "no DAMON monitor running")
        if not 1 <= slot <= monitor.settings.action_slots:
            raise ValueError(
                f"DAMOS slot must be in [1, {monitor.settings.action_slots}] (0 is the monitor's)"
            )
        if scheme.action != "stat" and scheme.target_nid not in self._h.topology.ids:
            raise ValueError(f"unknown NUMA node {scheme.target_nid} (nodes: {list(self._h.topology.ids)})")
        return self.writer.write(
            DamosSchemeKnob(monitor.scheme(slot)), scheme.to_json(), now=self._h.clock.now()
        )


def resolve_target(target: MemoryTarget, layout: CgroupLayout | None) -> tuple[tuple[int, ...], str | None]:
    """The processes of ``target`` now, or none and why: a ``pid`` is itself (whether it
    runs is found at the first call on it); a ``cgroup``, its ``cgroup.procs`` (on v1 the
    memory hierarchy's, where a workload's memory is accounted)."""
    if target.pid is not None:
        return (target.pid,), None
    assert target.cgroup is not None  # MemoryTarget: exactly one of pid and cgroup
    if layout is None:
        return (), "no cgroup hierarchy to find it in"
    controller = "memory" if layout.has("memory") else "cpuacct"  # v2: any hierarchy is the one
    try:
        if not layout.exists(controller, target.cgroup):
            return (), f"no such cgroup in {layout.hierarchy(controller)}"
        pids = tuple(layout.process_ids(controller, target.cgroup))
    except (SensorError, Unsupported, OSError, ValueError) as exc:
        return (), exc.reason if isinstance(exc, Unsupported) else str(exc)
    return (pids, None) if pids else ((), "no process in it")


def _managed(backend: Any) -> tuple[list[tuple[str, int | None, str | None]], str]:
    """Each target's name, process (a cgroup's first) and why none, and how the feature line
    names them."""
    targets = backend.linux.memory.targets
    if not targets:
        return [], "none"
    out: list[tuple[str, int | None, str | None]] = []
    labels = []
    for i, t in enumerate(targets):
        pids, why = resolve_target(t, backend.layout)
        pid = pids[0] if pids else None
        if pid is None:
            out.append((t.describe(), None, f"no managed process: targets[{i}] ({t.describe()}): {why}"))
            labels.append(f"none (targets[{i}], {t.describe()}: {why})")
            continue
        out.append((t.describe(), pid, None))
        where = f"targets[{i}]" if t.pid is not None else f"targets[{i}], {t.describe()}"
        more = f"; its other {len(pids) - 1} process(es) not managed yet" if len(pids) > 1 else ""
        labels.append(f"pid {pid} ({where}{more})")
    return out, "; ".join(labels)


def memory_psi(backend: Any, index: int = 0) -> tuple[Path, str] | None:
    """The memory PSI file to judge a workload by (``targets[index]``): its cgroup's
    ``memory.pressure`` (cgroup v2, a cgroup target), else ``/proc/pressure/memory`` (host),
    else None."""
    targets = backend.linux.memory.targets
    layout = backend.layout
    t = targets[index] if index < len(targets) else None
    if t is not None and t.cgroup is not None and layout is not None and layout.has("psi"):
        try:
            path = Path(layout.path("psi", t.cgroup)) / "memory.pressure"
        except (Unsupported, OSError, ValueError):
            path = None
        if path is not None and path.is_file():
            return path, "group"
    host = Path(backend.linux.proc_root) / "pressure" / "memory"
    return (host, "host") if host.is_file() else None


def build_memory(backend: Any) -> None:
    """Build the memory facility of ``backend`` (a ``LinuxBackend``); raises ``Unsupported``."""
    lc, mem = backend.linux, backend.linux.memory
    topology = NumaTopology(lc.sys_root, far_nodes=tuple(mem.far_nodes))
    monitor: DamonMonitor | None = None
    workloads, managed = _managed(backend)
    pids = [p for _, p, _ in workloads if p is not None]
    problem = None if pids else (workloads[0][2] if workloads else NO_TARGETS)
    pid_problem = problem
    if pids:
        monitor = DamonMonitor(
            lc.sys_root / "kernel" / "mm" / "damon" / "admin",
            pids=pids,
            settings=DamonSettings(),
            kdamond=mem.damon_kdamond,
            clock=backend.clock.now,
            log=backend.log,
        )
        try:
            monitor.probe()
            if backend.journal is None:
                raise Unsupported("damon", "starting a kdamond needs the undo journal (crash safety)")
            writer = backend.writer_for("sol.linux", dry_run=False)
            monitor.start(writer)
            backend.add_closer("damon", lambda: monitor.stop(writer))
            what = ", ".join(map(str, pids))
            backend.report_feature("damon", True, f"monitoring pid(s) {what} on {monitor.kdamond}")
        except (Unsupported, OSError) as exc:
            problem = exc.reason if isinstance(exc, Unsupported) else f"cannot start DAMON: {exc}"
            backend.report_feature("damon", False, problem)
            monitor = None
    host = MemoryHost(
        topology,
        pid=pids[0] if pids else None,
        pid_problem=pid_problem,
        proc_root=lc.proc_root,
        clock=backend.clock,
        migrate_mb_s=mem.migrate_mb_s,
        monitor=monitor,
        log=backend.log,
        monitor_problem=problem,
        psi=memory_psi(backend),
        targets=[(name, p, why, memory_psi(backend, i)) for i, (name, p, why) in enumerate(workloads)],
    )
    backend.sensors.memory = LinuxMemorySensors(host)
    backend.register_actuators("memory", lambda writer, cg: LinuxMemoryActuators(host, writer, cg))
    tiers = {n.node: n.tier for n in topology.nodes(now=backend.clock.now())}
    backend.report_feature("memory", True, f"NUMA nodes {tiers}, managed: {managed}")
