"""Failpoints: where faults enter, without touching agent code.

* **Sensor boundary** — :class:`SensorProxy` wraps ``ctx.sensors.<facility>`` and corrupts
  what the data-plane readings return (NaN, +inf, the -1 sentinel, noise, a stale or frozen
  sample) or makes them raise the Linux backend's :class:`SensorError` (garbage text, a
  missing sample).
* **Actuator boundary** — the actuators the agent gets write through :meth:`FaultBackend.write_knob`:
  the simulated twin of the Linux write pipeline (before-image in an undo journal, write,
  read-back check) with the failpoint in the middle (EPERM/EIO, a hang, a write silently not
  applied or applied in part, a late write, a SIGKILL right after the write landed).
* **Predictor boundary** and scheduling — :func:`wrap_agent` wraps ``learn``/``predict`` (and, for
  starvation or a crash loop, the other callbacks) on the agent *instance*; for the faults that
  harm the daemon itself, ``collect`` starts a busy thread or keeps memory.
* **Node** — environment faults are events on the node's timeline (``sol.fault_injection.environment``).

:class:`FaultBackend` wraps the simulated node and is what the executor is given, so the
runtime, the agent and the node are the production code, unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.actuators.base import WriteError
from sol.actuators.restorers import RestoreMismatch, Restorer
from sol.backend import BackendBase
from sol.facilities import FACILITY_NAMES
from sol.fault_injection.environment import lower_gpu_budget, memory_pressure, scale_load
from sol.fault_injection.faults import Fault, Timeline
from sol.safety.journal import JournalError, UndoJournal
from sol.sdk import Agent, Clock, Prediction

try:  # the exception the Linux backend raises for an unreadable or unparsable file
    from sol.kernel.errors import SensorError
except ImportError:  # pragma: no cover - sol.linux ships with the package

    class SensorError(Exception):  # type: ignore[no-redef]
        def __init__(self, path: str, problem: str, *, errno_name: str | None = None) -> None:
            super().__init__(f"{path}: {problem}")
            self.path, self.problem, self.errno_name = path, problem, errno_name


__all__ = [
    "DATA_READINGS",
    "DaemonKilled",
    "FaultBackend",
    "Injector",
    "SensorProxy",
    "wrap_agent",
]

#: The data-plane readings a data fault corrupts, per facility. Left alone: the signals an
#: agent's assess_performance watches (PSI, GPU temperature and limits), which come from
#: other kernel files and stay readable when one file goes bad.
DATA_READINGS: dict[str, tuple[str, ...]] = {
    "cpu": ("usage", "run_queue_delay"),
    "memory": ("regions",),
    "gpu": ("power_usage_mw", "utilization", "total_energy_mj"),
    "faas": ("residency", "invocations"),
}

#: Fields of a reading that describe it rather than measure (never corrupted).
_META_FIELDS = frozenset(
    {"t", "t_start", "t_end", "interval", "start", "end", "node", "tier", "group", "name", "max_nr_accesses"}
)
_TIME_FIELDS = ("t", "t_start", "t_end", "interval")

SENSOR_MECHANISMS = frozenset(
    {"missing", "nan", "inf", "out_of_range", "stale", "frozen", "frozen_idle", "noise", "garbage"}
)
#: ``frozen_idle``: per facility, the reading, the group, the cumulative field that sticks and
#: the rate derived from it, which then reads 0 (idle). Only that counter: the others (the
#: group's run-queue delay, the harvest group's usage) keep moving, as on a host where one
#: cgroup file stops being updated.
FROZEN_IDLE: dict[str, tuple[str, str, str, str]] = {"cpu": ("usage", "primary", "total_core_s", "cores")}
ACTUATOR_MECHANISMS = frozenset({"eperm", "eio", "write_hang", "not_applied", "partial", "actuator_delay"})
#: "Never returns": ``VirtualClock.consume`` charges a year for it, past any timeout.
_FOREVER = math.inf


class DaemonKilled(BaseException):
    """The daemon was SIGKILLed: nothing runs after it (no clean_up, no restore, no stop).

    A ``BaseException`` so that neither agent code nor the runtime's exception boundary can
    catch it: it unwinds the executor exactly as a kill ends the process.
    """

    def __init__(self, at: float) -> None:
        super().__init__(f"SIGKILL at t={at:g}")
        self.at = at


class Injector:
    """The one fault of a run: is it active now, and how many times did it fire."""

    def __init__(self, fault: Fault | None, timeline: Timeline, seed: int) -> None:
        self.fault = fault
        self.timeline = timeline
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xFA17])
        self.injections = 0
        self.first_at: float | None = None
        self.clock: Clock | None = None
        self._node_now: Callable[[], float] = lambda: 0.0
        #: thread_escape: when (run time) the agent's thread started, and the CPU seconds it
        #: really used before the run ended (the run is faster than real time)
        self.escaped_at: float | None = None
        self.escaped_cpu_s = 0.0
        #: memory_leak: the most MiB the agent held because of the fault
        self.held_mib = 0.0
        self._escapee: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def mechanism(self) -> str | None:
        return self.fault.mechanism if self.fault is not None else None

    def param(self, name: str) -> float:
        assert self.fault is not None
        return float(self.fault.params[name])

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else self._node_now()

    def active(self, *mechanisms: str) -> bool:
        m = self.mechanism
        return m is not None and m in mechanisms and self.timeline.active(self.now())

    def hit(self) -> None:
        self.injections += 1
        if self.first_at is None:
            self.first_at = self.now()

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def consume(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.consume(seconds)

    def escape(self) -> None:
        """Start a thread that spins until the run ends (unless it runs already).

        Called from inside an agent callback: this is the agent starting a thread, which the
        runtime refuses (``AgentThreadError``) when its safeguards are on.
        """
        if self._escapee is not None:
            return
        t = threading.Thread(target=self._busy, name="sol-fault-escapee", daemon=True)
        t.start()
        self._escapee = t
        self.escaped_at = self.now()

    def _busy(self) -> None:
        # hashing a large buffer releases the GIL: a core busy beside the executor, as a
        # native or I/O-heavy escaped thread would be, without slowing the run it escaped from
        block = bytes(1 << 18)
        cpu0 = time.thread_time()
        while not self._closing.is_set():
            hashlib.sha256(block).digest()
        self.escaped_cpu_s = time.thread_time() - cpu0

    def close(self) -> None:
        """End the run's escaped thread, if any (its CPU is then counted)."""
        self._closing.set()
        if self._escapee is not None:
            self._escapee.join(5.0)


# -- sensor boundary ---------------------------------------------------------------------


def _corrupt_number(x: float, mechanism: str, inj: Injector) -> float:
    if mechanism == "nan":
        return math.nan
    if mechanism == "inf":
        return math.inf
    if mechanism == "out_of_range":
        v = inj.param("value")
        return int(v) if isinstance(x, int) else v
    if mechanism == "noise":
        noisy = float(x) + float(inj.rng.normal(0.0, inj.param("sigma") * (abs(float(x)) + 1.0)))
        return round(noisy) if isinstance(x, int) else noisy
    return x


def corrupt(value: Any, mechanism: str, inj: Injector) -> Any:
    """``value`` with every measured number corrupted (dataclasses and tuples recursed)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _corrupt_number(value, mechanism, inj)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if f.name in _META_FIELDS:
                continue
            old = getattr(value, f.name)
            new = corrupt(old, mechanism, inj)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    if isinstance(value, tuple):
        items = tuple(corrupt(v, mechanism, inj) for v in value)
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def _refresh_times(cached: Any, fresh: Any) -> Any:
    """The frozen value with the fresh reading's timestamps (a stuck counter, fresh ``t``)."""
    if dataclasses.is_dataclass(cached) and not isinstance(cached, type):
        names = {f.name for f in dataclasses.fields(cached)}
        times = {n: getattr(fresh, n) for n in _TIME_FIELDS if n in names}
        return dataclasses.replace(cached, **times)
    return cached


class SensorProxy:
    """``ctx.sensors.<facility>`` as the agent sees it while a data fault may be active."""

    def __init__(self, inner: Any, facility: str, backend: FaultBackend) -> None:
        self._inner = inner
        self._facility = facility
        self._backend = backend
        self._readings = DATA_READINGS.get(facility, ())
        self._held: dict[tuple[str, str], Any] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        self._backend.touch(self._facility)
        if name not in self._readings or not callable(attr):
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            return self._read(name, attr, args, kwargs)

        return read

    def _read(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        inj = self._backend.injector
        if inj is None or not inj.active(*SENSOR_MECHANISMS):
            self._held.clear()
            return fn(*args, **kwargs)
        mechanism = inj.mechanism
        source = f"sim:{self._facility}.{name}"
        if mechanism == "missing":
            if inj.chance(inj.param("p")):
                inj.hit()
                raise SensorError(source, "no sample: ENODATA (No data available)", errno_name="ENODATA")
            return fn(*args, **kwargs)
        if mechanism == "garbage":
            inj.hit()
            raise SensorError(source, "line 1: cannot parse '\\x00\\x1b[7m#!?usage_usec' as a number")
        fresh = fn(*args, **kwargs)
        if mechanism == "frozen_idle":
            return self._frozen_idle(name, fresh, args, kwargs, inj)
        if mechanism in ("stale", "frozen"):
            key = (name, repr((args, sorted(kwargs.items()))))
            held = self._held.setdefault(key, fresh)
            out = held if mechanism == "stale" else _refresh_times(held, fresh)
        else:
            assert mechanism is not None
            out = corrupt(fresh, mechanism, inj)
        if out is not fresh:
            inj.hit()
        return out

    def _frozen_idle(
        self, name: str, fresh: Any, args: tuple[Any, ...], kwargs: dict[str, Any], inj: Injector
    ) -> Any:
        """``fresh`` with its cumulative counter held at the onset's and its rate 0 (idle)."""
        target = FROZEN_IDLE.get(self._facility)
        group = kwargs.get("group", args[0] if args else None)
        if target is None or (name, group) != target[:2]:
            return fresh
        _, _, counter, rate = target
        held = self._held.setdefault((name, repr(group)), fresh)
        inj.hit()
        return dataclasses.replace(fresh, **{counter: getattr(held, counter), rate: 0.0})


# -- actuator boundary -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimKnob:
    """A simulated host setting with a before-image: read it, write it, and a partial write."""

    kind: str
    target: str
    read: Callable[[], int]
    write: Callable[[int], None]


_SKIP_READBACK = object()


class CpuActuatorGate:
    """``ctx.actuators.cpu``: the harvest group's cpuset, written through the pipeline."""

    def __init__(self, inner: Any, backend: FaultBackend) -> None:
        self._inner = inner
        self._backend = backend
        self.knob = SimKnob("sim.cpu.harvest_cores", "cpu.harvest_cores", inner.harvest_cores, self._set)

    def _set(self, n: int) -> None:
        self._inner.set_harvest_cores(n)

    def __getattr__(self, name: str) -> Any:
        self._backend.touch("cpu")
        return getattr(self._inner, name)

    def harvest_cores(self) -> int:
        self._backend.touch("cpu")
        cores: int = self._inner.harvest_cores()
        return cores

    def set_harvest_cores(self, n: int) -> None:
        self._backend.touch("cpu")
        self._backend.write_knob(self.knob, n)


class GpuActuatorGate:
    """``ctx.actuators.gpu``: each board's power limit, written through the pipeline."""

    def __init__(self, inner: Any, sensors: Any, backend: FaultBackend) -> None:
        self._inner = inner
        self._sensors = sensors
        self._backend = backend

    def knob(self, index: int) -> SimKnob:
        def write(mw: int) -> None:
            self._inner.set_power_limit(index, mw)

        def read() -> int:
            limit: int = self._sensors.power_limit_mw(index)
            return limit

        return SimKnob("sim.gpu.power_limit", f"gpu{index}", read, write)

    def __getattr__(self, name: str) -> Any:
        self._backend.touch("gpu")
        return getattr(self._inner, name)

    def set_power_limit(self, index: int, mw: int) -> None:
        self._backend.touch("gpu")
        if isinstance(mw, (int, np.integer)) and not isinstance(mw, bool):
            self._backend.write_knob(self.knob(int(index)), int(mw))
        else:
            self._inner.set_power_limit(index, mw)  # let the twin reject a bad type as NVML does


class CallGate:
    """Memory and FaaS actuators: their effect is not one knob with a before-image (page
    placement, cache residency), so the failpoint wraps the calls; no journal, no read-back."""

    def __init__(self, inner: Any, facility: str, backend: FaultBackend) -> None:
        self._inner = inner
        self._facility = facility
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        self._backend.touch(self._facility)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._backend.faulty_call(self._facility, name, attr, args, kwargs)

        return call


def _fake_result(facility: str, name: str, args: tuple[Any, ...], now: float) -> Any:
    """What a write that silently did nothing reports (it claims success)."""
    from sol.facilities import Migration, Prewarm

    if facility == "memory" and name == "migrate" and len(args) >= 3:
        start, end, to_node = int(args[0]), int(args[1]), int(args[2])
        return Migration(now, start, end, to_node, end - start, 0, 0, now)
    if facility == "faas" and name == "prewarm" and args:
        return Prewarm(now, str(args[0]), 0, now)
    if facility == "faas" and name == "evict":
        return 0
    return None


def _write_error(target: str, errno_name: str, text: str) -> WriteError:
    return WriteError(
        f"cannot write to {target}: {errno_name} ({text})",
        target=target,
        reason="write-failed",
        errno_name=errno_name,
    )


class FaultBackend(BackendBase):
    """The simulated node as the agent sees it under one fault; what the executor runs on.

    ``safeguards=True`` makes writes go through the simulated twin of the Linux write
    pipeline: a before-image in ``journal`` first (no record, no write), the write, then a
    read-back check. ``safeguards=False`` writes directly (the agent without SOL).
    """

    def __init__(
        self,
        inner: Any,
        injector: Injector | None,
        *,
        owner: str,
        safeguards: bool,
        journal: UndoJournal | None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.features = list(getattr(inner, "features", []))
        self.injector = injector
        self.owner = owner
        self.safeguards = safeguards
        self.journal = journal
        self.touched: set[str] = set()
        self.kill_armed = False
        self.writes = 0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._in_restore = False
        if injector is not None:
            injector._node_now = lambda: float(getattr(inner, "now", lambda: 0.0)())
        sensors, actuators = inner.sensors, inner.actuators
        for f in FACILITY_NAMES:
            if getattr(sensors, f, None) is not None:
                setattr(self.sensors, f, SensorProxy(getattr(sensors, f), f, self))
        if actuators.cpu is not None:
            self.actuators.cpu = CpuActuatorGate(actuators.cpu, self)
        if actuators.gpu is not None:
            self.actuators.gpu = GpuActuatorGate(actuators.gpu, sensors.gpu, self)
        for f in ("memory", "faas"):
            if getattr(actuators, f, None) is not None:
                setattr(self.actuators, f, CallGate(getattr(actuators, f), f, self))

    # -- Backend -------------------------------------------------------------------------
    def bind_clock(self, clock: Clock) -> None:
        if self.injector is not None:
            self.injector.clock = clock
        self._clock = clock

    def now(self) -> float:
        clock = getattr(self, "_clock", None)
        return clock.now() if clock is not None else float(self.inner.now())

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the node at virtual time ``t`` (the node brought up to ``t`` first)."""
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, fn))

    def advance(self, now: float) -> None:
        events = self._events
        while events and events[0][0] <= now:
            t, _, fn = heapq.heappop(events)
            self.inner.advance(t)
            self.inner.sync()
            fn()
        self.inner.advance(now)

    def ground_truth(self) -> Any:
        return self.inner.ground_truth()

    def close(self) -> None:
        self.inner.close()

    def revoke(self, owner: str) -> None:
        """Quarantine/stop: a write still in flight (a late one) must not land after restore."""
        self._events = [e for e in self._events if getattr(e[2], "owner", None) != owner]
        heapq.heapify(self._events)

    def touch(self, facility: str) -> None:
        self.touched.add(facility)

    # -- environment -----------------------------------------------------------------------
    def window(self, t0: float, t1: float | None, apply: Callable[[], Callable[[], None]]) -> None:
        """Apply a node change at ``t0`` and undo it at ``t1`` (``None``: it stays)."""
        undo: list[Callable[[], None]] = []

        def on() -> None:
            undo.append(apply())

        def off() -> None:
            while undo:
                undo.pop()()

        self.at(t0, on)
        if t1 is not None:
            self.at(t1, off)

    def schedule_environment(self, fault: Fault | None, timeline: Timeline) -> None:
        """The surge of every run, and the fault's own node events."""
        node = self.inner
        if timeline.surge != 1.0:
            self.window(timeline.surge_at, timeline.end, lambda: scale_load(node, timeline.surge))
        if fault is None or fault.boundary != "node":
            return
        p = fault.params
        m = fault.mechanism
        if m == "drift":
            self.window(timeline.onset, None, lambda: scale_load(node, p["factor"]))
        elif m == "load_spike":
            stop = min(timeline.onset + p["spike_s"], timeline.end)
            self.window(timeline.onset, stop, lambda: scale_load(node, p["factor"]))
        elif m == "memory_pressure":
            self.window(timeline.onset, timeline.end, lambda: memory_pressure(node, p["factor"], p["floor"]))
        elif m == "power_emergency":
            self.window(timeline.onset, timeline.end, lambda: lower_gpu_budget(node, p["share"]))
        else:
            raise ValueError(f"unknown node fault mechanism {m!r}")

    def environment_reaches(self, fault: Fault) -> bool:
        """Whether a node fault changes a facility this agent used."""
        if fault.facility == "*":
            return bool(self.touched)
        return fault.facility in self.touched

    # -- the write pipeline ------------------------------------------------------------------
    def write_knob(self, knob: SimKnob, value: int) -> None:
        """guard-free twin of HostWriter.write: before-image -> write (failpoint) -> read-back."""
        if self.safeguards:
            before = knob.read()
            if before == value:
                return
            if self.journal is not None:
                try:
                    self.journal.record(self.owner, knob.kind, knob.target, before)
                except JournalError as exc:
                    raise WriteError(
                        f"not writing {value!r} to {knob.target}: undo record not durable ({exc})",
                        target=knob.target,
                        reason="journal",
                    ) from exc
        landed = self._faulty_write(knob, value)
        if self.safeguards and landed is not _SKIP_READBACK:
            readback = knob.read()
            if readback != value:
                raise WriteError(
                    f"wrote {value!r} to {knob.target} but it reads back {readback!r}",
                    target=knob.target,
                    reason="readback-mismatch",
                )

    def _faulty_write(self, knob: SimKnob, value: int) -> object:
        self.writes += 1
        inj = self.injector
        if self.kill_armed and not self._in_restore:
            knob.write(value)
            raise DaemonKilled(self.now())
        if inj is None or not inj.active(*ACTUATOR_MECHANISMS):
            knob.write(value)
            return None
        m = inj.mechanism
        if m == "eperm":
            inj.hit()
            raise _write_error(knob.target, "EPERM", "Operation not permitted")
        if m == "eio":
            if inj.chance(inj.param("p")):
                inj.hit()
                raise _write_error(knob.target, "EIO", "Input/output error")
            knob.write(value)
            return None
        if m == "write_hang":
            inj.hit()
            if self._in_restore:
                raise _write_error(knob.target, "ETIMEDOUT", "write hung; restore gave up on it")
            inj.consume(_FOREVER)
            return _SKIP_READBACK  # it never lands
        if m == "not_applied":
            inj.hit()
            return None
        if m == "partial":
            inj.hit()
            before = knob.read()
            knob.write(before + int((value - before) * inj.param("share")))
            return None
        if m == "actuator_delay":
            inj.hit()
            if self._in_restore:
                knob.write(value)
                return None
            delay = inj.param("delay_s")
            due = self.now() + delay
            inj.consume(delay)

            def late() -> None:
                knob.write(value)

            late.owner = self.owner  # type: ignore[attr-defined]
            self.at(due, late)
            return _SKIP_READBACK
        knob.write(value)
        return None

    def faulty_call(
        self,
        facility: str,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The failpoint on a memory/FaaS actuator call (no before-image knob to journal)."""
        self.writes += 1
        inj = self.injector
        target = f"sim:{facility}.{name}"
        if self.kill_armed:
            fn(*args, **kwargs)
            raise DaemonKilled(self.now())
        if inj is None or not inj.active(*ACTUATOR_MECHANISMS):
            return fn(*args, **kwargs)
        m = inj.mechanism
        inj.hit()
        now = self.now()
        if m == "eperm" or (m == "eio" and inj.chance(inj.param("p"))):
            raise _write_error(target, "EPERM" if m == "eperm" else "EIO", "injected")
        if m == "write_hang":
            inj.consume(_FOREVER)
            return _fake_result(facility, name, args, now)
        if m == "not_applied":
            return _fake_result(facility, name, args, now)
        if m == "partial" and facility == "memory" and name == "migrate" and len(args) >= 3:
            start, end = int(args[0]), int(args[1])
            cut = start + int((end - start) * inj.param("share"))
            return fn(start, max(cut, start + 1), *args[2:], **kwargs)
        if m == "actuator_delay":
            delay = inj.param("delay_s")
            inj.consume(delay)

            def late() -> None:
                fn(*args, **kwargs)

            late.owner = self.owner  # type: ignore[attr-defined]
            self.at(now + delay, late)
            return _fake_result(facility, name, args, now)
        return fn(*args, **kwargs)

    # -- restore -------------------------------------------------------------------------------
    def restorers(self) -> dict[str, Restorer]:
        """How the journal puts simulated knobs back (through the failpoint, as on a host)."""
        out: dict[str, Restorer] = {}
        cpu = self.actuators.cpu
        if isinstance(cpu, CpuActuatorGate):
            knob = cpu.knob

            def restore_cpu(target: str, before: Any) -> None:
                self._restore(knob, int(before))

            out[knob.kind] = restore_cpu
        gpu = self.actuators.gpu
        if isinstance(gpu, GpuActuatorGate):
            gate = gpu

            def restore_gpu(target: str, before: Any) -> None:
                self._restore(gate.knob(int(target.removeprefix("gpu"))), int(before))

            out["sim.gpu.power_limit"] = restore_gpu
        return out

    def _restore(self, knob: SimKnob, before: int) -> None:
        self._in_restore = True
        try:
            self._faulty_write(knob, before)
        finally:
            self._in_restore = False
        readback = knob.read()
        if readback != before:
            raise RestoreMismatch(f"{knob.target} reads back {readback!r}, expected {before!r}")

    def knob_state(self) -> dict[tuple[str, str], int]:
        """The current value of every journaled kind of knob (for the crash check)."""
        out: dict[tuple[str, str], int] = {}
        cpu = self.actuators.cpu
        if isinstance(cpu, CpuActuatorGate):
            out[(cpu.knob.kind, cpu.knob.target)] = cpu.knob.read()
        gpu = self.actuators.gpu
        if isinstance(gpu, GpuActuatorGate):
            for i in range(int(self.inner.sensors.gpu.count())):
                k = gpu.knob(i)
                out[(k.kind, k.target)] = k.read()
        return out


# -- predictor boundary, scheduling, process ----------------------------------------------

MODEL_SIDE = ("collect", "validate", "learn", "predict", "assess_model")
ALL_CALLBACKS = (*MODEL_SIDE, "default_predict", "act", "assess_performance", "mitigate", "clean_up")


class InjectedFault(RuntimeError):
    """What an injected exception says, so logs name the fault and not a bug."""


def _set(agent: Agent, name: str, fn: Callable[..., Any]) -> None:
    setattr(agent, name, fn)


def wrap_agent(
    agent: Agent,
    injector: Injector,
    backend: FaultBackend,
    *,
    aggressive: Callable[[], Any] | None,
    kill_at: float | None,
) -> None:
    """Install the agent-side failpoints of ``injector``'s fault on this instance."""
    m = injector.mechanism
    if m in ("learn_error", "predict_error"):
        name = m.removesuffix("_error")
        original = getattr(agent, name)

        def failing(*args: Any) -> Any:
            if injector.active(m):
                injector.hit()
                raise InjectedFault(f"injected: {name}() failed")
            return original(*args)

        _set(agent, name, failing)
    elif m == "learn_hang":
        original_learn = agent.learn

        def hanging(obs: Any) -> None:
            if injector.active(m):
                injector.hit()
                injector.consume(_FOREVER)
                return
            original_learn(obs)

        _set(agent, "learn", hanging)
    elif m == "adversarial":
        if aggressive is None:
            return
        original_predict = agent.predict

        def adversarial() -> Any:
            value = original_predict()
            if injector.active(m):
                injector.hit()
                return aggressive()
            return value

        _set(agent, "predict", adversarial)
    elif m == "model_stall":
        for name in MODEL_SIDE:
            _wrap_stall(agent, name, injector)
    elif m == "crash_loop":
        for name in ALL_CALLBACKS:
            _wrap_crash(agent, name, injector)
    elif m == "thread_escape":
        _wrap_escape(agent, injector)
    elif m == "memory_leak":
        _wrap_leak(agent, injector)
    if kill_at is not None:
        original_act = agent.act

        def act(prediction: Prediction) -> None:
            now = injector.now()
            if now >= kill_at:
                injector.hit()
                backend.kill_armed = True
            original_act(prediction)
            if backend.kill_armed:
                raise DaemonKilled(now)  # killed between two writes of the actuation loop

        _set(agent, "act", act)


def _wrap_stall(agent: Agent, name: str, injector: Injector) -> None:
    original = getattr(agent, name)

    def stalled(*args: Any) -> Any:
        if injector.active("model_stall"):
            injector.hit()
            injector.consume(injector.param("stall_s"))
        return original(*args)

    _set(agent, name, stalled)


def _wrap_crash(agent: Agent, name: str, injector: Injector) -> None:
    original = getattr(agent, name)

    def crashing(*args: Any) -> Any:
        if injector.active("crash_loop"):
            injector.hit()
            raise InjectedFault(f"injected: {name}() crashed")
        return original(*args)

    _set(agent, name, crashing)


def _wrap_escape(agent: Agent, injector: Injector) -> None:
    original = agent.collect

    def escaping() -> Any:
        if injector.active("thread_escape"):
            injector.hit()
            injector.escape()
        return original()

    _set(agent, "collect", escaping)


_MIB = 1 << 20


def _wrap_leak(agent: Agent, injector: Injector) -> None:
    original = agent.collect
    # held by the instance (the wrapper is one of its attributes), as an agent's own leak is:
    # what the runtime releases when it quarantines the agent for its memory
    kept: list[bytearray] = []

    def leaking() -> Any:
        if injector.active("memory_leak"):
            injector.hit()
            step = int(injector.param("mib_per_tick") * _MIB)
            if (len(kept) + 1) * step <= injector.param("cap_mib") * _MIB:
                kept.append(bytearray(step))  # written with zeros: resident at once
                injector.held_mib = max(injector.held_mib, len(kept) * step / _MIB)
        return original()

    _set(agent, "collect", leaking)
