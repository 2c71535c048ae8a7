"""The harness: one agent under one fault, in virtual time, with safeguards on and off.

:func:`run_one` builds the agent's scenario node, wraps it in a
:class:`~sol.fault_injection.failpoints.FaultBackend`, installs the fault's failpoints, and
runs the production runtime (``VirtualExecutor``) on it, recording what the agent was given
and what it did. :func:`run_cell` runs the four runs of one matrix cell (fault-free and
faulty, safeguards on and off) and measures time to the safe state, harm and benefit;
:mod:`sol.fault_injection.invariants` checks DESIGN §4 on the safeguarded run.
"""

from __future__ import annotations

import collections
import copy
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from sol.fault_injection.baseline import defeat_safeguards, unsafe_schedule
from sol.fault_injection.failpoints import DaemonKilled, FaultBackend, Injector, wrap_agent
from sol.fault_injection.faults import MITIGATE, QUARANTINE, Fault, Timeline
from sol.fault_injection.profiles import AgentProfile, most_aggressive, profile_for
from sol.runtime.base import AgentSpec
from sol.runtime.memory import DEFAULT_HEADROOM, MemoryLimit, give_back_freed_memory
from sol.runtime.virtual import VirtualExecutor
from sol.safety.journal import UndoJournal
from sol.sdk import Agent, Prediction, Schedule, as_verdict

__all__ = ["Cell", "Probe", "RunRecord", "run_cell", "run_one"]

LogEvent = tuple[float, str, dict[str, Any]]

#: The memory the safeguarded runs may grow, as the daemon with no cgroup limit (the harness
#: process's RSS at the start of each run is the baseline, not the daemon's ~35 MiB).
HARNESS_MEMORY = MemoryLimit(None, "fault harness, as the daemon's default", headroom=DEFAULT_HEADROOM)


def recording_logger(events: list[LogEvent], now: Callable[[], float]) -> Any:
    """A structlog logger that keeps every event (stamped with virtual time) and prints nothing."""

    def record(logger: Any, method: str, event_dict: Any) -> Any:
        event = str(event_dict.pop("event", ""))
        events.append((now(), event, dict(event_dict, level=method)))
        raise structlog.DropEvent

    return structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        processors=[record],
        wrapper_class=structlog.BoundLogger,
    )


@dataclass(slots=True)
class Probe:
    """What the runtime handed the agent's judgement callbacks, seen from outside the agent."""

    #: (time the call ended, passed, duration)
    validations: list[tuple[float, bool]] = field(default_factory=list)
    #: times learn() got an observation that validate() had not passed
    bad_learns: list[float] = field(default_factory=list)
    model_verdicts: list[tuple[float, bool]] = field(default_factory=list)
    #: (time the call started, passed)
    perf_verdicts: list[tuple[float, bool]] = field(default_factory=list)
    #: safeguards off: times default_predict() gave the agent's real default (not a held decision)
    real_defaults: list[float] = field(default_factory=list)
    _last: tuple[object, bool] | None = None


def instrument(agent: Agent, probe: Probe, now: Callable[[], float], timeout: float) -> None:
    """Record validate/learn/assess verdicts on the instance (outermost wrapper)."""
    validate, learn = agent.validate, agent.learn
    assess_model, assess_performance = agent.assess_model, agent.assess_performance

    def v(obs: Any) -> Any:
        t0 = now()
        out = validate(obs)
        ok = bool(as_verdict(out)) and now() - t0 <= timeout
        probe.validations.append((now(), ok))
        probe._last = (obs, ok)
        return out

    def lrn(obs: Any) -> None:
        last = probe._last
        if last is None or last[0] is not obs or not last[1]:
            probe.bad_learns.append(now())
        probe._last = None
        learn(obs)

    def am() -> Any:
        t0 = now()
        try:
            out = assess_model()
        except BaseException:
            probe.model_verdicts.append((now(), False))
            raise
        probe.model_verdicts.append((now(), bool(as_verdict(out)) and now() - t0 <= timeout))
        return out

    def ap() -> Any:
        t0 = now()
        try:
            out = assess_performance()
        except BaseException:
            probe.perf_verdicts.append((t0, False))
            raise
        probe.perf_verdicts.append((t0, bool(as_verdict(out)) and now() - t0 <= timeout))
        return out

    for name, fn in (("validate", v), ("learn", lrn), ("assess_model", am), ("assess_performance", ap)):
        setattr(agent, name, fn)


@dataclass(slots=True)
class RunRecord:
    """Everything one run produced (one agent, one fault or none, safeguards on or off)."""

    agent: str
    fault: str | None
    safeguards: bool
    seed: int
    schedule: Schedule
    actions: list[tuple[float, Prediction]] = field(default_factory=list)
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    state: str = "new"
    state_reason: str | None = None
    events: list[LogEvent] = field(default_factory=list)
    ground_truth: dict[str, float] = field(default_factory=dict)
    injections: int = 0
    first_injection: float | None = None
    touched: frozenset[str] = frozenset()
    probe: Probe = field(default_factory=Probe)
    exercised: bool = False
    killed_at: float | None = None
    restored_at: float | None = None
    #: after a kill: `sol restore` restored every record, and every knob reads its before-image
    restore_ok: bool | None = None
    knobs_restored: bool | None = None
    #: after a kill: what the reopened journal found lost (and recovered from its state file)
    journal_damage: int = 0
    #: undo records still open after the run (a quarantine's restore failed while the fault lasted)
    left_open: int = 0
    final_restore_ok: bool | None = None
    quarantined_at: float | None = None
    wall_s: float = 0.0
    setup_error: str | None = None
    #: what a fault did to the daemon itself (``Fault.daemon_metric``): ``escaped_core_s``, the
    #: core-seconds (run time) of the thread the agent started, charged to no agent (and
    #: ``escaped_cpu_s``, what it really used before the faster-than-real-time run ended), and
    #: ``held_mib``, the most memory the agent kept because of the fault
    daemon: dict[str, float] = field(default_factory=dict)

    def compact(self) -> None:
        """Drop the per-call records (the ground truth and the counts stay)."""
        self.actions, self.calls, self.events, self.probe = [], [], [], Probe()

    def event_times(self, name: str) -> list[float]:
        return [t for t, e, _ in self.events if e == name]

    def model_values(self) -> list[Any]:
        return [p.value for _, p in self.actions if p.source == "model"]

    def default_value(self) -> Any:
        return next((p.value for _, p in self.actions if p.source == "default"), None)


def _start_agent(
    cls: type[Agent],
    *,
    fault: Fault | None,
    injector: Injector,
    backend: FaultBackend,
    safeguards: bool,
    probe: Probe,
    aggressive: Callable[[Agent], Any] | None,
    kill_at: float | None,
    now: Callable[[], float],
) -> AgentSpec:
    agent = cls()
    if fault is not None and fault.boundary != "node":
        agg = (lambda: aggressive(agent)) if aggressive is not None else None
        wrap_agent(agent, injector, backend, aggressive=agg, kill_at=kill_at)
    schedule = cls.schedule if safeguards else unsafe_schedule(cls.schedule)
    if not safeguards:
        defeat_safeguards(agent, on_own_default=lambda: probe.real_defaults.append(now()))
    instrument(agent, probe, now, schedule.callback_timeout)
    return AgentSpec(agent, None if safeguards else schedule, cls.Params())


def run_one(
    cls: type[Agent],
    fault: Fault | None,
    *,
    safeguards: bool,
    seed: int = 1,
    timeline: Timeline | None = None,
    profile: AgentProfile | None = None,
    aggressive_value: Any = None,
) -> RunRecord:
    """Run ``cls`` on its scenario with ``fault`` (or none), safeguards on or off."""
    from sol.sim.scenarios import get_scenario

    timeline = timeline or Timeline()
    profile = profile or profile_for(cls)
    if fault is not None and fault.mechanism == "memory_leak":
        # the runs share this process: what an earlier run freed must be back with the kernel,
        # or this run's leak refills those pages without the RSS (the memory guard's
        # measure, as the cgroup's) growing
        give_back_freed_memory()
    wall0 = time.perf_counter()
    rec = RunRecord(
        cls.name,
        fault.name if fault else None,
        safeguards,
        seed,
        cls.schedule if safeguards else unsafe_schedule(cls.schedule),
    )
    injector = Injector(fault, timeline, seed)
    node = get_scenario(profile.scenario).build(seed)
    clock_ref: list[Callable[[], float]] = [lambda: float(node.now())]

    def now() -> float:
        return clock_ref[0]()

    log = recording_logger(rec.events, now)
    aggressive = profile.aggressive
    if aggressive is None and aggressive_value is not None:

        def aggressive(agent: Agent) -> Any:
            return copy.deepcopy(aggressive_value)

    with tempfile.TemporaryDirectory(prefix="sol-faults-") as tmp:
        jpath = Path(tmp) / "undo.journal"
        journal = UndoJournal.open(jpath, log=log, fsync=False) if safeguards else None
        backend = FaultBackend(node, injector, owner=cls.name, safeguards=safeguards, journal=journal)
        try:
            backend.schedule_environment(fault, timeline)
            kill_at = timeline.surge_at if fault is not None and fault.mechanism == "sigkill" else None
            start = 0.0
            while True:
                probe = Probe()
                spec = _start_agent(
                    cls,
                    fault=fault,
                    injector=injector,
                    backend=backend,
                    safeguards=safeguards,
                    probe=probe,
                    aggressive=aggressive,
                    kill_at=kill_at,
                    now=now,
                )
                executor = VirtualExecutor(
                    [spec],
                    backend=backend,
                    log=log,
                    journal=journal,
                    restorers=backend.restorers(),
                    record=True,
                    start=start,
                    # without SOL nothing stops an agent's thread or its memory
                    refuse_threads=safeguards,
                    memory_limit=HARNESS_MEMORY if safeguards else None,
                )
                backend.bind_clock(executor.vclock)
                clock_ref[0] = executor.vclock.now
                killed: float | None = None
                try:
                    executor.run(timeline.duration - start)
                except DaemonKilled as exc:
                    killed = exc.at
                runner = executor.runners[0]
                rec.actions += runner.actions
                rec.calls += runner.calls
                rec.state, rec.state_reason = runner.state, runner.state_reason
                _merge_probe(rec.probe, probe)
                if runner.state == "failed" and rec.setup_error is None:
                    rec.setup_error = runner.state_reason
                if killed is None:
                    break
                # SIGKILL: nothing of the daemon runs any more. systemd's ExecStopPost=
                # `sol restore` opens the journal (the dead process's lock is gone) and puts
                # every open before-image back; Restart= starts the daemon restart_s later.
                rec.killed_at = killed
                backend.kill_armed = False
                kill_at = None
                clock_ref[0] = lambda: float(node.now())
                if journal is not None:
                    # what the dead daemon had made durable: the settings restore must bring back
                    images = {(r.kind, r.target): r.before for r in journal.open_records()}
                    journal.close()
                    if fault is not None and fault.params.get("empty_journal"):
                        jpath.write_bytes(b"")  # lost between the kill and the restore
                    journal = UndoJournal.open(jpath, log=log, fsync=False)
                    rec.journal_damage = len(journal.damage)
                    backend.journal = journal
                    report = journal.restore(backend.restorers(), log=log)
                    state = backend.knob_state()
                    rec.restore_ok = report.ok
                    rec.knobs_restored = all(state.get(k) == v for k, v in images.items())
                    rec.restored_at = killed
                assert fault is not None
                start = killed + float(fault.params.get("restart_s", 0.0))
                if start >= timeline.duration:
                    backend.advance(timeline.duration)
                    break
            if journal is not None:
                left = journal.open_records()
                rec.left_open = len(left)
                if left:
                    # what `sol restore` (ExecStopPost=) does after the run
                    images = {(r.kind, r.target): r.before for r in left}
                    report = journal.restore(backend.restorers(), log=log)
                    state = backend.knob_state()
                    rec.final_restore_ok = report.ok
                    rec.knobs_restored = all(state.get(k) == v for k, v in images.items())
            rec.ground_truth = dict(backend.ground_truth())
        finally:
            injector.close()
            if journal is not None:
                journal.close()
            backend.close()
    rec.daemon = {
        # nothing stops an agent's own thread: one core from its start to the end of the run
        "escaped_core_s": timeline.duration - injector.escaped_at if injector.escaped_at is not None else 0.0,
        "escaped_cpu_s": injector.escaped_cpu_s,
        "held_mib": injector.held_mib,
    }
    rec.injections = injector.injections
    rec.first_injection = injector.first_at
    rec.touched = frozenset(backend.touched)
    if fault is None:
        rec.exercised = False
    elif fault.boundary == "node":
        rec.exercised = backend.environment_reaches(fault)
    else:
        rec.exercised = injector.injections > 0
    quarantined = rec.event_times("agent.quarantined")
    rec.quarantined_at = quarantined[0] if quarantined else None
    rec.wall_s = time.perf_counter() - wall0
    return rec


def _merge_probe(into: Probe, part: Probe) -> None:
    into.validations += part.validations
    into.bad_learns += part.bad_learns
    into.model_verdicts += part.model_verdicts
    into.perf_verdicts += part.perf_verdicts
    into.real_defaults += part.real_defaults


# -- measures --------------------------------------------------------------------------------


def fault_start(rec: RunRecord, timeline: Timeline) -> float:
    if rec.killed_at is not None:
        return rec.killed_at
    return timeline.onset


def _succeeded_actions(rec: RunRecord) -> list[tuple[float, Prediction]]:
    """The actions whose ``act()`` call succeeded (one act call per recorded action, in order)."""
    acts = [outcome for _, n, outcome in rec.calls if n == "act"]
    return [a for a, outcome in zip(rec.actions, acts, strict=False) if outcome == "ok"]


def time_to_safe(rec: RunRecord, timeline: Timeline) -> float | None:
    """Seconds from the fault's onset to the first safe response that took effect (``None``: never).

    Safeguards on: a default decision applied (``act()`` succeeded), ``mitigate()`` or the
    quarantine's ``clean_up()`` succeeded, the quarantine's journal restore put every
    before-image back, or the crash restore did.
    Safeguards off: the agent's own default applied (a held decision is not safe), or a
    successful ``clean_up()``. A failed mitigation is not a safe state.
    """
    start = fault_start(rec, timeline)
    end = timeline.duration
    times: list[float] = []
    if rec.safeguards:
        times += [t for t, p in _succeeded_actions(rec) if t >= start and p.source == "default"]
        times += [t for t, n, o in rec.calls if start <= t < end and n == "mitigate" and o == "ok"]
        if rec.restored_at is not None and rec.knobs_restored:
            times.append(rec.restored_at)
        times += [
            t
            for t, e, kw in rec.events
            if e == "agent.restored" and start <= t < end and str(kw.get("summary", "")).endswith(" 0 failed")
        ]
    else:
        times += [t for t in rec.probe.real_defaults if t >= start]
    times += [t for t, n, o in rec.calls if start <= t < end and n == "clean_up" and o == "ok"]
    return min(times) - start if times else None


def response(rec: RunRecord, timeline: Timeline) -> collections.Counter[str]:
    """How the runtime answered the fault: default reasons applied, mitigate, quarantine, restore."""
    start = fault_start(rec, timeline)
    s = rec.schedule
    stop = timeline.end + s.prediction_ttl + s.assess_every + s.callback_timeout
    out: collections.Counter[str] = collections.Counter(
        str(p.reason) for t, p in rec.actions if start <= t < stop and p.source == "default"
    )
    mitigations = sum(1 for t, n, _ in rec.calls if n == "mitigate" and start <= t < stop)
    if mitigations:
        out[MITIGATE] = mitigations
    if rec.quarantined_at is not None and rec.quarantined_at >= start:
        out[QUARANTINE] = 1
    if rec.restored_at is not None:
        out["restore"] = 1
    return out


def metric(rec: RunRecord | None, name: str | None) -> float | None:
    if rec is None or name is None:
        return None
    value = rec.ground_truth.get(name)
    return None if value is None else float(value)


# -- one matrix cell ---------------------------------------------------------------------------


@dataclass(slots=True)
class Cell:
    """One agent x one fault: the faulty runs with safeguards on and off, and their baselines."""

    agent: str
    fault: Fault
    profile: AgentProfile
    timeline: Timeline
    on: RunRecord
    off: RunRecord
    clean_on: RunRecord
    clean_off: RunRecord
    violations: list[Any] = field(default_factory=list)
    #: node faults: the ground truth of the node with no agent at all, without and with the
    #: fault (what the environment does by itself, that no agent is answerable for)
    no_agent: tuple[dict[str, float], dict[str, float]] | None = None
    #: the measures of :meth:`compact`-ed runs, computed before their records were dropped
    _safe: tuple[float | None, float | None] | None = None
    _response: collections.Counter[str] | None = None

    @property
    def exercised(self) -> bool:
        return self.on.exercised or self.off.exercised

    def compact(self) -> None:
        """Keep the measures, drop the per-call records of the faulty runs (a matrix of
        hundreds of runs would otherwise hold every action of every run in memory)."""
        self._safe = self.time_to_safe()
        self._response = self.response()
        for rec in (self.on, self.off):
            rec.compact()

    @property
    def passed(self) -> bool:
        return not self.violations

    def harm(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(clean on, clean off, faulty on, faulty off) values of the harm metric."""
        m = self.profile.harm_metric
        return (metric(self.clean_on, m), metric(self.clean_off, m), metric(self.on, m), metric(self.off, m))

    def benefit_kept(self) -> tuple[float | None, float | None]:
        m = self.profile.benefit_metric
        out: list[float | None] = []
        for run, clean in ((self.on, self.clean_on), (self.off, self.clean_off)):
            a, b = metric(run, m), metric(clean, m)
            out.append(None if a is None or b is None or b <= 0 else a / b)
        return out[0], out[1]

    def environment_harm(self) -> float:
        """The harm a node fault adds with no agent on the node (0 for the other faults)."""
        m = self.profile.harm_metric
        if self.no_agent is None or m is None:
            return 0.0
        clean, faulty = self.no_agent
        return float(faulty.get(m, 0.0)) - float(clean.get(m, 0.0))

    def daemon_damage(self) -> tuple[float | None, float | None]:
        """(on, off) of the fault's ``daemon_metric``; (None, None) for a fault of the node."""
        m = self.fault.daemon_metric
        if m is None:
            return None, None
        return self.on.daemon.get(m), self.off.daemon.get(m)

    def verdict(self) -> str:
        """``prevented`` / ``not prevented`` / ``weak`` (no harm even without safeguards) / ``n/a``.

        A fault that harms the daemon itself is judged on its ``daemon_metric`` (none without
        the fault), not on the agent's harm metric.
        """
        if not self.exercised:
            return "not exercised"
        if self.fault.daemon_metric is not None:
            return harm_verdict((0.0, 0.0, *self.daemon_damage()))
        return harm_verdict(self.harm(), self.environment_harm())

    def time_to_safe(self) -> tuple[float | None, float | None]:
        if self._safe is not None:
            return self._safe
        return time_to_safe(self.on, self.timeline), time_to_safe(self.off, self.timeline)

    def response(self) -> collections.Counter[str]:
        if self._response is not None:
            return self._response
        return response(self.on, self.timeline)


def harm_verdict(harm: tuple[float | None, ...], environment: float = 0.0) -> str:
    """The verdict on (clean on, clean off, faulty on, faulty off) harm.

    ``weak``: without safeguards the fault adds no harm beyond what it does to a node with no
    agent (``environment``), so the scenario cannot show what the safeguards are for.
    ``prevented``: less harm with safeguards than without. Tolerance: 5 % of the clean harm.
    """
    clean_on, clean_off, on, off = harm
    if on is None or off is None or clean_on is None or clean_off is None:
        return "n/a"
    tol = max(0.05 * max(abs(clean_on), abs(clean_off)), 1e-6)
    if off - clean_off - max(environment, 0.0) <= tol:
        return "weak"
    if on < off - tol:
        return "prevented"
    return "not prevented"


def no_agent_truth(
    profile: AgentProfile, fault: Fault | None, *, seed: int, timeline: Timeline
) -> dict[str, float]:
    """The ground truth of the agent's scenario node run with no agent (and ``fault``'s node events)."""
    from sol.sim.scenarios import get_scenario

    node = get_scenario(profile.scenario).build(seed)
    backend = FaultBackend(node, None, owner="nobody", safeguards=False, journal=None)
    try:
        backend.schedule_environment(fault, timeline)
        backend.advance(timeline.duration)
        return dict(backend.ground_truth())
    finally:
        backend.close()


def warm_up(cls: type[Agent], profile: AgentProfile, seed: int = 1) -> Any:
    """Run the agent's ``setup`` once outside any executor, so its first-time costs are paid;
    return its ``default_predict()`` right after (``None`` if either failed).

    An agent may import its heavy dependencies lazily in ``setup``. Under the virtual
    executor a wall-clock alarm interrupts a callback that really takes longer than
    ``max(callback_timeout, 0.25 s)``, and one interrupting a first import leaves a
    half-initialised module behind, failing every later ``setup`` in the process. Warming up
    here (no alarm) keeps the matrix about faults, not about import time.
    """
    from sol.runtime.clock import VirtualClock
    from sol.sdk import Context
    from sol.sim.scenarios import get_scenario

    node = get_scenario(profile.scenario).build(seed)
    agent = cls()
    ctx = Context(
        clock=VirtualClock(0.0),
        log=recording_logger([], lambda: 0.0),
        sensors=node.sensors,
        actuators=node.actuators,
        config=cls.Params(),
    )
    value: Any = None
    try:
        agent.setup(ctx)
        value = agent.default_predict()
        agent.clean_up()
    except Exception:
        pass  # the real runs report it
    finally:
        node.close()
    return value


def clean_runs(
    cls: type[Agent], *, seed: int, timeline: Timeline, profile: AgentProfile | None = None
) -> tuple[RunRecord, RunRecord]:
    """The fault-free runs (safeguards on, off) every cell of an agent is compared with."""
    profile = profile or profile_for(cls)
    warm_up(cls, profile, seed)
    return (
        run_one(cls, None, safeguards=True, seed=seed, timeline=timeline, profile=profile),
        run_one(cls, None, safeguards=False, seed=seed, timeline=timeline, profile=profile),
    )


def _default_value(cls: type[Agent], clean: RunRecord, profile: AgentProfile) -> Any:
    """The agent's default decision: as applied in its clean run, else asked of a set-up agent."""
    for _, p in clean.actions:
        if p.source == "default":
            return p.value
    return warm_up(cls, profile, clean.seed)


def run_cell(
    cls: type[Agent],
    fault: Fault,
    *,
    seed: int = 1,
    timeline: Timeline | None = None,
    profile: AgentProfile | None = None,
    baselines: tuple[RunRecord, RunRecord] | None = None,
) -> Cell:
    from sol.fault_injection.invariants import check_invariants

    timeline = timeline or Timeline()
    profile = profile or profile_for(cls)
    clean_on, clean_off = baselines or clean_runs(cls, seed=seed, timeline=timeline, profile=profile)
    aggressive_value = None
    if fault.mechanism == "adversarial" and profile.aggressive is None:
        aggressive_value = most_aggressive(clean_on.model_values(), _default_value(cls, clean_on, profile))
    kw: dict[str, Any] = {
        "seed": seed,
        "timeline": timeline,
        "profile": profile,
        "aggressive_value": aggressive_value,
    }
    on = run_one(cls, fault, safeguards=True, **kw)
    off = run_one(cls, fault, safeguards=False, **kw)
    cell = Cell(cls.name, fault, profile, timeline, on, off, clean_on, clean_off)
    if fault.boundary == "node":
        cell.no_agent = (
            no_agent_truth(profile, None, seed=seed, timeline=timeline),
            no_agent_truth(profile, fault, seed=seed, timeline=timeline),
        )
    cell.violations = check_invariants(on, fault, timeline)
    return cell
