"""``LinuxBackend``: the real host's facilities, bound per agent, with dry-run and revoke.

Sensors are shared by all agents. Actuators are bound per agent (``actuators_for``): each
agent's writes go through its own :class:`~sol.actuators.base.HostWriter`, so undo records
carry the agent's name and quarantine/stop restores only that agent's records. ``revoke``
closes an agent's gate: a write already inside the kernel call finishes first (the gate's
lock), every later one is refused with a :class:`~sol.actuators.base.WriteError`
(``reason="revoked"``), so no write can land after the runtime restored the agent's records.

A facility the host lacks is ``None``, with the reason logged once (``linux.facility``).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from sol.backend import BackendBase, Feature
from sol.config import Config, LinuxConfig
from sol.facilities import FACILITY_NAMES, Actuators
from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError, Unsupported
from sol.linux.cpu import CgroupWriter, CpuHost, CpuSettings, LinuxCpuActuators, LinuxCpuSensors
from sol.linux.gate import Gate, OwnerWriter
from sol.linux.taskstats import TaskstatsReader, delayacct_enabled
from sol.safety.journal import UndoJournal
from sol.sdk import Clock

__all__ = ["LinuxBackend", "OwnerWriter"]

#: HostWriter counter attribute -> the ``outcome`` label of ``sol_actuation_writes_total``
_WRITER_COUNTERS = (
    ("written", "writes"),
    ("failed", "failures"),
    ("rejected", "rejected"),
    ("dry_run", "dry_runs"),
    ("unchanged", "unchanged"),
)
#: How long ``revoke`` waits for a write already in a kernel call to finish.
REVOKE_WAIT_S = 5.0


class _MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def consume(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class LinuxBackend(BackendBase):
    """The real host. Build it with :meth:`from_config` (the daemon) or the constructor (tests).

    ``nvml`` is the NVML module to use (default: ``pynvml`` if importable); tests pass a fake
    with the same call surface.
    """

    name = "linux"
    revocable = True

    def __init__(
        self,
        linux: LinuxConfig | None = None,
        *,
        journal: UndoJournal | None = None,
        clock: Clock | None = None,
        log: Any = None,
        nvml: Any = None,
        facilities: tuple[str, ...] = FACILITY_NAMES,
    ) -> None:
        super().__init__()
        self.linux = linux if linux is not None else LinuxConfig()
        self.journal = journal
        self.clock: Clock = clock if clock is not None else _MonotonicClock()
        self.log = log if log is not None else structlog.get_logger("sol.linux")
        self._gates: dict[str, Gate] = {}
        self._gates_lock = threading.Lock()
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._owner_bound: dict[str, Callable[[OwnerWriter, CgroupWriter | None], Any]] = {}
        self.layout: CgroupLayout | None = None
        self.taskstats: TaskstatsReader | None = None
        self._cpu_host: CpuHost | None = None
        #: every writer handed out per owner (restarts included): the actuation counts' source
        self._writers: dict[str, list[OwnerWriter]] = {}
        self._nvml_module = nvml
        self._facility_objects: dict[str, Any] = {}
        builders: Mapping[str, Callable[[], Any]] = {
            "cpu": self._build_cpu,
            "memory": self._build_memory,
            "gpu": self._build_gpu,
            "faas": self._build_faas,
        }
        self._detect_cgroups()
        self._probe_tc()
        for name in FACILITY_NAMES:
            if name not in facilities:
                self._unavailable(name, "disabled by the caller")
                continue
            try:
                builders[name]()
            except Unsupported as exc:
                self._unavailable(name, exc.reason)
            except (SensorError, OSError, ValueError) as exc:
                self._unavailable(name, f"{type(exc).__name__}: {exc}")
        self.log.info(
            "linux.backend_ready",
            facilities={n: getattr(self.sensors, n) is not None for n in FACILITY_NAMES},
            cgroup=self.layout.describe() if self.layout else None,
        )
        # A namespace for code that ignores actuators_for: dry-run only, it can change nothing.
        self.actuators = self.actuators_for("unbound", dry_run=True)

    @property
    def cpu_host(self) -> CpuHost | None:
        """The CPU facility's host side (what its sensors and actuators share), if built."""
        return self._cpu_host

    @classmethod
    def from_config(cls, config: Config, *, journal: UndoJournal | None, clock: Clock | None) -> LinuxBackend:
        return cls(config.linux, journal=journal, clock=clock)

    # -- facilities --------------------------------------------------------------------
    def report_feature(self, name: str, supported: bool, detail: str) -> None:
        """Record what a facility builder found (``sol agents``, the log, ``features``)."""
        self.features.append(Feature(name, supported, detail))
        self.log.info("linux.feature", feature=name, supported=supported, detail=detail)

    def _unavailable(self, facility: str, reason: str) -> None:
        setattr(self.sensors, facility, None)
        self.report_feature(facility, False, reason)

    def _detect_cgroups(self) -> None:
        try:
            self.layout = CgroupLayout.detect(self.linux.cgroup_root)
        except Unsupported as exc:
            self.report_feature("cgroup", False, exc.reason)
            return
        self.report_feature("cgroup", True, self.layout.describe())

    def _build_cpu(self) -> None:
        if self.layout is None:
            raise Unsupported("cpu", f"no cgroup hierarchy under {self.linux.cgroup_root}")
        lc, cpu = self.linux, self.linux.cpu
        if cpu.run_delay_source == "taskstats":
            self.taskstats = TaskstatsReader()
            self._closers.append(("taskstats", self.taskstats.close))
            acct = delayacct_enabled(lc.proc_root)
            self.report_feature("taskstats", True, f"run-queue delay from taskstats (task_delayacct={acct})")
        settings = CpuSettings(
            harvest_cgroup=cpu.harvest_cgroup,
            primary_cgroups=tuple(cpu.primary_cgroups),
            reserved_cores=tuple(cpu.reserved_cores),
            harvest_mode=cpu.harvest_mode,
            run_delay_source=cpu.run_delay_source,
            run_delay_cpu_share=cpu.run_delay_cpu_share,
        )
        host = CpuHost(
            self.layout,
            proc_root=lc.proc_root,
            sys_root=lc.sys_root,
            clock=self.clock.now,
            settings=settings,
            log=self.log,
            taskstats=self.taskstats,
        )
        self._cpu_host = host
        self._closers.append(("cpu", host.close))
        self.on_restored(lambda owner: host.forget_harvest_state())
        self.sensors.cpu = LinuxCpuSensors(host)
        problems = host.probe()
        primaries = (
            ", ".join(cpu.primary_cgroups) if cpu.primary_cgroups else "every task but the harvest group"
        )
        self.report_feature(
            "cpu",
            True,
            f"{len(host.cores)} cores, lendable {sorted(host.lendable)}, primaries: {primaries}, "
            f"harvest {cpu.harvest_cgroup!r} "
            f"({'exists' if host.harvest_exists() else 'created on first write'})",
        )
        if problems:
            self.report_feature("cpu.harvest", False, "; ".join(problems))
        else:
            self._owner_bound["cpu"] = lambda writer, cg: (
                LinuxCpuActuators(host, cg) if cg is not None else None
            )

    def _probe_tc(self) -> None:
        # Whether pyroute2 is installed, without importing it: the import costs ~0.45 s and
        # ~23 MiB of RSS at every start (its package imports IPRoute, NDB and IPDB), and only
        # an agent that binds tc actuators needs it (sol.actuators.tc imports it then).
        if importlib.util.find_spec("pyroute2") is None:
            self.report_feature("tc", False, "pyroute2 is not installed")
            return
        from sol.linux.tc import LinuxTcActuators

        self._owner_bound["tc"] = lambda writer, cg: LinuxTcActuators(writer, self.clock.now)
        self.report_feature("tc", True, "HTB classes over rtnetlink (pyroute2)")

    def _build_memory(self) -> None:
        from sol.linux.memory import build_memory

        build_memory(self)

    def _build_gpu(self) -> None:
        from sol.linux.gpu import build_gpu

        build_gpu(self)

    def _build_faas(self) -> None:
        from sol.linux.faas import build_faas

        build_faas(self)

    # -- actuators ---------------------------------------------------------------------
    def _gate(self, owner: str) -> Gate:
        with self._gates_lock:
            gate = self._gates.get(owner)
            if gate is None:
                gate = self._gates[owner] = Gate()
            return gate

    def writer_for(self, owner: str, *, dry_run: bool) -> OwnerWriter:
        """The gated :class:`HostWriter` of ``owner`` (journal required unless dry-run)."""
        if not dry_run and self.journal is None:
            raise ValueError(
                f"the Linux backend has no undo journal: agent {owner!r} can only run in dry-run "
                "(host writes need a before-image first)"
            )
        writer = OwnerWriter(
            gate=self._gate(owner),
            journal=None if dry_run else self.journal,
            owner=owner,
            dry_run=dry_run,
            log=self.log,
        )
        self._writers.setdefault(owner, []).append(writer)
        return writer

    def actuators_for(self, owner: str, *, dry_run: bool) -> Actuators:
        """``owner``'s actuators: ``cpu``, ``memory``, ``gpu``, ``faas`` (``None`` where the host
        lacks the facility), ``cgroups`` (logical cgroup resources), ``tc`` and ``writer``."""
        writer = self.writer_for(owner, dry_run=dry_run)
        cgroups = CgroupWriter(self.layout, writer) if self.layout is not None else None
        ns = Actuators(cgroups=cgroups, writer=writer)
        for name, bind in self._owner_bound.items():
            setattr(ns, name, bind(writer, cgroups))
        return ns

    def actuation_counts(self) -> Mapping[str, Mapping[str, int]]:
        return {
            owner: {label: sum(int(getattr(w, attr, 0)) for w in ws) for label, attr in _WRITER_COUNTERS}
            for owner, ws in list(self._writers.items())
            if owner != "unbound"
        }

    def revoke(self, owner: str) -> None:
        """Refuse every later write of ``owner``; wait for one in flight to finish first."""
        gate = self._gate(owner)
        if gate.lock.acquire(timeout=REVOKE_WAIT_S):
            gate.revoked = True
            gate.lock.release()
            self.log.info("linux.revoked", owner=owner)
        else:
            # A write is stuck inside the kernel. Refuse everything after it; it may still land.
            gate.revoked = True
            self.log.error("linux.revoke_timeout", owner=owner, waited_s=REVOKE_WAIT_S)

    def unrevoke(self, owner: str) -> None:
        """Let ``owner`` write again (an agent restarted after a quarantine was lifted)."""
        gate = self._gate(owner)
        with gate.lock:
            gate.revoked = False

    # -- Backend protocol --------------------------------------------------------------
    def advance(self, now: float) -> None:
        return None

    def ground_truth(self) -> Mapping[str, float]:
        return {}

    def add_closer(self, name: str, close: Callable[[], None]) -> None:
        self._closers.append((name, close))

    def register_actuators(
        self, facility: str, bind: Callable[[OwnerWriter, CgroupWriter | None], Any]
    ) -> None:
        self._owner_bound[facility] = bind

    def close(self) -> None:
        """Stop what the backend started (DAMON monitors, NVML, netlink sockets); idempotent."""
        closers, self._closers = self._closers, []
        for name, close in reversed(closers):
            try:
                close()
            except Exception as exc:
                self.log.warning("linux.close_failed", what=name, error=f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        have = list(self.sensors.available())
        return f"<LinuxBackend facilities={have}>"


def default_paths(linux: LinuxConfig) -> dict[str, Path]:
    return {"cgroup": linux.cgroup_root, "proc": linux.proc_root, "sys": linux.sys_root}
