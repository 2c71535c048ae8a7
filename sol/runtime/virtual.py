"""The virtual-time executor: one thread, discrete events, deterministic, as fast as the CPU.

Every tick of every agent is an event on one heap ordered by (time, priority, sequence), so
a run depends only on the agents, the backend and its seed. Callbacks take no virtual time
unless they ``clock.consume()`` it (simulated work, injected slowness); a callback that takes
longer than ``callback_timeout`` of virtual time is a timeout exactly as it would be live.
A callback that *really* hangs (loops, sleeps) is interrupted by a wall-clock alarm when the
executor runs on the main thread (a periodic ``SIGALRM`` checks the running call's wall
deadline), and reported as a timeout too.
"""

from __future__ import annotations

import heapq
import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sol.runtime import isolation
from sol.runtime.base import AgentSpec, ExecutorBase
from sol.runtime.clock import VirtualClock
from sol.runtime.memory import MemoryGuard
from sol.runtime.runner import AgentRunner, Outcome, Side

# Event kinds, in the order they run when due at the same instant: the model publishes
# before the actuator reads, assessments come after actions of the same tick.
_MODEL, _COLLECT, _PREDICT, _ASSESS_MODEL, _ACT, _ASSESS_PERF = range(6)

#: A callback that really runs longer than this many wall seconds (or its timeout, if
#: longer) is treated as hung even in virtual time. Generous on purpose: on a loaded machine
#: an honest callback can take hundreds of ms of wall time, and a false alarm would make a
#: simulation depend on the machine's load.
MIN_WALL_TIMEOUT = 2.0
#: ... and for ``setup``, which may import and probe (as the live executor's SETUP_TIMEOUT).
SETUP_WALL_TIMEOUT = 10.0
#: How often the wall-clock alarm checks for a really hung callback (seconds).
ALARM_PERIOD = 0.05
#: Events between two reads of the RSS while the memory guard is not attributing (while it
#: is, the RSS is read around every event and charged to the agent whose event it was).
MEMORY_CHECK_EVERY = 8


class _WallTimeout(BaseException):
    """Raised inside a really hung callback; BaseException so agent code cannot swallow it."""


@dataclass(frozen=True, slots=True)
class VirtualRun:
    duration: float
    events: int
    wall_s: float

    @property
    def speedup(self) -> float:
        return self.duration / self.wall_s if self.wall_s > 0 else float("inf")


class VirtualExecutor(ExecutorBase):
    def __init__(self, specs: Sequence[AgentSpec], *, start: float = 0.0, **kw: Any) -> None:
        clock = VirtualClock(start)
        super().__init__(specs, clock=clock, **kw)
        self.vclock = clock
        self.start_time = start
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._alarm_ok = False
        self._wall_deadline = math.inf
        self._memory_started = False
        self.events = 0

    # -- invocation -------------------------------------------------------------------
    def _invoker(
        self, runner_ref: list[AgentRunner]
    ) -> Callable[[Side, str, Callable[..., Any], tuple[Any, ...]], Outcome]:
        clock = self.vclock

        perf = time.perf_counter

        refuse = self.refuse_threads

        def invoke(side: Side, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
            runner = runner_ref[0]
            timeout = runner.schedule.callback_timeout
            c0 = clock._consumed
            # the periodic alarm (see run) interrupts the call once this deadline has passed;
            # setup may import large libraries (an interrupted import leaves a half-built
            # module behind for the whole process), so it gets the live executor's allowance
            wall = SETUP_WALL_TIMEOUT if name == "setup" else MIN_WALL_TIMEOUT
            self._wall_deadline = perf() + max(timeout, wall)
            refused: str | None = None
            if refuse:
                isolation.enter(runner.name, name)
            try:
                value = fn(*args)
            except _WallTimeout:
                clock._consumed = c0 + timeout
                return Outcome(
                    False, error="hung (wall-clock alarm)", duration=timeout, cpu=timeout, timed_out=True
                )
            except Exception as exc:
                err: str | None = f"{type(exc).__name__}: {exc}"
                ok = False
                value = None
            else:
                ok, err = True, None
            finally:
                self._wall_deadline = math.inf
                if refuse:
                    refused = isolation.leave()
            if refused is not None:
                # a refused start fails the callback even if the agent caught the error
                runner.log.error("agent.thread_refused", callback=name, error=refused)
                if err is None or refused not in err:
                    err = f"{isolation.AgentThreadError.__name__}: {refused}"
                ok, value = False, None
            duration = clock._consumed - c0
            if duration > timeout:
                if side == "actuator":
                    # the hung actuator call is abandoned at its timeout, as live
                    clock._consumed = c0 + timeout
                return Outcome(
                    False,
                    error=f"took {duration:g}s > {timeout:g}s",
                    duration=duration,
                    cpu=duration,
                    timed_out=True,
                )
            return Outcome(ok, value, err, duration, duration)

        return invoke

    def _on_alarm(self, signum: int, frame: Any) -> None:
        # A periodic tick, not one timer per callback (two syscalls per callback would cost
        # more than the rest of the event loop): only a call past its deadline is interrupted.
        if time.perf_counter() > self._wall_deadline:
            self._wall_deadline = math.inf
            raise _WallTimeout()

    # -- scheduling -------------------------------------------------------------------
    def _push(self, t: float, kind: int, idx: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, kind, self._seq, idx))

    def _period(self, runner: AgentRunner, kind: int) -> float:
        s = runner.schedule
        if kind in (_MODEL, _COLLECT):
            return s.collect_every
        if kind == _PREDICT:
            return s.predict_every or s.collect_every
        if kind in (_ASSESS_MODEL, _ASSESS_PERF):
            return s.assess_every
        return s.act_every

    def setup(self) -> None:
        """Start every agent (``setup``); a failing one is reported and left out."""
        if self.refuse_threads:
            isolation.install()
        self.backend.advance(self.start_time)
        for idx, spec in enumerate(self.specs):
            ref: list[AgentRunner] = []
            runner = self._make_runner(spec, self._invoker(ref))
            ref.append(runner)
            self.runners.append(runner)
            if not runner.start(self._context(spec, runner)):
                continue
            s = runner.schedule
            t0 = self.start_time
            if s.predict_every == s.collect_every:
                self._push(t0, _MODEL, idx)
            else:
                self._push(t0, _COLLECT, idx)
                self._push(t0, _PREDICT, idx)
            self._push(t0 + s.assess_every, _ASSESS_MODEL, idx)
            self._push(t0, _ACT, idx)
            self._push(t0 + s.assess_every, _ASSESS_PERF, idx)

    def run(
        self,
        duration: float,
        *,
        progress: Callable[[float], None] | None = None,
        stop: bool = True,
    ) -> VirtualRun:
        """Run ``duration`` virtual seconds, then (``stop=True``) stop every agent."""
        wall0 = time.perf_counter()
        self._alarm_ok = threading.current_thread() is threading.main_thread()
        old_handler: Any = None
        if self._alarm_ok:
            old_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, ALARM_PERIOD, ALARM_PERIOD)
        try:
            if not self.runners:
                self.setup()
            if self.memory is not None and not self._memory_started:
                self._memory_started = True
                self.memory.start()  # after every setup: what they loaded is the baseline
            end = self.start_time + duration
            self._loop(end, progress)
            self.vclock.set(max(end, self.vclock._t))
            self.backend.advance(self.vclock.now())
            if stop:
                self._stop_all()
        finally:
            if self._alarm_ok:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
        return VirtualRun(duration, self.events, time.perf_counter() - wall0)

    def _check_memory(self, guard: MemoryGuard, runner: AgentRunner, rss0: int) -> None:
        """Charge the event's RSS difference to its agent (while attributing), then the
        guard's check; one agent's events run alone here, so the charge is exact."""
        rss = guard.read()
        if rss < 0:
            return
        if rss0 >= 0:
            guard.charge(runner.name, rss - rss0)
        name = guard.check(rss)
        if name is None:
            return
        culprit = next((r for r in self.runners if r.name == name), None)
        if culprit is None or culprit.state != "running":
            guard.quarantined(name, rss)
            return
        self._memory_quarantine(culprit, rss)

    def _loop(self, end: float, progress: Callable[[float], None] | None) -> None:
        heap, runners, clock, advance = self._heap, self.runners, self.vclock, self.backend.advance
        next_progress = self.start_time
        step = (end - self.start_time) / 100 if progress else float("inf")
        memory = self.memory
        countdown = MEMORY_CHECK_EVERY
        while heap and heap[0][0] < end:
            t, kind, _, idx = heapq.heappop(heap)
            runner = runners[idx]
            if runner.state != "running":
                if runner.restore_pending and kind == _ACT:
                    # out of service with undo records it could not restore: keep trying
                    clock.set(t)
                    advance(t)
                    runner.retry_restore(t)
                    self._push(t + runner.schedule.act_every, kind, idx)
                continue
            clock.set(t)
            advance(t)
            self.events += 1
            rss0 = memory.read() if memory is not None and memory.watching else -1
            if kind == _MODEL:
                runner.model_tick(t)
            elif kind == _ACT:
                runner.act_tick(t)
            elif kind == _COLLECT:
                runner.model_tick(t, predict=False)
            elif kind == _PREDICT:
                runner.model_tick(t, collect=False)
            elif kind == _ASSESS_MODEL:
                runner.assess_model_tick(t)
            else:
                runner.assess_performance_tick(t)
            if memory is not None:
                countdown -= 1
                if rss0 >= 0 or countdown <= 0:
                    countdown = MEMORY_CHECK_EVERY
                    self._check_memory(memory, runner, rss0)
            if runner.state == "running" or (runner.restore_pending and kind == _ACT):
                self._push(t + self._period(runner, kind), kind, idx)
            if progress is not None and t >= next_progress:
                progress(t - self.start_time)
                next_progress += step
