"""The live executor: real clock, model and actuator sides on separate threads.

Each agent gets a *model lane* (collect → validate → learn → predict, assess_model) and an
*actuator lane* (act, assess_performance), each its own thread, so a slow or hung learner can
never delay actuation (DESIGN §4): the actuator lane only reads the newest published
prediction. Both lanes tick on one grid per agent; an act tick is due ``act_phase`` (5 ms at
most) after the model tick of the same instant, and the model lane wakes the actuator lane as
soon as its tick is done, so ``act()`` applies the prediction made for its window, as under
the virtual executor (where the model runs first at equal times), instead of racing the
model lane for the GIL. One watchdog thread enforces ``callback_timeout`` on every lane:

- a model call past its deadline publishes a default (``reason="error"``) at once; the lane
  stays blocked until the call returns (its result is then discarded);
- an actuator call past its deadline is abandoned: the watchdog starts a fresh actuator lane
  that runs ``mitigate()`` first, and the old thread exits when (if) its call returns.

Python threads cannot be killed, so a callback that never returns keeps its thread; it can
no longer affect decisions, and repeated hangs quarantine the agent (clean-up, journal
restore). The GIL switch interval is lowered so a CPU-bound learner in pure Python yields
the interpreter to an actuator lane within about a millisecond.

A running executor can change one agent without touching the others (SIGHUP reload, the
control socket): :meth:`LiveExecutor.add_agent`, :meth:`~LiveExecutor.remove_agent`,
:meth:`~LiveExecutor.replace_agent`, :meth:`~LiveExecutor.pause_agent`,
:meth:`~LiveExecutor.resume_agent` and :meth:`~LiveExecutor.set_dry_run`. Stopping one agent
is the same sequence as stopping all of them, for that agent only: its lanes are told to end
and joined (bounded by its callback timeout), then ``clean_up()`` and the restore of its undo
records. An agent that starts again always starts from a fresh instance (its old lane may
still be inside a hung callback of the old one). These operations are serialised by one admin
lock; the lanes and the watchdog never take it, and the agent lists they iterate are replaced,
never mutated in place.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sol.metrics import CallbackStats
from sol.runtime import isolation
from sol.runtime.base import AgentSpec, ExecutorBase
from sol.runtime.clock import MonotonicClock
from sol.runtime.memory import MemoryGuard
from sol.runtime.runner import AgentRunner, Outcome, Side

#: Seconds ``setup`` may take (it may probe hardware): at least this, or the callback timeout.
SETUP_TIMEOUT = 10.0
#: A lane that is not inside a callback and has not woken for this long past its due time is
#: stalled (a bug or deadlock in the runtime itself): ``loops_alive()`` turns False.
LOOP_STALL = 10.0
#: Seconds added to an agent's callback timeout when joining its lanes on a single-agent stop.
JOIN_SLACK = 0.5
#: How far (seconds) an agent's act ticks trail its model ticks on their common grid, at most
#: (and at most a tenth of ``act_every``). The model lane wakes the actuator lane as soon as
#: its tick is done, so ``act()`` runs right after the chain due at the same instant and
#: applies the prediction made for its window, as under the virtual executor; a chain that
#: takes longer than this is not waited for (the act applies the newest prediction, as ever).
ACT_PHASE = 0.005
#: The watchdog's period at most (seconds) while the memory guard attributes growth: a leak
#: reaches the limit in ticks, not in the watchdog's usual quarter second.
MEMORY_WATCH_PERIOD = 0.02


def act_phase(schedule: Any) -> float:
    """Seconds an agent's act ticks trail its model ticks at most (see ``ACT_PHASE``)."""
    return float(min(ACT_PHASE, schedule.act_every / 10))


class AgentControlError(LookupError):
    """A single-agent operation cannot be done (unknown agent, wrong state, stopping)."""


def fresh_instance(spec: AgentSpec) -> AgentSpec:
    """The same spec with a new agent instance (the class constructed with no arguments)."""
    cls = type(spec.agent)
    try:
        agent = cls()
    except Exception as exc:
        raise AgentControlError(
            f"cannot start a fresh {cls.__name__} for {spec.agent.name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if agent.name != spec.agent.name:  # a test double that renames instances
        agent.name = spec.agent.name  # type: ignore[misc]
    return replace(spec, agent=agent)


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
    #: seconds between the start of an act tick's window (the model tick due with it) and
    #: the moment the act ran
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    #: when the loop means to wake next (monotonic); a loop far past it is stalled
    wake_by: float = float("inf")


class _Agent:
    """The live bookkeeping of one runner: its spec, its two lanes, its halt flag."""

    def __init__(self, runner: AgentRunner, spec: AgentSpec, stats: CallbackStats) -> None:
        self.runner = runner
        self.spec = spec
        self.stats = stats
        self.model = _Lane("model")
        self.actuator = _Lane("actuator")
        self.lock = threading.Lock()
        #: wakes the actuator lane early: a model tick is done (or a stop)
        self.nudge = Nudge()
        #: set when this agent's lanes must end (executor stop, or this agent stops alone)
        self.halt = Halt(wakes=(self.nudge,))
        #: every lane thread ever started for this instance (replaced ones included)
        self.threads: list[threading.Thread] = []
        #: the origin of both lanes' tick grids (set when the lanes start): model ticks fall
        #: on ``epoch + k*period``, act ticks ``act_phase`` after them
        self.epoch = time.monotonic()

    def busy_threads(self) -> list[str]:
        return [t.name for t in self.threads if t.is_alive() and t is not threading.current_thread()]


class Halt:
    """A one-way stop flag that lanes sleep on between ticks.

    ``threading.Event.wait`` builds a ``Condition`` waiter lock at every call; this waits on one
    pre-made lock with a timeout. A lane wakes 20-40 times a second, and on a small VM each wake
    of an ``Event`` cost ~55 us of CPU more than this (benchmarks/daemon.py measures the daemon).
    ``set()`` unlocks the gate for good: every waiter, present and future, returns at once, and
    each of ``wakes`` is nudged (lanes that sleep on a :class:`Nudge` check the flag when woken).
    """

    def __init__(self, wakes: Sequence[Nudge] = ()) -> None:
        self._flag = False
        self._gate = threading.Lock()
        self._gate.acquire()
        self._setting = threading.Lock()
        self._wakes = tuple(wakes)

    def set(self) -> None:
        with self._setting:
            if not self._flag:
                self._flag = True
                self._gate.release()
        for w in self._wakes:
            w.set()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        """True once set (at once if it is), False when ``timeout`` seconds pass first."""
        if self._flag:
            return True
        if self._gate.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._gate.release()  # pass it on: every waiter must see the flag
            return True
        return self._flag


class Nudge:
    """Wakes one sleeping lane before its timeout; a wake given while it is awake is kept for
    its next wait (one at most). One pre-made lock, as :class:`Halt`."""

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # a wake is already pending: one is enough
            self._gate.release()

    def wait(self, timeout: float) -> bool:
        """True when woken (the wake is used up), False when ``timeout`` seconds pass first."""
        return self._gate.acquire(timeout=max(timeout, 0.0))


class LiveExecutor(ExecutorBase):
    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        switch_interval: float | None = 0.0005,
        advance_every: float | None = None,
        respawn: Callable[[AgentSpec], AgentSpec] = fresh_instance,
        **kw: Any,
    ) -> None:
        self._stop = threading.Event()
        super().__init__(specs, clock=MonotonicClock(self._stop), **kw)
        #: builds the spec of a restarted agent (a fresh instance); the daemon uses its registry
        self.respawn = respawn
        self.switch_interval = switch_interval
        # Only a simulated node needs time pushed into it; a real host moves by itself.
        if advance_every is None:
            advance_every = 0.05 if self.backend.name == "sim" else 0.0
        self.advance_every = advance_every
        # Replaced (copy-on-write) under _admin, never mutated: the watchdog iterates them.
        self._agents: list[_Agent] = []
        self._admin = threading.RLock()
        self._local = threading.local()
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._started = False
        self._watchdog_thread: threading.Thread | None = None
        self._watchdog_beat = 0.0
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
                out = self._invoke_detached(ref[0].runner, name, fn, args, timeout)
                if not out.timed_out:
                    ref[0].stats.observe(name, side, out.duration, out.cpu)
                return out
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
        with agent.lock:
            lane.call, lane.started, lane.deadline, lane.reported = name, start, start + timeout, False
        value: Any = None
        err: str | None = None
        refuse = self.refuse_threads
        if refuse:
            isolation.enter(agent.runner.name, name)
        try:
            value = fn(*args)
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
        finally:
            refused = isolation.leave() if refuse else None
        end = time.monotonic()
        if refused is not None:
            # a refused start fails the callback even if the agent caught the error
            err = _thread_refused(agent.runner, name, refused, err)
        # CPU is charged per tick by the lane loop (_charge), not per call: a thread-CPU clock
        # read is a system call, and cold after a lane's sleep it costs more than the call
        agent.stats.observe(name, lane.side, end - start, 0.0)
        with agent.lock:
            if lane.generation != gen:
                # replaced while hung: the lane now belongs to a new thread; touch nothing
                raise _Abandoned()
            reported = lane.reported
            lane.call, lane.deadline = None, float("inf")
        duration = end - start
        if duration > timeout:
            return Outcome(False, None, f"took {duration:.3f}s > {timeout:g}s", duration, 0.0, True, reported)
        return Outcome(err is None, value, err, duration)

    def _invoke_detached(
        self, runner: AgentRunner, name: str, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float
    ) -> Outcome:
        """A call from outside the lanes (setup, clean-up, quarantine): its own thread, joined
        with a timeout so a hang there cannot block start-up or shutdown."""
        box: dict[str, Any] = {}
        refuse = self.refuse_threads

        def target() -> None:
            cpu0 = time.thread_time()
            if refuse:
                isolation.enter(runner.name, name)
            try:
                box["value"] = fn(*args)
            except BaseException as exc:
                box["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                refused = isolation.leave() if refuse else None
            if refused is not None:
                box["error"] = _thread_refused(runner, name, refused, box.get("error"))
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
        lane.wake_by = time.monotonic() + LOOP_STALL
        agent.threads = [x for x in agent.threads if x.is_alive()] + [t]
        self._keep_thread(t)
        t.start()

    def _keep_thread(self, t: threading.Thread) -> None:
        # dead threads are dropped: restarts and replaced lanes must not grow this forever
        with self._threads_lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

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
        t0 = agent.epoch
        due = {"collect": t0, "predict": t0, "assess": t0 + s.assess_every}
        periods = {
            "collect": s.collect_every,
            "predict": s.predict_every or s.collect_every,
            "assess": s.assess_every,
        }
        halt = agent.halt
        memory = self.memory
        while not halt.is_set() and r.state == "running" and lane.generation == gen:
            nxt = min(due.values())
            lane.wake_by = nxt
            wait = nxt - time.monotonic()
            if wait > 0 and halt.wait(wait):
                return
            now = time.monotonic()
            cpu0 = time.thread_time()
            # a system call per tick, only while the memory guard is attributing growth
            rss0 = memory.read() if memory is not None and memory.watching else -1
            ready = {k for k, d in due.items() if d <= now}
            for k in ready:
                due[k] = _grid_next(due[k], periods[k], now)
            if "collect" in ready or "predict" in ready:
                r.model_tick(now, collect="collect" in ready, predict="predict" in ready)
                agent.nudge.set()  # the actuator lane acts now if this was its window's chain
            if "assess" in ready and r.state == "running":
                r.assess_model_tick(time.monotonic())
            if rss0 >= 0:
                _charge_memory(memory, r.name, rss0)
            self._charge(agent, "model", time.thread_time() - cpu0)

    def _actuator_loop(self, agent: _Agent, lane: _Lane, gen: int, mitigate_first: str | None = None) -> None:
        r, s = agent.runner, agent.runner.schedule
        halt = agent.halt
        # on the model lane's grid, at most act_phase behind it (sooner when the model lane's
        # tick ends first); a lane started in place of a hung one acts at once after its
        # mitigation, then joins the grid
        phase = act_phase(s)
        t0 = agent.epoch + phase
        due = {"act": t0, "assess": t0 + s.assess_every}
        periods = {"act": s.act_every, "assess": s.assess_every}
        if mitigate_first and r.state == "running" and not halt.is_set():
            r.run_mitigate(cause=mitigate_first)
            now = time.monotonic()
            due = {k: _grid_next(d, periods[k], now) for k, d in due.items()}
            due["act"] = now
        while not halt.is_set() and r.state == "running" and lane.generation == gen:
            nxt = min(due.values())
            lane.wake_by = nxt
            wait = nxt - time.monotonic()
            early = 0.0
            # woken by the model lane (its tick is done), by a stop, or by the timer
            if wait > 0 and agent.nudge.wait(wait):
                if halt.is_set():
                    return
                early = phase
            now = time.monotonic()
            act = due["act"] - now <= early
            assess = due["assess"] <= now
            if not (act or assess):
                continue  # a model tick outside this act's window: keep sleeping
            cpu0 = time.thread_time()
            memory = self.memory
            rss0 = memory.read() if memory is not None and memory.watching else -1
            if act:
                # from the window's start (the model tick due with this act), as before the
                # act trailed it: an act that ran early, on the model lane's wake, counts its
                # wait for the chain; one that waited out act_phase counts that too
                lane.lateness.append(max(0.0, now - (due["act"] - phase)))
                due["act"] = _grid_next(t0, periods["act"], max(now, due["act"]))
                r.act_tick(now)
            if assess and r.state == "running":
                due["assess"] = _grid_next(t0 + s.assess_every, periods["assess"], now)
                r.assess_performance_tick(time.monotonic())
            if rss0 >= 0:
                _charge_memory(memory, r.name, rss0)
            self._charge(agent, "actuator", time.thread_time() - cpu0)

    @staticmethod
    def _charge(agent: _Agent, side: Side, cpu: float) -> None:
        """Charge one lane tick's CPU (its callbacks and their bookkeeping) to the agent: the
        model side's budget (guarantee 6, checked at the start of each model tick) and the
        per-side CPU metrics."""
        agent.runner.charge(side, cpu)
        agent.stats.cpu[side] = agent.stats.cpu.get(side, 0.0) + cpu

    def _watchdog(self) -> None:
        period = 0.1
        while not self._stop.wait(period):
            agents = self._agents  # a snapshot: admin operations replace the list
            timeouts = [a.runner.schedule.callback_timeout for a in agents] or [1.0]
            # a hang is seen within a quarter of the shortest timeout past it (4 wakes a
            # second with the default 1 s timeout: the watchdog costs no more than it must)
            period = min(max(min(timeouts) / 4, 0.005), 0.25)
            now = time.monotonic()
            self._watchdog_beat = now
            if self.memory is not None:
                self._check_memory(self.memory, agents)
                if self.memory.watching:
                    period = min(period, MEMORY_WATCH_PERIOD)
            for agent in agents:
                r = agent.runner
                if r.state != "running":
                    if r.restore_pending:
                        r.retry_restore(now)  # undo records a quarantine could not restore
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
                        cause = f"{name} hung past {r.schedule.callback_timeout:g}s"
                        # under the agent's lock: a single-agent stop sets halt under it too, so
                        # no fresh lane can start after that stop has begun
                        with agent.lock:
                            if r.state == "running" and not agent.halt.is_set():
                                self._spawn(
                                    agent,
                                    lane,
                                    lambda a, ln, g, c=cause: self._actuator_loop(a, ln, g, mitigate_first=c),  # type: ignore[misc]
                                )

    def _check_memory(self, guard: MemoryGuard, agents: Sequence[_Agent]) -> None:
        """The memory guard's check (one ``pread``), and its quarantine when it names an agent."""
        rss = guard.read()
        if rss < 0:
            return  # the meter was closed by a stop racing with this wake
        name = guard.check(rss)
        if name is None:
            return
        runner = next((a.runner for a in agents if a.runner.name == name), None)
        if runner is None or runner.state != "running":
            guard.quarantined(name, rss)  # gone already: its growth is not the next one's
            return
        self._memory_quarantine(runner, rss)

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
        if self.refuse_threads:
            isolation.install()
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
        self.started_at = time.monotonic()
        self._watchdog_beat = self.started_at
        self.backend.advance(self.started_at)
        with self._admin:
            specs, self.specs = list(self.specs), []
            for spec in specs:
                self._install(spec)
        if self.memory is not None:
            self.memory.start()  # after every setup: what they loaded is the baseline
        helpers: list[tuple[Callable[[], None], str]] = [(self._watchdog, "sol-watchdog")]
        if self.advance_every > 0:
            helpers.append((self._advancer, "sol-advance"))
        for target, name in helpers:
            t = threading.Thread(target=target, name=name, daemon=True)
            if target == self._watchdog:
                self._watchdog_thread = t
            self._keep_thread(t)
            t.start()
        self.log.info("runtime.started", agents=[r.name for r in self.runners if r.state == "running"])

    def _install(self, spec: AgentSpec, at: int | None = None) -> _Agent:
        """Build, register and start one agent (under ``_admin``); ``at`` replaces that slot."""
        ref: list[_Agent] = []
        runner = self._make_runner(spec, self._invoker(ref))
        agent = _Agent(runner, spec, self.metrics.callback_stats(spec.agent.name))
        ref.append(agent)
        agents, runners, specs = list(self._agents), list(self.runners), list(self.specs)
        if at is None:
            agents.append(agent)
            runners.append(runner)
            specs.append(spec)
        else:
            agents[at], runners[at], specs[at] = agent, runner, spec
        self._agents, self.runners, self.specs = agents, runners, specs
        if self._stop.is_set():  # request_stop raced with us: never start lanes after it
            agent.halt.set()
        try:
            ctx = self._context(spec, runner)
        except Exception as exc:  # the backend cannot bind this agent's actuators: it alone fails
            runner.state, runner.state_reason = "failed", f"context: {type(exc).__name__}: {exc}"
            runner.log.error("agent.setup_failed", error=runner.state_reason)
            return agent
        if runner.start(ctx):
            with agent.lock:
                if not agent.halt.is_set():
                    agent.epoch = time.monotonic()
                    self._spawn(agent, agent.model, self._model_loop)
                    self._spawn(agent, agent.actuator, self._actuator_loop)
        return agent

    def request_stop(self) -> None:
        """Ask every lane to end (sets events: not for a signal handler, see sol.daemon)."""
        self._stop.set()
        for agent in self._agents:
            agent.halt.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or ``timeout`` passes (False)."""
        return self._stop.wait(timeout)

    def stop(self, join_timeout: float = 2.0) -> None:
        """Stop the lanes, then every agent's clean-up and the rollback policy (guarantee 7)."""
        self.request_stop()
        with self._admin:  # an admin operation in flight finishes (bounded) before we stop
            pass
        deadline = time.monotonic() + join_timeout
        with self._threads_lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
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

    # -- one agent at a time (reload, control socket) ----------------------------------
    def _find(self, name: str) -> tuple[int, _Agent]:
        for i, agent in enumerate(self._agents):
            if agent.runner.name == name:
                return i, agent
        known = ", ".join(a.runner.name for a in self._agents) or "(none)"
        raise AgentControlError(f"no agent {name!r} in this daemon; running: {known}")

    def _check_open(self) -> None:
        if not self._started:
            raise AgentControlError("the runtime has not started")
        if self._stop.is_set():
            raise AgentControlError("the runtime is stopping")

    def _halt(self, agent: _Agent, *, restore: bool = True) -> None:
        """Stop one agent: end its lanes (bounded wait), then clean-up and restore (guarantee 7)."""
        with agent.lock:
            agent.halt.set()
        deadline = time.monotonic() + agent.runner.schedule.callback_timeout + JOIN_SLACK
        for lane in (agent.model, agent.actuator):
            t = lane.thread
            if t is not None and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        # A lane still inside a hung callback keeps its thread; the restore revokes the
        # agent's writers first (ExecutorBase._restore_fn), so a late write cannot land.
        agent.runner.stop(restore=restore)

    def _reopen(self, old: _Agent) -> None:
        """Let the agent's name write again after its stop revoked it (a restart).

        Refused while a callback of the old instance still runs (hung): it holds the old
        actuators and could write once they are re-opened, behind the restore's back.
        """
        if not self.backend.revocable:
            return  # nothing of the old instance can land on a host: nothing to wait for
        busy = old.busy_threads()
        if busy:
            raise AgentControlError(
                f"agent {old.runner.name!r} cannot start again yet: a callback of its previous "
                f"instance is still running ({', '.join(busy)}) and could still write; retry once it returns"
            )
        self.backend.unrevoke(old.runner.name)

    def spec(self, name: str) -> AgentSpec:
        """The spec an agent runs (or would resume) with."""
        return self._find(name)[1].spec

    def add_agent(self, spec: AgentSpec) -> AgentRunner:
        """Start one more agent; its name must be new."""
        with self._admin:
            self._check_open()
            if any(a.runner.name == spec.agent.name for a in self._agents):
                raise AgentControlError(f"agent {spec.agent.name!r} already runs")
            agent = self._install(spec)
        self.log.info("runtime.agent_added", agent=spec.agent.name, state=agent.runner.state)
        return agent.runner

    def remove_agent(self, name: str) -> AgentRunner:
        """Stop one agent (clean-up and restore of its undo records) and forget it."""
        with self._admin:
            self._check_open()
            i, agent = self._find(name)
            self._halt(agent)
            self.metrics.retire(agent.runner)
            self._agents = [a for a in self._agents if a is not agent]
            self.runners = [r for r in self.runners if r is not agent.runner]
            self.specs = [s for j, s in enumerate(self.specs) if j != i]
        self.log.info("runtime.agent_removed", agent=name)
        return agent.runner

    def replace_agent(self, spec: AgentSpec, *, keep_paused: bool = False) -> AgentRunner:
        """Stop the agent of the same name and start ``spec`` in its place.

        With ``keep_paused`` a paused agent stays paused and only its spec is replaced.
        """
        name = spec.agent.name
        with self._admin:
            self._check_open()
            i, old = self._find(name)
            if keep_paused and old.runner.state == "paused":
                old.spec = spec
                self.specs = [spec if j == i else s for j, s in enumerate(self.specs)]
                return old.runner
            self._halt(old)
            self._reopen(old)
            self.metrics.retire(old.runner)
            agent = self._install(spec, at=i)
        self.log.info("runtime.agent_restarted", agent=name, state=agent.runner.state)
        return agent.runner

    def pause_agent(self, name: str, why: str = "paused by operator") -> AgentRunner:
        """Stop one agent, leaving the host as it found it (clean-up, restore); keep its spec."""
        with self._admin:
            self._check_open()
            _, agent = self._find(name)
            r = agent.runner
            if r.state == "paused":
                return r
            if r.state != "running":
                raise AgentControlError(f"agent {name!r} is {r.state}, not running (resume restarts it)")
            self._halt(agent)
            with r.lock:
                r.state, r.state_reason = "paused", why
        self.log.info("runtime.agent_paused", agent=name, why=why)
        return r

    def resume_agent(self, name: str) -> AgentRunner:
        """Start a paused, quarantined, failed or stopped agent again, from a fresh instance."""
        with self._admin:
            self._check_open()
            i, agent = self._find(name)
            if agent.runner.state == "running":
                return agent.runner
            spec = self.respawn(agent.spec)
            self._halt(agent)  # a no-op for its runner, but joins what is left of its lanes
            self._reopen(agent)
            self.metrics.retire(agent.runner)
            new = self._install(spec, at=i)
        self.log.info("runtime.agent_resumed", agent=name, state=new.runner.state)
        return new.runner

    def set_dry_run(self, name: str, dry_run: bool) -> AgentRunner:
        """Restart one running agent with its actuators rebuilt in (or out of) dry-run.

        An agent that is not running (paused, quarantined, failed) only has its spec changed:
        the flag applies when it is resumed.
        """
        with self._admin:
            self._check_open()
            i, agent = self._find(name)
            if agent.spec.dry_run == dry_run:
                return agent.runner
            if agent.runner.state != "running":
                agent.spec = replace(agent.spec, dry_run=dry_run)
                self.specs = [agent.spec if j == i else s for j, s in enumerate(self.specs)]
                return agent.runner
            return self.replace_agent(replace(self.respawn(agent.spec), dry_run=dry_run))

    # -- introspection ----------------------------------------------------------------
    def loops_alive(self, stall: float = LOOP_STALL) -> bool:
        """True while the watchdog and every running agent's lanes are alive (for WATCHDOG=1).

        A hung callback is the watchdog's business (defaults, mitigation, quarantine); a
        dead lane thread, a lane that stopped waking up outside any callback, or a dead
        watchdog means the runtime itself is broken.
        """
        return not self.stalled_loops(stall)

    def stalled_loops(self, stall: float = LOOP_STALL) -> list[str]:
        """What is broken, e.g. ``["watchdog", "cpu_harvest/model"]``; empty when all is well."""
        if not self._started:
            return ["runtime not started"]
        now = time.monotonic()
        broken: list[str] = []
        wd = self._watchdog_thread
        if wd is None or not wd.is_alive() or now - self._watchdog_beat > stall:
            broken.append("watchdog")
        for agent in self._agents:
            if agent.runner.state != "running" or agent.halt.is_set():
                continue
            for lane in (agent.model, agent.actuator):
                t = lane.thread
                if t is None or not t.is_alive():
                    broken.append(f"{agent.runner.name}/{lane.side} (thread ended)")
                elif lane.call is None and now - lane.wake_by > stall:
                    broken.append(f"{agent.runner.name}/{lane.side} (no tick for {now - lane.wake_by:.0f}s)")
        return broken

    def lateness(self, agent: str) -> list[float]:
        for a in self._agents:
            if a.runner.name == agent:
                return list(a.actuator.lateness)
        raise KeyError(agent)

    def agent_specs(self) -> dict[str, AgentSpec]:
        """name -> spec of every agent the executor knows (running or not), in order."""
        return {a.runner.name: a.spec for a in self._agents}


def _grid_next(anchor: float, period: float, now: float) -> float:
    """The first tick after ``now`` on the grid ``anchor + k*period`` (k >= 0; missed ticks
    are skipped). A tick within a nanosecond of ``now`` counts as ``now`` itself
    (``anchor + k*period`` computed again may land a rounding error below a due time it was
    computed from)."""
    if anchor > now + 1e-9:
        return anchor
    return anchor + (math.floor((now - anchor) / period + 1e-9) + 1) * period


def _thread_refused(runner: AgentRunner, callback: str, refused: str, err: str | None) -> str:
    runner.log.error("agent.thread_refused", callback=callback, error=refused)
    return err if err is not None and refused in err else f"{isolation.AgentThreadError.__name__}: {refused}"


def _charge_memory(memory: MemoryGuard | None, agent: str, rss0: int) -> None:
    """Charge the RSS a lane tick added (or freed) to its agent."""
    if memory is not None:
        rss = memory.read()
        if rss >= 0:
            memory.charge(agent, rss - rss0)
