"""The daemon: config → backend → journal (crash recovery) → agents under the live executor.

As a system service it also speaks sd_notify (``sol.notify``), serves the control socket
(``sol.control``) and Prometheus metrics (``sol.metrics_http``), reloads on SIGHUP (only the
agents whose config changed restart) and, running as root, refuses a config file that
someone other than root could have written (``config_file_problems``).

Whatever stops it, it ends with a table of what each agent did (``sol.summary``) and, on a
simulated node, the node's ground truth. ``sol sim`` drives the same agents in virtual time
(``sol.simulate``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from sol import __version__
from sol.backend import Backend
from sol.config import EMBEDDED_SOURCE, Config, ConfigError
from sol.control import Command, CommandError, ControlError, ControlServer, Peer
from sol.hints_service import HintService
from sol.log import get_logger
from sol.metrics import RuntimeMetrics
from sol.metrics_http import MetricsServer, is_loopback
from sol.notify import Notifier
from sol.registry import Registry, RegistryError
from sol.runtime.base import AgentSpec
from sol.runtime.live import LOOP_STALL
from sol.runtime.runner import AgentRunner
from sol.summary import format_duration, render_agents, summarize_agents

#: How often the daemon logs a one-line report of what each agent did (``[daemon] report_every``).
REPORT_EVERY = 5.0


class DaemonError(RuntimeError):
    """The daemon cannot start; the message tells the operator what to do."""


@dataclass(slots=True)
class Prepared:
    specs: list[AgentSpec]
    problems: list[str]


def build_specs(config: Config, registry: Registry) -> Prepared:
    """Instances of every enabled agent. An agent that fails to load or construct is left
    out with a problem naming it; the others run."""
    specs: list[AgentSpec] = []
    problems = list(registry.problems)
    for ac in config.enabled_agents:
        try:
            cls = registry.get(ac.name)
            agent = cls()
        except RegistryError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:
            problems.append(f"agent {ac.name!r} failed to construct: {type(exc).__name__}: {exc}")
            continue
        specs.append(AgentSpec(agent, ac.schedule, ac.params, ac.dry_run))
    return Prepared(specs, problems)


def build_backend(
    config: Config,
    *,
    clock_start: float,
    scenario: str | None = None,
    trace: Path | None = None,
    journal: Any = None,
    clock: Any = None,
) -> Backend:
    if config.backend == "sim":
        from sol.sim.scenarios import get_scenario, scenario_from_trace

        sc = (
            scenario_from_trace(trace) if trace is not None else get_scenario(scenario or config.sim.scenario)
        )
        node: Backend = sc.build(config.sim.seed, clock_start=clock_start)
        return node
    try:
        from sol.linux import LinuxBackend  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise DaemonError(
            'backend = "linux" is not available in this build (sol.linux is missing); use backend = "sim"'
        ) from exc
    linux: Backend = LinuxBackend.from_config(config, journal=journal, clock=clock)
    return linux


def open_journal(config: Config, log: Any) -> Any:
    """Open the undo journal and roll back what a crashed run left open (guarantee 8)."""
    from sol.actuators.restorers import HostRoots, TargetScope, default_identities, default_restorers
    from sol.files import ownership_problems
    from sol.safety.journal import JournalError, UndoJournal

    # the leftovers below are written back as root: a journal someone else could write is a
    # list of files they chose for the daemon to overwrite
    untrusted = ownership_problems(config.journal_path, what="undo journal")
    if untrusted:
        raise DaemonError(f"refusing undo journal {config.journal_path}: " + "; ".join(untrusted))
    try:
        journal = UndoJournal.open(config.journal_path, log=log)
    except JournalError as exc:
        raise DaemonError(str(exc)) from exc
    for problem in journal.problems:
        log.error("journal.problem", problem=problem, journal=str(config.journal_path))
    if journal.damage:
        log.error(
            "journal.damaged_at_start",
            journal=str(config.journal_path),
            problems=len(journal.damage),
            hint="records lost since the last run were recovered from the state file where it kept them; "
            "check the host's settings",
        )
    leftovers = journal.open_records()
    if leftovers:
        log.warning("journal.leftovers", count=len(leftovers), journal=str(config.journal_path))
        report = journal.restore(
            default_restorers(HostRoots.from_linux(config.linux)),
            log=log,
            identities=default_identities(HostRoots.from_linux(config.linux)),
            scope=TargetScope.from_linux(config.linux),
        )
        log.info("journal.restored", summary=report.summary())
    return journal


# -- sol run --------------------------------------------------------------------------

#: Where the control socket lives when the daemon runs as root (systemd RuntimeDirectory=).
RUN_DIR = Path("/run/sol")


def control_socket_path(config: Config, *, euid: int | None = None, run_dir: Path = RUN_DIR) -> Path:
    """``[daemon] control_socket``, else ``/run/sol/sol.sock`` as root, else ``<state_dir>/sol.sock``.

    The fallback keeps ``make run`` working unprivileged (no write access to /run).
    """
    if config.daemon.control_socket is not None:
        return config.daemon.control_socket
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        if run_dir.is_dir() and os.access(run_dir, os.W_OK | os.X_OK):
            return run_dir / "sol.sock"
        if not run_dir.exists() and os.access(run_dir.parent, os.W_OK | os.X_OK):
            return run_dir / "sol.sock"
    return config.state_dir / "sol.sock"


def control_socket_candidates(config: Config, *, run_dir: Path = RUN_DIR) -> list[Path]:
    """Where a client looks for the daemon, in order (it may run as another user than us)."""
    if config.daemon.control_socket is not None:
        return [config.daemon.control_socket]
    out = [run_dir / "sol.sock", config.state_dir / "sol.sock"]
    return [p for i, p in enumerate(out) if p not in out[:i]]


def config_file_problems(path: Path, *, euid: int | None = None) -> list[str]:
    """Why a root daemon must not trust the config ``path`` (see :func:`sol.files.ownership_problems`):
    whoever can edit it can make the daemon write any value to any knob it manages."""
    from sol.files import ownership_problems

    try:
        os.stat(path)
    except OSError:
        return []  # unreadable or missing: the loader reports it, with the line
    return ownership_problems(path, what="config", euid=euid)


def check_config_file(path: Path | None, *, euid: int | None = None) -> None:
    """Raise ``DaemonError`` naming every reason a root daemon refuses ``path``."""
    if path is None:
        return
    problems = config_file_problems(path, euid=euid)
    if problems:
        raise DaemonError(
            f"refusing config {path}: anyone who can change it controls a root daemon: " + "; ".join(problems)
        )


@dataclass(slots=True)
class ReloadPlan:
    """What a reload changes: agents started, stopped, restarted, and settings."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: settings applied live (rollback policy, log level)
    applied: list[str] = field(default_factory=list)
    #: settings that only take effect when the daemon restarts
    needs_restart: list[str] = field(default_factory=list)


#: Settings a running daemon applies on reload; every other top-level one needs a restart.
_LIVE_SETTINGS = ("rollback", "log")


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Compare two configs: which agents to start, stop and restart, which settings changed."""
    plan = ReloadPlan()
    before = {a.name: a for a in old.enabled_agents}
    after = {a.name: a for a in new.enabled_agents}
    for name, ac in after.items():
        if name not in before:
            plan.added.append(name)
        elif ac != before[name]:
            plan.restarted.append(name)
        else:
            plan.unchanged.append(name)
    plan.removed = [n for n in before if n not in after]
    for f in ("backend", "rollback", "paths", "log", "sim", "linux", "daemon", "state_dir", "journal_path"):
        if getattr(old, f) != getattr(new, f):
            (plan.applied if f in _LIVE_SETTINGS else plan.needs_restart).append(f)
    return plan


def log_config_warnings(log: Any, config: Config) -> None:
    """One ``config.warning`` per thing that loaded but should change (a deprecated key)."""
    for w in config.warnings:
        log.warning("config.warning", file=w.source, line=w.line, key=w.key, message=w.message)


class Daemon:
    """``sol run``: the live executor plus everything that makes it a system service.

    sd_notify (READY/WATCHDOG/STATUS/RELOADING/STOPPING), the control socket, the Prometheus
    endpoint, SIGHUP reload, and the periodic report. ``load`` re-reads the config for a
    reload (with the command line's overrides applied); without it SIGHUP only logs.
    """

    def __init__(
        self,
        config: Config,
        *,
        registry: Registry | None = None,
        load: Callable[[], Config] | None = None,
        relog: Callable[[Config], None] | None = None,
        notifier: Notifier | None = None,
        install_signals: bool = True,
        on_ready: Callable[[Any], None] | None = None,
        report_every: float | None = None,
        backend: Callable[[Config, Any], Backend] | None = None,
        loop_stall: float = LOOP_STALL,
        summary: TextIO | None = None,
    ) -> None:
        self.config = config
        #: where the end-of-run table goes (``sol run``: beside the log); None: not printed
        self.summary = summary
        #: ``(config, journal) -> Backend``; default: ``build_backend`` (sim or linux)
        self.backend_factory = backend
        #: seconds a loop may miss its tick outside any callback before it counts as stalled
        self.loop_stall = loop_stall
        self.registry = registry or Registry()
        self.load = load
        self.relog = relog
        self.log = get_logger(component="daemon")
        self.notifier = notifier or Notifier(log=self.log)
        self.install_signals = install_signals
        self.on_ready = on_ready
        self.report_every = report_every if report_every is not None else config.daemon.report_every
        self.metrics = RuntimeMetrics()
        self.executor: Any = None
        self.journal: Any = None
        self.backend: Backend | None = None
        self.control: ControlServer | None = None
        #: the workload socket ([hints] socket): hints and notices for every user's own cgroup
        self.workload_socket: ControlServer | None = None
        self.hint_service: HintService | None = None
        self.metrics_server: MetricsServer | None = None
        self.socket_path: Path | None = None
        self.started_at = time.monotonic()
        #: the daemon's own CPU use over the last minute, for ``sol status``
        self.cpu = CpuMeter()
        self.reloads = {"ok": 0, "failed": 0}
        self.last_reload: dict[str, Any] | None = None
        self.exit_code = 0
        # Signal handlers run on the main thread between any two bytecodes, possibly while it
        # holds a lock inside Event.wait(): they may only set a flag and write to this
        # socket (no lock), and the main loop waits on the socket with select().
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop_requested = False
        self._reload_requested = False
        self._reload_lock = threading.Lock()
        self._stall_logged = False

    # -- lifecycle --------------------------------------------------------------------
    def run(self, duration: float | None = None) -> int:
        from sol.actuators.restorers import HostRoots, default_restorers
        from sol.runtime.clock import MonotonicClock
        from sol.runtime.live import LiveExecutor
        from sol.runtime.memory import MemoryLimit, own_memory_limit

        config, log = self.config, self.log
        prepared = build_specs(config, self.registry)
        for problem in prepared.problems:
            log.error("agent.unavailable", problem=problem)
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hint_service = hints = HintService.build(
            state_dir=config.state_dir,
            hint_dir=config.hints.dir,
            notices_dir=config.hints.notices_dir,
            max_targets=config.hints.max_targets,
            notices_kept=config.hints.notices_kept,
            cgroup_root=config.linux.cgroup_root,
            proc_root=config.linux.proc_root,
            log=get_logger(component="hints"),
            host=config.backend == "linux",
        )
        self.journal = journal = open_journal(config, log)
        try:
            if self.backend_factory is not None:
                self.backend = backend = self.backend_factory(config, journal)
            else:
                self.backend = backend = build_backend(
                    config, clock_start=time.monotonic(), journal=journal, clock=MonotonicClock()
                )
            self.metrics.journal_source = lambda: len(journal)
            self.metrics.actuation_source = backend.actuation_counts
            self._daemon_metrics()
            self.executor = executor = LiveExecutor(
                prepared.specs,
                backend=backend,
                log=get_logger(),
                metrics=self.metrics,
                journal=journal,
                restorers=default_restorers(HostRoots.from_linux(config.linux)),
                state_dir=config.state_dir,
                rollback=config.rollback,
                respawn=self._respawn,
                # the daemon's own cgroup limit (the unit's MemoryHigh=/MemoryMax=), else a
                # headroom over its RSS at start: a leaking agent is quarantined before either
                memory_limit=own_memory_limit() or MemoryLimit(None, "no cgroup memory limit"),
                hints=hints.store.view(),
                notices=hints.board,
            )
            log_config_warnings(log, config)
            log.info(
                "daemon.starting",
                config=config.source,
                backend=backend.name,
                agents=[s.agent.name for s in prepared.specs],
                journal=str(config.journal_path),
                rollback=config.rollback,
                pid=os.getpid(),
            )
            reporter = _Reporter(lambda: executor.runners, self.metrics)
            with _signals(self._on_stop, self._on_hup, enabled=self.install_signals):
                try:
                    executor.start()
                    self._start_control()
                    self._start_metrics()
                    self.notifier.ready(status=self.status_line())
                    log.info(
                        "daemon.ready",
                        socket=str(self.socket_path) if self.control else None,
                        metrics=self.metrics_server.url if self.metrics_server else None,
                        watchdog_s=self.notifier.watchdog_interval,
                    )
                    if self.on_ready is not None:
                        self.on_ready(executor)
                    self._main_loop(duration, reporter)
                finally:
                    # whatever ended the loop, even a bug: clean-up and restore (guarantee 7)
                    self.notifier.stopping(status="stopping: cleaning up and restoring")
                    if self.control is not None:
                        self.control.close()
                    if self.workload_socket is not None:
                        self.workload_socket.close()
                    executor.stop()
                    reporter.report(log, final=True)
                    if self.metrics_server is not None:
                        self.metrics_server.close()
            # dozens of figures: the summary table prints them, a log line would be kilobytes
            truth = dict(backend.ground_truth())
            backend.close()
        finally:
            journal.close()
            self.notifier.close()
            self._wake_r.close()
            self._wake_w.close()
        failed = [r.name for r in executor.runners if r.state in ("failed", "quarantined")]
        log.info("daemon.stopped", failed_agents=failed, exit_code=self.exit_code)
        if self.summary is not None:
            print("\n" + self.render_summary(truth), file=self.summary)
            self.summary.flush()
        return self.exit_code

    def render_summary(self, ground_truth: Mapping[str, float]) -> str:
        """What each agent did over the whole run, the node's ground truth (a simulated node
        has one), and how long the daemon ran: what ``sol run`` prints when it stops."""
        lines = [render_agents(summarize_agents(self.executor.runners, self.metrics))]
        if ground_truth:
            from sol.sim.report import render_summary

            lines += ["", render_summary(ground_truth)]
        backend = self.backend.name if self.backend is not None else "?"
        lines += [
            "",
            f"ran {format_duration(time.monotonic() - self.started_at)} on the {backend} backend, "
            f"exit status {self.exit_code}",
        ]
        return "\n".join(lines)

    def _respawn(self, spec: AgentSpec) -> AgentSpec:
        from dataclasses import replace

        from sol.runtime.live import fresh_instance

        try:
            cls = self.registry.get(spec.agent.name)
        except RegistryError:
            return fresh_instance(spec)
        return replace(spec, agent=cls())

    def _start_control(self) -> None:
        path = control_socket_path(self.config)
        self.socket_path = path
        server = ControlServer(path, self.commands(), group=self.config.daemon.control_group, log=self.log)
        try:
            server.start()
        except ControlError as exc:
            self.log.error("control.unavailable", error=str(exc))
        else:
            self.control = server
        self._start_workload_socket()

    def _start_workload_socket(self) -> None:
        path, service = self.config.hints.socket, self.hint_service
        if path is None or service is None:
            return
        server = ControlServer(path, service.workload_commands(), log=self.log, public=True)
        try:
            server.start()
        except ControlError as exc:
            self.log.error("hints.socket_unavailable", error=str(exc))
            return
        self.workload_socket = server

    def _start_metrics(self) -> None:
        d = self.config.daemon
        if not d.metrics:
            return
        if not is_loopback(d.metrics_address):
            self.log.warning(
                "metrics.not_loopback",
                address=d.metrics_address,
                hint="anyone who reaches this address can read the metrics",
            )
        server = MetricsServer(
            self.metrics.registry, address=d.metrics_address, port=d.metrics_port, health=self._health
        )
        try:
            server.start()
        except OSError as exc:
            self.log.error(
                "metrics.unavailable", address=d.metrics_address, port=d.metrics_port, error=str(exc)
            )
            return
        self.metrics_server = server
        self.log.info("metrics.listening", url=server.url)

    def _daemon_metrics(self) -> None:
        from prometheus_client import Counter, Gauge, Info
        from prometheus_client.process_collector import ProcessCollector

        reg = self.metrics.registry
        ProcessCollector(registry=reg)
        Info("sol_build", "The running sol version", registry=reg).info({"version": __version__})
        alive = Gauge("sol_daemon_loops_alive", "1 while every agent loop and the watchdog run", registry=reg)
        alive.set_function(
            lambda: 1.0 if self.executor is not None and self.executor.loops_alive(self.loop_stall) else 0.0
        )
        self._reload_counter = Counter(
            "sol_daemon_reloads", "Config reloads by result", ["result"], registry=reg
        )
        for result in ("ok", "failed"):
            self._reload_counter.labels(result)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def _on_stop(self) -> None:
        """SIGTERM/SIGINT (or a caller on any thread): the main loop stops at its next turn."""
        self._stop_requested = True
        self._poke()

    def _on_hup(self) -> None:
        self._reload_requested = True
        self._poke()

    def request_stop(self) -> None:
        self._on_stop()

    def request_reload(self) -> None:
        """What SIGHUP does: the main loop reloads at its next turn."""
        self._on_hup()

    def _sleep(self, seconds: float) -> None:
        try:
            ready, _, _ = select.select([self._wake_r], [], [], seconds)
        except InterruptedError:
            return
        if ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass

    def _main_loop(self, duration: float | None, reporter: _Reporter) -> None:
        ex, log, notifier = self.executor, self.log, self.notifier
        now = time.monotonic()
        deadline = None if duration is None else now + duration
        next_report = now + self.report_every
        ping_every = notifier.watchdog_interval
        next_ping = now
        stalled_since: float | None = None
        while not ex.stopping:
            self.cpu.sample()
            if self._stop_requested:
                ex.request_stop()
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if self._reload_requested:
                self._reload_requested = False
                self.reload(trigger="SIGHUP")
                continue
            broken = ex.stalled_loops(self.loop_stall)
            if broken:
                # A dead or stuck loop is the runtime's own failure: stop the WATCHDOG=1
                # pings so systemd kills and restarts us (ExecStopPost= restores the host).
                if stalled_since is None:
                    stalled_since = now
                    log.error(
                        "daemon.loops_stalled",
                        loops=broken,
                        action="withholding WATCHDOG=1" if ping_every else "stopping the daemon",
                    )
                    notifier.status(f"FAILING: loops stalled: {', '.join(broken)}")
                if ping_every is None and now - stalled_since > self.loop_stall:
                    # no systemd watchdog to restart us: stop (clean-up, restore) and fail
                    self.exit_code = 1
                    break
            else:
                if stalled_since is not None:
                    log.info("daemon.loops_recovered")
                    stalled_since = None
                if ping_every is not None and now >= next_ping:
                    notifier.watchdog()
                    next_ping = now + ping_every
            if self.hint_service is not None:
                self.hint_service.housekeeping(now, self.config.hints.refresh_every)
            if now >= next_report:
                reporter.report(log)
                if stalled_since is None:
                    notifier.status(self.status_line())
                next_report = now + self.report_every
            waits = [next_report - now, 1.0]
            if deadline is not None:
                waits.append(deadline - now)
            if ping_every is not None:
                waits.append(next_ping - now)
            self._sleep(max(0.005, min(waits)))

    # -- reload -----------------------------------------------------------------------
    def reload(self, trigger: str = "SIGHUP") -> dict[str, Any]:
        """Validate the new config first; on any problem keep running as before and say why.

        Only the agents whose config changed are restarted; added ones start, removed or
        disabled ones stop (clean-up, restore of their undo records).
        """
        with self._reload_lock:
            return self._reload(trigger)

    def _reload(self, trigger: str) -> dict[str, Any]:
        log, ex = self.log, self.executor
        t0 = time.monotonic()
        self.notifier.reloading()
        log.info("daemon.reloading", trigger=trigger, config=self.config.source)
        problems: list[str] = []
        new: Config | None = None
        specs: dict[str, AgentSpec] = {}
        if self.load is None:
            problems.append("this daemon was started without a config file to re-read")
        else:
            try:
                if self.config.source != EMBEDDED_SOURCE:
                    check_config_file(Path(self.config.source))
                new = self.load()
            except ConfigError as exc:
                problems.extend(str(p) for p in exc.problems)
            except (DaemonError, OSError, ValueError) as exc:
                problems.append(str(exc))
        if new is not None and not problems:
            prepared = build_specs(new, self.registry)
            problems.extend(p for p in prepared.problems if p not in self.registry.problems)
            specs = {s.agent.name: s for s in prepared.specs}
        if problems or new is None:
            self.reloads["failed"] += 1
            self._reload_counter.labels("failed").inc()
            took = time.monotonic() - t0
            self.last_reload = {"ok": False, "trigger": trigger, "problems": problems, "took_s": took}
            log.error(
                "daemon.reload_failed", problems=problems, kept=self.config.source, took_s=round(took, 4)
            )
            self.notifier.ready(status=f"reload failed, running config kept: {problems[0][:160]}")
            return dict(self.last_reload)
        plan = plan_reload(self.config, new)
        errors: list[str] = []

        def attempt(what: str, name: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as exc:  # one agent failing to (re)start must not stop the others
                errors.append(f"{what} {name}: {exc}")
                log.error("daemon.reload_agent_failed", agent=name, action=what, error=str(exc))
            # a reload restarting many slow agents must not outlast WatchdogSec=
            if self.notifier.watchdog_interval is not None and ex.loops_alive(self.loop_stall):
                self.notifier.watchdog()

        for name in plan.removed:
            attempt("stop", name, functools.partial(ex.remove_agent, name))
        for name in plan.restarted:
            attempt("restart", name, functools.partial(ex.replace_agent, specs[name], keep_paused=True))
        for name in plan.added:
            attempt("start", name, functools.partial(ex.add_agent, specs[name]))
        if "rollback" in plan.applied:
            ex.rollback = new.rollback
        if "log" in plan.applied and self.relog is not None:
            self.relog(new)
        if plan.needs_restart:
            log.warning(
                "daemon.reload_needs_restart",
                settings=plan.needs_restart,
                hint="these take effect at the next start (`systemctl restart sol`)",
            )
        self.config = new
        log_config_warnings(log, new)
        took = time.monotonic() - t0
        self.reloads["ok"] += 1
        self._reload_counter.labels("ok").inc()
        self.last_reload = {
            "ok": True,
            "trigger": trigger,
            "added": plan.added,
            "removed": plan.removed,
            "restarted": plan.restarted,
            "unchanged": plan.unchanged,
            "applied": plan.applied,
            "needs_restart": plan.needs_restart,
            "errors": errors,
            "took_s": took,
        }
        log.info(
            "daemon.reloaded",
            added=plan.added,
            removed=plan.removed,
            restarted=plan.restarted,
            unchanged=plan.unchanged,
            applied=plan.applied,
            needs_restart=plan.needs_restart,
            took_s=round(took, 4),
        )
        self.notifier.ready(status=self.status_line())
        return dict(self.last_reload)

    # -- status and commands ----------------------------------------------------------
    def status_line(self) -> str:
        """One line for systemd's STATUS=: agent states, backend, open undo records."""
        ex = self.executor
        agents = status_line(ex.runners) if ex is not None and ex.runners else "no agents"
        open_records = len(self.journal) if self.journal is not None else 0
        backend = self.backend.name if self.backend is not None else "?"
        return f"{agents}; backend {backend}; {open_records} open undo record(s)"

    def _health(self) -> tuple[bool, str]:
        if self.executor is None:
            return False, "starting"
        broken = self.executor.stalled_loops(self.loop_stall)
        return (not broken), ("ok" if not broken else "stalled: " + ", ".join(broken))

    def agent_rows(self) -> list[dict[str, Any]]:
        ex, m = self.executor, self.metrics
        specs = ex.agent_specs()
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        for r in list(ex.runners):
            st = dict(r.status())
            until = st.pop("backoff_until", None)
            st["backoff_left_s"] = round(max(0.0, until - now), 3) if until is not None else None
            applied = m.applied(r.name)
            decisions = sum(applied.values())
            model = sum(n for (source, _), n in applied.items() if source == "model")
            stats = m.callback_stats(r.name)
            try:
                late = sorted(ex.lateness(r.name))
            except KeyError:  # removed by a reload since we took the list
                late = []
            spec = specs.get(r.name)
            st.update(
                dry_run=bool(spec.dry_run) if spec is not None else False,
                decisions=decisions,
                model_share=round(model / decisions, 4) if decisions else None,
                applied={f"{s}/{why}" if why else s: n for (s, why), n in sorted(applied.items())},
                ticks=sum(m.ticks(r.name).values()),
                errors=int(m.counter_value(m.errors, r.name)),
                mitigations=int(m.counter_value(m.mitigations, r.name)),
                quarantines=int(m.counter_value(m.quarantines, r.name)),
                cpu_s=round(sum(stats.cpu.values()), 4),
                act_late_p99_ms=round(1000 * late[max(0, int(len(late) * 0.99) - 1)], 3) if late else None,
            )
            rows.append(st)
        return rows

    def status(self) -> dict[str, Any]:
        ex, config = self.executor, self.config
        broken = ex.stalled_loops(self.loop_stall)
        return {
            "daemon": {
                "version": __version__,
                "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self.started_at, 3),
                **self.cpu.status(),
                "config": config.source,
                "backend": self.backend.name if self.backend is not None else None,
                "rollback": ex.rollback,
                "journal": str(config.journal_path),
                "open_undo_records": len(self.journal) if self.journal is not None else None,
                "loops_alive": not broken,
                "stalled": broken,
                "watchdog": self.notifier.watchdog_interval is not None,
                "socket": str(self.socket_path) if self.socket_path else None,
                "workload_socket": str(self.config.hints.socket) if self.workload_socket else None,
                "hint_targets": len(self.hint_service.store.snapshot()) if self.hint_service else 0,
                "notices": self.hint_service.board.last_seq if self.hint_service else 0,
                "metrics": self.metrics_server.url if self.metrics_server else None,
                "reloads": dict(self.reloads),
                "last_reload": self.last_reload,
            },
            "agents": self.agent_rows(),
        }

    def commands(self) -> dict[str, Command]:
        cmds = {
            "status": Command(_no_args(self.status), help="the daemon and every agent"),
            "agents": Command(_no_args(self._agents_brief), help="agent names, states, dry-run"),
            "health": Command(_no_args(self._health_reply), help="are all loops alive"),
            "pause": Command(
                self._cmd_pause, mutating=True, help="stop one agent (clean-up, restore) until resumed"
            ),
            "resume": Command(self._cmd_resume, mutating=True, help="start a paused/quarantined agent again"),
            "dry-run": Command(
                self._cmd_dry_run,
                mutating=True,
                help='{"on": true|false, "agent": NAME?}: restart in dry-run',
            ),
            "restore": Command(
                self._cmd_restore, mutating=True, help="pause agents and roll back their host settings"
            ),
            "reload": Command(
                self._cmd_reload,
                mutating=True,
                help="re-read the config file (as SIGHUP)",
            ),
        }
        if self.hint_service is not None:
            cmds.update(self.hint_service.admin_commands())
        cmds["help"] = Command(
            lambda a, p: {name: c.help for name, c in sorted(cmds.items())}, help="this list"
        )
        return cmds

    def _agents_brief(self) -> list[dict[str, Any]]:
        specs = self.executor.agent_specs()
        return [
            {
                "agent": r.name,
                "state": r.state,
                "dry_run": bool(specs[r.name].dry_run) if r.name in specs else False,
            }
            for r in list(self.executor.runners)
        ]

    def _health_reply(self) -> dict[str, Any]:
        ok, detail = self._health()
        return {"alive": ok, "detail": detail}

    def _agent_arg(
        self, args: Mapping[str, Any], *, required: bool = True, extra: tuple[str, ...] = ()
    ) -> str | None:
        unknown = sorted(set(args) - {"agent", *extra})
        if unknown:
            raise CommandError("bad-request", f"unknown argument(s) {', '.join(map(str, unknown))[:200]}")
        name = args.get("agent")
        if name is None and not required:
            return None
        if not isinstance(name, str) or not name:
            raise CommandError("bad-request", 'this command needs "agent": NAME')
        known = self.executor.agent_specs()
        if name not in known:
            raise CommandError(
                "not-found", f"no agent {name[:64]!r} in this daemon; agents: {', '.join(known) or '(none)'}"
            )
        return name

    def _control(self, fn: Callable[[], Any]) -> Any:
        from sol.runtime.live import AgentControlError

        try:
            return fn()
        except AgentControlError as exc:
            raise CommandError("failed", str(exc)) from exc

    def _cmd_reload(self, args: Mapping[str, Any], peer: Peer) -> Any:
        if args:
            raise CommandError("bad-request", "reload takes no arguments")
        return self.reload(trigger=f"control socket (uid {peer.uid})")

    def _cmd_pause(self, args: Mapping[str, Any], peer: Peer) -> Any:
        name = self._agent_arg(args)
        assert name is not None
        r = self._control(
            lambda: self.executor.pause_agent(name, why=f"paused over the control socket (uid {peer.uid})")
        )
        self.notifier.status(self.status_line())
        return {"agent": name, "state": r.state}

    def _cmd_resume(self, args: Mapping[str, Any], peer: Peer) -> Any:
        name = self._agent_arg(args)
        assert name is not None
        r = self._control(lambda: self.executor.resume_agent(name))
        self.notifier.status(self.status_line())
        return {"agent": name, "state": r.state, "reason": r.state_reason}

    def _cmd_dry_run(self, args: Mapping[str, Any], peer: Peer) -> Any:
        on = args.get("on")
        if not isinstance(on, bool):
            raise CommandError("bad-request", 'dry-run needs "on": true or false')
        name = self._agent_arg({k: v for k, v in args.items() if k != "on"}, required=False)
        names = [name] if name is not None else list(self.executor.agent_specs())
        out = {}
        for n in names:
            r = self._control(functools.partial(self.executor.set_dry_run, n, on))
            out[n] = r.state
        self.log.info("daemon.dry_run", on=on, agents=names, uid=peer.uid)
        self.notifier.status(self.status_line())
        return {"dry_run": on, "agents": out}

    def _cmd_restore(self, args: Mapping[str, Any], peer: Peer) -> Any:
        from sol.actuators.restorers import HostRoots, default_identities, default_restorers

        name = self._agent_arg(args, required=False)
        ex = self.executor
        names = [name] if name is not None else [r.name for r in ex.runners]
        paused = []
        why = f"restore requested over the control socket (uid {peer.uid})"
        for n in names:
            if any(r.name == n and r.state == "running" for r in ex.runners):
                self._control(functools.partial(ex.pause_agent, n, why=why))
                paused.append(n)
        # what is still open: restores that failed before, or owners no agent runs any more
        roots = HostRoots.from_linux(self.config.linux)
        report = self.journal.restore(
            default_restorers(roots), owner=name, log=self.log, identities=default_identities(roots)
        )
        self.notifier.status(self.status_line())
        return {
            "paused": paused,
            "restored": [r.describe() for r in report.restored],
            "failed": [f"{f.record.describe()}: {f.error}" for f in report.failed],
            "open_undo_records": len(self.journal),
            "note": "paused agents stay paused: `sol resume AGENT` starts one again",
        }


def _no_args(fn: Callable[[], Any]) -> Callable[[Mapping[str, Any], Peer], Any]:
    """A command that takes no arguments (any given is a bad request)."""

    def run(args: Mapping[str, Any], peer: Peer) -> Any:
        if args:
            raise CommandError(
                "bad-request", f"unexpected argument(s) {', '.join(map(str, sorted(args)))[:200]}"
            )
        return fn()

    return run


def run_daemon(
    config: Config,
    *,
    duration: float | None = None,
    registry: Registry | None = None,
    report_every: float | None = None,
    install_signals: bool = True,
    on_ready: Callable[[Any], None] | None = None,
    load: Callable[[], Config] | None = None,
    relog: Callable[[Config], None] | None = None,
    notifier: Notifier | None = None,
    backend: Callable[[Config, Any], Backend] | None = None,
    loop_stall: float = LOOP_STALL,
    summary: TextIO | None = None,
) -> int:
    """Run the live daemon until ``duration`` passes or SIGTERM/SIGINT; returns the exit code.
    ``summary``: where to print the end-of-run table (None: not printed)."""
    daemon = Daemon(
        config,
        registry=registry,
        load=load,
        relog=relog,
        notifier=notifier,
        install_signals=install_signals,
        on_ready=on_ready,
        report_every=report_every,
        backend=backend,
        loop_stall=loop_stall,
        summary=summary,
    )
    return daemon.run(duration)


@contextmanager
def _signals(stop: Callable[[], None], hup: Callable[[], None], *, enabled: bool) -> Iterator[None]:
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        hup()

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class CpuMeter:
    """The process's CPU time (every thread, user + system) as % of one core over the last
    ``window`` seconds: what the daemon costs the host now, for an operator's ``sol status``.

    The main loop calls ``sample()`` at every turn (at least once a second); the rate is taken
    between the newest sample and the oldest one still within the window, so start-up is out
    of it once the window has passed.

    >>> m = CpuMeter(window=60.0)
    >>> m.status()
    {'cpu_pct': None, 'cpu_window_s': 0.0}
    >>> m.sample(now=0.0, cpu=1.0); m.sample(now=30.0, cpu=1.3); m.sample(now=90.0, cpu=1.9)
    >>> m.status()
    {'cpu_pct': 1.0, 'cpu_window_s': 60.0}
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def sample(self, now: float | None = None, cpu: float | None = None) -> None:
        """Record the process's CPU seconds now (both taken from the clocks unless given)."""
        s = self._samples
        s.append((time.monotonic() if now is None else now, time.process_time() if cpu is None else cpu))
        horizon = s[-1][0] - self.window
        while len(s) > 2 and s[1][0] <= horizon:
            s.popleft()

    def status(self) -> dict[str, float | None]:
        s = self._samples
        if len(s) < 2 or s[-1][0] - s[0][0] < 1.0:
            return {"cpu_pct": None, "cpu_window_s": round(s[-1][0] - s[0][0], 1) if s else 0.0}
        (t0, c0), (t1, c1) = s[0], s[-1]
        return {"cpu_pct": round(100.0 * (c1 - c0) / (t1 - t0), 3), "cpu_window_s": round(t1 - t0, 1)}


class _Reporter:
    """Logs, per agent, what it applied since the last report: the story of the run."""

    def __init__(self, runners: Callable[[], Sequence[AgentRunner]], metrics: RuntimeMetrics) -> None:
        self.runners = runners
        self.metrics = metrics
        self._seen: dict[str, collections.Counter[str]] = {}

    def report(self, log: Any, final: bool = False) -> None:
        for r in list(self.runners()):
            counts = _applied_totals(self.metrics, r.name)
            # the final report is the whole run; the periodic ones what happened since the last
            delta = counts if final else counts - self._seen.get(r.name, collections.Counter())
            self._seen[r.name] = counts
            last = r.last_action
            log.info(
                "agent.final" if final else "agent.report",
                agent=r.name,
                state=r.state,
                applied=dict(delta),
                last_value=_short(last.value) if last else None,
                last_source=f"{last.source}/{last.reason}"
                if last and last.reason
                else (last.source if last else None),
            )


def _applied_totals(metrics: RuntimeMetrics, agent: str) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for (source, reason), n in metrics.applied(agent).items():
        out[f"{source}/{reason}" if reason else source] += n
    return out


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_line(runners: Sequence[AgentRunner]) -> str:
    states: Mapping[str, int] = collections.Counter(r.state for r in runners)
    return ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
