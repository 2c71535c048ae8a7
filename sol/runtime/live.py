"""The live executor: real clock, model and actuator sides on separate threads.

Each agent gets a *model lane* (collect → validate → learn → predict, assess_model) and an
*actuator lane* (act, assess_performance), each its own thread, so a slow or hung learner can
never delay actuation (DESIGN §4): the actuator lane only reads the newest published
prediction. One watchdog thread enforces ``callback_timeout`` on every lane:

- a model call past its deadline publishes a default (``reason="error"``) at once; the lane
  stays blocked until the call returns (its result is then discarded);
- an actuator call past its deadline is abandoned: the watchdog starts a fresh actuator lane
  that runs ``mitigate()`` first, and the old thread exits when (if) its call returns.

Python threads cannot be killed, so a callback that never returns keeps its thread; it can
no longer affect decisions, and repeated hangs quarantine the agent (clean-up, journal
restore). The GIL switch interval is lowered so a CPU-bound learner in pure Python yields
the interpreter to an actuator lane within about a millisecond.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sol.runtime.base import AgentSpec, ExecutorBase
from sol.runtime.clock import MonotonicClock
from sol.runtime.runner import AgentRunner, Outcome, Side

#: Seconds ``setup`` may take (it may probe hardware): at least this, or the callback timeout.
SETUP_TIMEOUT = 10.0


class _Abandoned(BaseException):
    """Ends a lane thread whose call was declared hung and replaced."""


@dataclass(slots=True)
class _Lane:
    side: Side
    thread: threading.Thread | None = None
    generation: int = 0
    call: str | None = None
    started: float = 0.0
    deadline: float = float("inf")
    reported: bool = False
    #: seconds between the due time of an actuator tick and the moment it ran
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=4096))


class _Agent:
    """The live bookkeeping of one runner: its two lanes."""

    def __init__(self, runner: AgentRunner) -> None:
        self.runner = runner
        self.model = _Lane("model")
        self.actuator = _Lane("actuator")
        self.lock = threading.Lock()


class LiveExecutor(ExecutorBase):
    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        switch_interval: float | None = 0.0005,
        advance_every: float | None = None,
        **kw: Any,
    ) -> None:
        self._stop = threading.Event()
        super().__init__(specs, clock=MonotonicClock(self._stop), **kw)
        self.switch_interval = switch_interval
        # Only a simulated node needs time pushed into it; a real host moves by itself.
        if advance_every is None:
            advance_every = 0.05 if getattr(self.backend, "name", "") == "sim" else 0.0
        self.advance_every = advance_every
        self._agents: list[_Agent] = []
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self._started = False
        self.started_at = 0.0

    # -- invocation -------------------------------------------------------------------
    def _invoker(
        self, ref: list[_Agent]
    ) -> Callable[[Side, str, Callable[..., Any], tuple[Any, ...]], Outcome]:
        def invoke(side: Side, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> Outcome:
            lane: _Lane | None = getattr(self._local, "lane", None)
            timeout = ref[0].runner.schedule.callback_timeout
            if name == "setup":
                timeout = max(timeout, SETUP_TIMEOUT)
            if lane is None:
                return self._invoke_detached(name, fn, args, timeout)
            return self._invoke_on_lane(ref[0], lane, fn, args, name, timeout)

        return invoke

    def _invoke_on_lane(
        self,
        agent: _Agent,
        lane: _Lane,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        name: str,
        timeout: float,
    ) -> Outcome:
        gen = lane.generation
        start = time.monotonic()
        cpu0 = time.thread_time()
        with agent.lock:
            lane.call, lane.started, lane.deadline, lane.reported = name, start, start + timeout, False
        value: Any = None
        err: str | None = None
        try:
            value = fn(*args)
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
        end = time.monotonic()
        cpu = time.thread_time() - cpu0
        with agent.lock:
            if lane.generation != gen:
                # replaced while hung: the lane now belongs to a new thread; touch nothing
                raise _Abandoned()
            reported = lane.reported
            lane.call, lane.deadline = None, float("inf")
        duration = end - start
        if duration > timeout:
            return Outcome(False, None, f"took {duration:.3f}s > {timeout:g}s", duration, cpu, True, reported)
        return Outcome(err is None, value, err, duration, cpu)

    def _invoke_detached(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float
    ) -> Outcome:
        """A call from outside the lanes (setup, clean-up, quarantine): its own thread, joined
        with a timeout so a hang there cannot block start-up or shutdown."""
        box: dict[str, Any] = {}

        def target() -> None:
            cpu0 = time.thread_time()
            try:
                box["value"] = fn(*args)
            except BaseException as exc:
                box["error"] = f"{type(exc).__name__}: {exc}"
            box["cpu"] = time.thread_time() - cpu0

        start = time.monotonic()
        t = threading.Thread(target=target, name=f"sol-{name}", daemon=True)
        t.start()
        t.join(timeout)
        duration = time.monotonic() - start
        if t.is_alive():
            return Outcome(False, None, f"no return within {timeout:g}s", duration, 0.0, True)
        if "error" in box:
            return Outcome(False, None, box["error"], duration, box.get("cpu", 0.0))
        return Outcome(True, box.get("value"), None, duration, box.get("cpu", 0.0))

    # -- lanes ------------------------------------------------------------------------
    def _spawn(self, agent: _Agent, lane: _Lane, loop: Callable[[_Agent, _Lane, int], None]) -> None:
        gen = lane.generation
        name = f"sol-{agent.runner.name}-{lane.side}"
        t = threading.Thread(target=self._lane_main, args=(agent, lane, gen, loop), name=name, daemon=True)
        lane.thread = t
        self._threads.append(t)
        t.start()

    def _lane_main(
        self, agent: _Agent, lane: _Lane, gen: int, loop: Callable[[_Agent, _Lane, int], None]
    ) -> None:
        self._local.lane = lane
        try:
            loop(agent, lane, gen)
        except _Abandoned:
            return
        except BaseException as exc:  # a bug in the runtime itself: never silently
            agent.runner.log.error(
                "runtime.lane_crashed", side=lane.side, error=f"{type(exc).__name__}: {exc}"
            )
            agent.runner.quarantine(f"runtime {lane.side} lane crashed: {exc}")

    def _model_loop(self, agent: _Agent, lane: _Lane, gen: int) -> None:
        r, s = agent.runner, agent.runner.schedule
        t0 = time.monotonic()
        due = {"collect": t0, "predict": t0, "assess": t0 + s.assess_every}
        periods = {
            "collect": s.collect_every,
            "predict": s.predict_every or s.collect_every,
            "assess": s.assess_every,
        }
        while not self._stop.is_set() and r.state == "running" and lane.generation == gen:
            nxt = min(due.values())
            wait = nxt - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            now = time.monotonic()
            ready = {k for k, d in due.items() if d <= now}
            for k in ready:
                due[k] = _next_due(due[k], periods[k], now)
            if "collect" in ready or "predict" in ready:
                r.model_tick(now, collect="collect" in ready, predict="predict" in ready)
            if "assess" in ready and r.state == "running":
                r.assess_model_tick(time.monotonic())

    def _actuator_loop(self, agent: _Agent, lane: _Lane, gen: int, mitigate_first: str | None = None) -> None:
        r, s = agent.runner, agent.runner.schedule
        if mitigate_first and r.state == "running":
            r.run_mitigate(cause=mitigate_first)
        t0 = time.monotonic()
        due = {"act": t0, "assess": t0 + s.assess_every}
        periods = {"act": s.act_every, "assess": s.assess_every}
        while not self._stop.is_set() and r.state == "running" and lane.generation == gen:
            nxt = min(due.values())
            wait = nxt - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            now = time.monotonic()
            if due["act"] <= now:
                lane.lateness.append(now - due["act"])
                due["act"] = _next_due(due["act"], periods["act"], now)
                r.act_tick(now)
            if due["assess"] <= now and r.state == "running":
                due["assess"] = _next_due(due["assess"], periods["assess"], now)
                r.assess_performance_tick(time.monotonic())

    def _watchdog(self) -> None:
        timeouts = [a.runner.schedule.callback_timeout for a in self._agents] or [1.0]
        period = min(max(min(timeouts) / 5, 0.005), 0.1)
        while not self._stop.wait(period):
            now = time.monotonic()
            for agent in self._agents:
                r = agent.runner
                if r.state != "running":
                    continue
                for lane in (agent.model, agent.actuator):
                    with agent.lock:
                        long_hung = lane.reported and now > lane.deadline + r.schedule.error_window
                        stuck = lane.call if lane.call is not None and long_hung else None
                        hung = lane.call is not None and not lane.reported and now > lane.deadline
                    if stuck is not None:
                        # a call that never returns leaves the lane unusable: bounded by quarantine
                        r.quarantine(f"{stuck} hung for more than {r.schedule.error_window:g}s")
                        continue
                    if not hung:
                        continue
                    with agent.lock:
                        lane.reported = True
                        name = lane.call or "?"
                        if lane.side == "actuator":
                            lane.generation += 1  # the hung thread exits when its call returns
                    if lane.side == "model":
                        r.on_model_hang(name, now)
                    else:
                        r.on_actuator_hang(name, now)
                        if r.state == "running":
                            cause = f"{name} hung past {r.schedule.callback_timeout:g}s"
                            self._spawn(
                                agent,
                                lane,
                                lambda a, ln, g, c=cause: self._actuator_loop(a, ln, g, mitigate_first=c),  # type: ignore[misc]
                            )

    def _advancer(self) -> None:
        while not self._stop.wait(self.advance_every):
            try:
                self.backend.advance(time.monotonic())
            except Exception as exc:
                self.log.error("backend.advance_failed", error=f"{type(exc).__name__}: {exc}")

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
        self.started_at = time.monotonic()
        self.backend.advance(self.started_at)
        for spec in self.specs:
            ref: list[_Agent] = []
            runner = self._make_runner(spec, self._invoker(ref))
            agent = _Agent(runner)
            ref.append(agent)
            self.runners.append(runner)
            self._agents.append(agent)
            if runner.start(self._context(spec, runner)):
                self._spawn(agent, agent.model, self._model_loop)
                self._spawn(agent, agent.actuator, self._actuator_loop)
        helpers: list[tuple[Callable[[], None], str]] = [(self._watchdog, "sol-watchdog")]
        if self.advance_every > 0:
            helpers.append((self._advancer, "sol-advance"))
        for target, name in helpers:
            t = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(t)
            t.start()
        self.log.info("runtime.started", agents=[r.name for r in self.runners if r.state == "running"])

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or ``timeout`` passes (False)."""
        return self._stop.wait(timeout)

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop the lanes, then every agent's clean-up and the rollback policy (guarantee 7)."""
        self._stop.set()
        deadline = time.monotonic() + join_timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            self.log.warning("runtime.threads_still_running", threads=stuck)
        self._stop_all()

    def run(self, duration: float | None = None) -> None:
        """Start, run until ``duration`` elapses or a stop is requested, then stop."""
        self.start()
        try:
            self.wait(duration)
        finally:
            self.stop()

    # -- introspection ----------------------------------------------------------------
    def loops_alive(self) -> bool:
        """True while the watchdog and every running agent's lanes are alive (for WATCHDOG=1).

        A hung callback is the watchdog's business (defaults, mitigation, quarantine); a
        dead lane thread or a dead watchdog means the runtime itself is broken.
        """
        if not self._started or not all(
            t.is_alive() for t in self._threads if t.name.startswith("sol-watchdog")
        ):
            return False
        for agent in self._agents:
            if agent.runner.state != "running":
                continue
            for lane in (agent.model, agent.actuator):
                if lane.thread is None or not lane.thread.is_alive():
                    return False
        return True

    def lateness(self, agent: str) -> list[float]:
        for a in self._agents:
            if a.runner.name == agent:
                return list(a.actuator.lateness)
        raise KeyError(agent)


def _next_due(due: float, period: float, now: float) -> float:
    """The next tick after ``now`` on the grid ``due + k*period`` (missed ticks are skipped)."""
    nxt = due + period
    if nxt <= now:
        nxt += ((now - nxt) // period + 1) * period
    return nxt
