"""The memory facility on a real host: DAMON regions, NUMA nodes, page placement, migration.

``[linux.memory] targets`` names the workloads, each a ``pid`` or a ``cgroup`` (resolved to the
processes in its ``cgroup.procs`` when the facility is built). The facility manages one
process: the first target's (a cgroup's first listed process). DAMON monitors its virtual
address space and ``placement``/``migrate`` act on its pages (``move_pages(2)``); the
sensor and actuator calls name no process, so a second one would need them to. The other
targets are loaded, resolved and named in the ``memory`` feature line as not managed yet.
Without a managed process, ``nodes()`` still works and the rest raises
:class:`~sol.kernel.errors.Unsupported` saying why.
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
    ) -> None:
        self.topology = topology
        #: the memory PSI file of the managed workload and its scope ("group" or "host")
        self.psi = psi
        self.pid = pid
        #: why there is no managed process (``pid`` None), for every call that needs one
        self.pid_problem = pid_problem
        self.proc_root = Path(proc_root)
        self.clock = clock
        self.monitor = monitor
        self.monitor_problem = monitor_problem
        self.syscall = syscall if syscall is not None else MovePages()
        self.migrator = PageMigrator(self.syscall, rate_mb_s=migrate_mb_s, now=clock.now, wait=clock.consume)
        self.lock = threading.Lock()
        self.log = log if log is not None else structlog.get_logger("sol.linux")

    def need_pid(self, what: str) -> int:
        if self.pid is None:
            raise Unsupported(f"memory.{what}", self.pid_problem or NO_TARGETS)
        return self.pid


class LinuxMemorySensors:
    """``MemorySensors``: DAMON regions, ``/sys/devices/system/node``, ``move_pages`` queries."""

    def __init__(self, host: MemoryHost) -> None:
        self._h = host

    def regions(self) -> DamonSnapshot:
        if self._h.monitor is None:
            raise Unsupported("memory.regions", self._h.monitor_problem or "no DAMON monitor")
        return self._h.monitor.snapshot()

    def nodes(self) -> tuple[NumaNode, ...]:
        return self._h.topology.nodes(now=self._h.clock.now())

    def placement(self, start: int, end: int) -> Mapping[int, int]:
        pid = self._h.need_pid("placement")
        if end <= start:
            raise ValueError(f"empty or inverted range [{start:#x}, {end:#x})")
        return bytes_per_node(self._h.syscall.query(pid, start, end))

    def pressure(self) -> MemoryPressure:
        """Memory PSI of the managed workload's cgroup (scope ``"group"``) where the kernel keeps
        one, else the host's ``/proc/pressure/memory`` (``"host"``: every task's stalls)."""
        if self._h.psi is None:
            raise Unsupported("memory.pressure", "no memory PSI file (CONFIG_PSI, boot with psi=1)")
        path, scope = self._h.psi
        psi = parse_psi(read_file(path), path)
        return MemoryPressure(
            t=self._h.clock.now(), stall_total_s=psi.some_total_s, some_avg10=psi.some_avg10, scope=scope
        )

    def process_nodes(self) -> Mapping[int, int]:
        """Bytes of the managed process on each node (``/proc/PID/numa_maps``)."""
        return process_node_bytes(self._h.proc_root, self._h.need_pid("process_nodes"))


class LinuxMemoryActuators:
    """``MemoryActuators`` of one owner, plus whole-process, cpuset and DAMOS placement."""

    def __init__(self, host: MemoryHost, writer: HostWriter, cgroups: CgroupWriter | None) -> None:
        self._h = host
        self.writer = writer
        self.cgroups = cgroups
        #: pages ``move_pages`` refused, by errno, since this actuator was made (reported, never fatal)
        self.failures: dict[str, int] = {}

    def migrate(self, start: int, end: int, to_node: int) -> Migration:
        h = self._h
        pid = h.need_pid("migrate")
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

    def migrate_process(self, from_nodes: Sequence[int], to_nodes: Sequence[int]) -> Any:
        """All pages of the managed process on ``from_nodes`` to ``to_nodes`` (``migratepages``)."""
        h = self._h
        pid = h.need_pid("migrate_process")
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


def _managed(backend: Any) -> tuple[int | None, str, str | None]:
    """The one process the facility manages (the first target's), how the feature line
    names it and the others, and why there is none."""
    targets = backend.linux.memory.targets
    if not targets:
        return None, "none", NO_TARGETS
    resolved = [resolve_target(t, backend.layout) for t in targets]
    (pids, why), first = resolved[0], targets[0]
    pid = pids[0] if pids else None
    problem = None if pids else f"no managed process: targets[0] ({first.describe()}): {why}"
    if not pids:
        label = f"none (targets[0], {first.describe()}: {why})"
    else:
        where = "targets[0]" if first.pid is not None else f"targets[0], {first.describe()}"
        more = f"; its other {len(pids) - 1} process(es) not managed yet" if len(pids) > 1 else ""
        label = f"pid {pid} ({where}{more})"
    others = [
        f"targets[{i}] ({t.describe()}{'' if t.pid is not None else ': ' + _pids(p, w)})"
        for i, (t, (p, w)) in enumerate(zip(targets, resolved, strict=True))
        if i > 0
    ]
    if others:
        label += f"; not managed yet (one process for now): {'; '.join(others)}"
    return pid, label, problem


def _pids(pids: tuple[int, ...], why: str | None) -> str:
    return f"pids {', '.join(map(str, pids))}" if pids else str(why)


def memory_psi(backend: Any) -> tuple[Path, str] | None:
    """The memory PSI file to judge the managed workload by: its cgroup's ``memory.pressure``
    (cgroup v2, the first target a cgroup), else ``/proc/pressure/memory`` (host), else None."""
    targets = backend.linux.memory.targets
    layout = backend.layout
    if targets and targets[0].cgroup is not None and layout is not None and layout.has("psi"):
        try:
            path = Path(layout.path("psi", targets[0].cgroup)) / "memory.pressure"
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
    pid, managed, problem = _managed(backend)
    pid_problem = problem
    if pid is not None:
        monitor = DamonMonitor(
            lc.sys_root / "kernel" / "mm" / "damon" / "admin",
            pids=[pid],
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
            backend.report_feature("damon", True, f"monitoring pid {pid} on {monitor.kdamond}")
        except (Unsupported, OSError) as exc:
            problem = exc.reason if isinstance(exc, Unsupported) else f"cannot start DAMON: {exc}"
            backend.report_feature("damon", False, problem)
            monitor = None
    host = MemoryHost(
        topology,
        pid=pid,
        pid_problem=pid_problem,
        proc_root=lc.proc_root,
        clock=backend.clock,
        migrate_mb_s=mem.migrate_mb_s,
        monitor=monitor,
        log=backend.log,
        monitor_problem=problem,
        psi=memory_psi(backend),
    )
    backend.sensors.memory = LinuxMemorySensors(host)
    backend.register_actuators("memory", lambda writer, cg: LinuxMemoryActuators(host, writer, cg))
    tiers = {n.node: n.tier for n in topology.nodes(now=backend.clock.now())}
    backend.report_feature("memory", True, f"NUMA nodes {tiers}, managed: {managed}")
