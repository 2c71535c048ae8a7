"""The public testing kit: run an agent in virtual time and check it conforms.

For third-party authors as much as for us::

    from sol.testing import check_agent, simulate

    result = simulate(MyAgent(), duration=60.0, seed=1)
    result.actions   # [(t, Prediction), ...] in the order act() received them
    result.calls     # [(t, "collect" | "validate" | "learn" | ..., outcome), ...]
    for check in check_agent(MyAgent):
        check()      # raises AgentCheckFailed naming the check and what went wrong
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sol.backend import Backend, NullBackend
from sol.log import get_logger
from sol.metrics import RuntimeMetrics
from sol.runtime.base import AgentSpec
from sol.runtime.virtual import VirtualExecutor
from sol.sdk import Agent, Prediction, Schedule

__all__ = [
    "AgentCheckFailed",
    "BackendCheckFailed",
    "Check",
    "NotifySink",
    "SimulationResult",
    "check_agent",
    "check_backend",
    "default_backend",
    "simulate",
]


@dataclass(slots=True)
class SimulationResult:
    actions: list[tuple[float, Prediction]]
    calls: list[tuple[float, str, str]]
    #: the runner's final status: state ("running", "stopped", "quarantined", ...), reasons
    status: Mapping[str, Any]
    ground_truth: Mapping[str, float]
    events: int
    wall_s: float
    metrics: RuntimeMetrics = field(repr=False)

    @property
    def state(self) -> str:
        return str(self.status["state"])

    def sources(self) -> collections.Counter[tuple[str, str | None]]:
        """How many actions had each (source, reason)."""
        return collections.Counter((p.source, p.reason) for _, p in self.actions)

    def calls_of(self, name: str) -> list[tuple[float, str]]:
        return [(t, outcome) for t, n, outcome in self.calls if n == name]

    def errors(self) -> list[tuple[float, str, str]]:
        return [c for c in self.calls if c[2] != "ok"]


def default_backend(seed: int, scenario: str = "default") -> Backend:
    """The simulated node of a scenario, or a node with no facilities if the simulator is absent."""
    try:
        from sol.sim.scenarios import get_scenario
    except ImportError:
        return NullBackend()
    node: Backend = get_scenario(scenario).build(seed)
    return node


def _hint_view(hints: Mapping[str, Mapping[str, object]] | None) -> Any:
    from sol.hints import HintStore, Target

    store = HintStore()
    for name, raw in (hints or {}).items():
        store.set(Target.cgroup(name), raw)
    return store.view()


def simulate(
    agent: Agent,
    duration: float = 60.0,
    seed: int = 1,
    *,
    backend: Backend | None = None,
    scenario: str = "default",
    schedule: Schedule | None = None,
    params: Any = None,
    dry_run: bool = False,
    journal: Any = None,
    restorers: Any = None,
    state_dir: Path | None = None,
    hints: Mapping[str, Mapping[str, object]] | None = None,
) -> SimulationResult:
    """Run one agent on a simulated node for ``duration`` virtual seconds (then stop it).

    ``hints``: what the node's workloads say they tolerate (docs/hints.md), by cgroup path or
    simulated workload name, e.g. ``{"db": {"far_memory_ok": False}}``; ``ctx.hints`` serves
    them (validated as the daemon validates them)."""
    node = backend if backend is not None else default_backend(seed, scenario)
    if params is None:
        params = type(agent).Params()
    spec = AgentSpec(agent, schedule, params, dry_run)
    executor = VirtualExecutor(
        [spec],
        backend=node,
        log=get_logger(component="simulate"),
        journal=journal,
        restorers=restorers,
        state_dir=state_dir,
        record=True,
        hints=_hint_view(hints),
    )
    run = executor.run(duration)
    runner = executor.runners[0]
    return SimulationResult(
        actions=runner.actions,
        calls=runner.calls,
        status=runner.status(),
        ground_truth=dict(node.ground_truth()),
        events=run.events,
        wall_s=run.wall_s,
        metrics=executor.metrics,
    )


# -- conformance ----------------------------------------------------------------------


class AgentCheckFailed(AssertionError):
    pass


@dataclass(frozen=True, slots=True)
class Check:
    """One named conformance check; call it to run it."""

    name: str
    fn: Callable[[], None]

    def __call__(self) -> None:
        try:
            self.fn()
        except AgentCheckFailed:
            raise
        except Exception as exc:
            raise AgentCheckFailed(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Check({self.name})"


_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class BackendCheckFailed(AssertionError):
    pass


def check_backend(backend: Backend) -> list[str]:
    """Check ``backend`` against the backend contract (:class:`sol.backend.Backend`); return
    the facilities it offers, raise :class:`BackendCheckFailed` naming every problem.

    What it checks: every method and attribute of the contract is there (no capability left to
    ``getattr``); ``sensors`` and ``actuators_for(...)`` are the typed views; each facility is
    ``None`` or implements its interface from ``sol.facilities``, sensors and actuators alike;
    a facility's actuators never come without its sensors; every absent facility has a
    ``features`` entry saying why (on a backend that reports features); and ``restored`` and
    ``revoke``/``unrevoke`` accept an owner. Third-party backends run it in their own tests,
    as agents run :func:`check_agent`.

    >>> from sol.backend import NullBackend
    >>> check_backend(NullBackend())
    []
    """
    from sol.backend import Backend as BackendProtocol
    from sol.facilities import FACILITIES, Actuators, Sensors

    problems: list[str] = []
    if not isinstance(backend, BackendProtocol):
        missing = [
            n
            for n in (
                "name",
                "sensors",
                "actuators",
                "features",
                "revocable",
                "actuators_for",
                "revoke",
                "unrevoke",
                "restored",
                "advance",
                "ground_truth",
                "actuation_counts",
                "close",
            )
            if not hasattr(backend, n)
        ]
        raise BackendCheckFailed(
            f"{type(backend).__name__} lacks {', '.join(missing)} of sol.backend.Backend"
        )
    if not isinstance(backend.sensors, Sensors):
        problems.append(f"sensors is a {type(backend.sensors).__name__}, not sol.facilities.Sensors")
    bound = backend.actuators_for("check_backend", dry_run=True)
    for name, acts in (("actuators", backend.actuators), ("actuators_for()", bound)):
        if not isinstance(acts, Actuators):
            problems.append(f"{name} is a {type(acts).__name__}, not sol.facilities.Actuators")
    if problems:
        raise BackendCheckFailed("; ".join(problems))
    offered: list[str] = []
    for f in FACILITIES:
        sensors, actuators = getattr(backend.sensors, f.name), getattr(bound, f.name)
        if sensors is not None:
            offered.append(f.name)
            if not isinstance(sensors, f.sensors):
                problems.append(f"{f.name} sensors do not implement {f.sensors.__name__}")
        if actuators is not None:
            if sensors is None:
                problems.append(f"{f.name} actuators without {f.name} sensors")
            if not isinstance(actuators, f.actuators):
                problems.append(f"{f.name} actuators do not implement {f.actuators.__name__}")
        elif (
            sensors is not None
            and backend.features
            and not any(ft.name.startswith(f.name) for ft in backend.features)
        ):
            problems.append(f"{f.name} has sensors but no actuators, and no feature says why")
        if sensors is None and backend.features and not any(ft.name == f.name for ft in backend.features):
            problems.append(f"{f.name} is absent and no feature says why")
    if not isinstance(backend.ground_truth(), Mapping):
        problems.append("ground_truth() is not a mapping")
    if not isinstance(backend.actuation_counts(), Mapping):
        problems.append("actuation_counts() is not a mapping")
    backend.restored("check_backend")
    if problems:
        raise BackendCheckFailed(f"{type(backend).__name__}: " + "; ".join(problems))
    return offered


def check_agent(
    agent: type[Agent] | Callable[[], Agent],
    *,
    duration: float | None = None,
    seed: int = 1,
    backend_factory: Callable[[int], Backend] | None = None,
) -> Iterator[Check]:
    """Yield the named conformance checks for an agent class (or a zero-argument factory).

    Each check builds fresh agents, so they can run in any order, in any test framework.
    """
    factory: Callable[[], Agent] = agent
    cls: type[Agent] = agent if isinstance(agent, type) else type(agent())
    make_backend = backend_factory or (lambda s: default_backend(s))

    def run(a: Agent | None = None, **kw: Any) -> SimulationResult:
        a = a if a is not None else factory()
        sched = type(a).schedule
        d = duration if duration is not None else max(30 * sched.act_every, 3 * sched.assess_every, 30.0)
        return simulate(a, d, seed, backend=kw.pop("backend", None) or make_backend(seed), **kw)

    def fail(name: str, msg: str) -> None:
        raise AgentCheckFailed(f"{name}: {msg}")

    def has_identity() -> None:
        if not isinstance(cls.name, str) or not _SNAKE.match(cls.name):
            fail("has_identity", f"`name` must be a snake_case string, got {cls.name!r}")
        if not isinstance(getattr(cls, "schedule", None), Schedule):
            fail("has_identity", "`schedule` must be a sol.Schedule")
        for required in ("collect", "predict", "default_predict", "act"):
            if getattr(cls, required) is getattr(Agent, required):
                fail("has_identity", f"`{required}` is not implemented")

    def params_are_typed() -> None:
        params = cls.Params
        if not dataclasses.is_dataclass(params):
            fail("params_are_typed", f"`Params` must be a dataclass, got {params!r}")
        try:
            params()
        except TypeError as exc:
            fail("params_are_typed", f"`Params()` must work with defaults only: {exc}")

    def constructor_does_no_io() -> None:
        a = factory()
        if hasattr(a, "ctx"):
            fail("constructor_does_no_io", "the constructor set `ctx`: I/O belongs in setup(ctx)")

    def runs_cleanly() -> None:
        r = run()
        if r.state != "stopped":
            fail("runs_cleanly", f"ended {r.state}: {r.status['reason']}")
        errors = r.errors()
        if errors:
            t, name, outcome = errors[0]
            fail("runs_cleanly", f"{len(errors)} callback error(s), first at t={t:g}: {name} {outcome}")
        if not r.actions:
            fail("runs_cleanly", "act() was never called")
        if not any(p.source == "model" for _, p in r.actions):
            fail("runs_cleanly", f"no model prediction was ever applied (sources: {dict(r.sources())})")

    def default_is_always_available() -> None:
        a = factory()
        r = run(a)
        if r.state != "stopped":
            fail("default_is_always_available", f"ended {r.state}")
        for _ in range(3):
            a.default_predict()

    def deterministic() -> None:
        first, second = run(), run()
        a = [(t, p.source, p.reason, repr(p.value)) for t, p in first.actions]
        b = [(t, p.source, p.reason, repr(p.value)) for t, p in second.actions]
        if a != b:
            diff = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y) if a and b else 0
            fail("deterministic", f"two runs with seed {seed} differ at action {diff}")

    def survives_failing_collect() -> None:
        a = factory()

        def broken() -> object:
            raise OSError("sensor gone")

        a.collect = broken  # type: ignore[method-assign]
        r = run(a)
        if r.state not in ("stopped", "quarantined"):
            fail("survives_failing_collect", f"ended {r.state}")
        bad = [p for _, p in r.actions if p.source != "default"]
        if bad:
            fail(
                "survives_failing_collect", "a model prediction was applied although collect() always failed"
            )

    def never_learns_invalid_data() -> None:
        a = factory()
        learned: list[Any] = []
        a.validate = lambda obs: False  # type: ignore[method-assign]
        original_learn = a.learn

        def learn(obs: Any) -> None:
            learned.append(obs)
            original_learn(obs)

        a.learn = learn  # type: ignore[method-assign]
        r = run(a)
        if learned:
            fail(
                "never_learns_invalid_data",
                f"learn() got {len(learned)} observation(s) that failed validate()",
            )
        if any(p.source == "model" for _, p in r.actions):
            fail(
                "never_learns_invalid_data",
                "a model prediction was applied although no observation was valid",
            )

    def survives_hung_learner() -> None:
        a = factory()
        calls = [0]

        def hang(obs: Any) -> None:
            calls[0] += 1
            if calls[0] > 3:
                a.ctx.clock.consume(math.inf)  # never returns, in virtual time
            else:
                original(obs)

        original = a.learn
        a.learn = hang  # type: ignore[method-assign]
        r = run(a)
        ttl = type(a).schedule.prediction_ttl
        stale = [(t, p) for t, p in r.actions if p.source == "model" and t - p.created_at >= ttl]
        if stale:
            fail(
                "survives_hung_learner",
                f"a prediction older than prediction_ttl was applied at t={stale[0][0]:g}",
            )
        if r.actions and r.actions[-1][1].source != "default":
            fail("survives_hung_learner", "model predictions kept being applied while learn() hung")

    def mitigates_failing_act() -> None:
        a = factory()
        mitigations = [0]
        original_mitigate = a.mitigate

        def act(prediction: Prediction) -> None:
            raise OSError("EIO: write failed")

        def mitigate() -> None:
            mitigations[0] += 1
            original_mitigate()

        a.act = act  # type: ignore[method-assign]
        a.mitigate = mitigate  # type: ignore[method-assign]
        r = run(a)
        if not mitigations[0]:
            fail("mitigates_failing_act", "mitigate() never ran although act() always failed")
        if r.state != "quarantined":
            fail(
                "mitigates_failing_act", f"an agent whose act() always fails ended {r.state}, not quarantined"
            )

    def acts_on_defaults() -> None:
        a = factory()
        a.assess_model = lambda: False  # type: ignore[method-assign]
        r = run(a)
        errors = [c for c in r.errors() if c[1] in ("act", "default_predict")]
        if errors:
            fail("acts_on_defaults", f"act() failed on default predictions: {errors[0]}")
        first_assess = type(a).schedule.assess_every
        if any(p.source == "model" for t, p in r.actions if t > first_assess):
            fail("acts_on_defaults", "a model prediction was applied while assess_model() failed")

    def mitigate_and_clean_up_are_idempotent() -> None:
        a = factory()
        run(a)
        for _ in range(2):
            a.mitigate()
            a.clean_up()

    def stop_leaves_nothing_open() -> None:
        from sol.actuators.restorers import default_restorers
        from sol.safety.journal import UndoJournal

        with tempfile.TemporaryDirectory(prefix="sol-check-") as tmp:
            journal = UndoJournal.open(Path(tmp) / "undo.journal")
            try:
                run(journal=journal, restorers=default_restorers(), state_dir=Path(tmp))
                left = journal.open_records()
            finally:
                journal.close()
        if left:
            fail("stop_leaves_nothing_open", f"{len(left)} undo record(s) still open after stop: {left[:3]}")

    def schedule_is_sane() -> None:
        s = cls.schedule
        if s.prediction_ttl < s.predict_every:  # type: ignore[operator]
            fail(
                "schedule_is_sane", "prediction_ttl < predict_every: every prediction expires before the next"
            )
        if not math.isfinite(s.callback_timeout) or s.callback_timeout > s.assess_every * 10:
            fail("schedule_is_sane", "callback_timeout is far longer than the assess period")

    for fn in (
        has_identity,
        params_are_typed,
        schedule_is_sane,
        constructor_does_no_io,
        runs_cleanly,
        default_is_always_available,
        deterministic,
        survives_failing_collect,
        never_learns_invalid_data,
        survives_hung_learner,
        mitigates_failing_act,
        acts_on_defaults,
        mitigate_and_clean_up_are_idempotent,
        stop_leaves_nothing_open,
    ):
        yield Check(fn.__name__, fn)


class NotifySink:
    """systemd's side of ``sd_notify``: a real datagram socket to set as ``NOTIFY_SOCKET``.

    Every message is kept as ``(arrival time on the monotonic clock, {field: value})``, so a
    test or a benchmark can wait for one and time it (``READY=1`` after a start or a reload).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-sink", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((at, fields))

    def fields(self) -> list[str]:
        """The field names of every message so far, in order."""
        return [k for _, m in list(self.messages) for k in m]

    def wait_for(self, key: str, value: str | None = None, *, after: int = 0, timeout: float = 10.0) -> int:
        """Index of the first message from index ``after`` on with ``key`` (= ``value``);
        ``TimeoutError`` naming what came instead when none arrives within ``timeout`` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, (_, m) in enumerate(list(self.messages)[after:], start=after):
                if key in m and (value is None or m[key] == value):
                    return i
            time.sleep(0.002)
        want = key if value is None else f"{key}={value}"
        raise TimeoutError(f"no {want} from the daemon within {timeout:g}s; got {self.messages[after:]}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


class V1Groups:
    """Cgroups a test or benchmark makes in the v1 ``cpuset``, ``cpu`` and ``cpuacct``
    hierarchies, and the processes it starts in them: ``cleanup()`` kills those processes and
    removes those groups (and nothing else), whatever happened."""

    CONTROLLERS = ("cpuset", "cpu", "cpuacct")

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root
        self.procs: list[Any] = []
        self.made: list[Path] = []

    def mkgroup(self, name: str, cpus: str, quota: int = -1, shares: int = 1024) -> None:
        """A group in every hierarchy: ``cpus``, the root's memory nodes, a CFS quota (us per
        period; -1 none) and a CPU weight."""
        for c in self.CONTROLLERS:
            path = self.root / c / name
            path.mkdir()
            self.made.append(path)
        cs = self.root / "cpuset" / name
        (cs / "cpuset.mems").write_text((self.root / "cpuset" / "cpuset.effective_mems").read_text().strip())
        (cs / "cpuset.cpus").write_text(cpus)
        (self.root / "cpu" / name / "cpu.cfs_quota_us").write_text(str(quota))
        (self.root / "cpu" / name / "cpu.shares").write_text(str(shares))

    def spawn(self, group: str, argv: list[str], **kw: Any) -> Any:
        """``argv`` started in ``group`` (the child joins it before exec), killed by cleanup."""
        import subprocess

        def enter() -> None:
            for c in self.CONTROLLERS:
                with open(self.root / c / group / "cgroup.procs", "w") as f:
                    f.write("0")

        p = subprocess.Popen(argv, preexec_fn=enter, **kw)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        import contextlib
        import os
        import signal
        import subprocess

        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        for path in reversed(self.made):
            for _ in range(50):  # a killed task leaves the group a moment later
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
