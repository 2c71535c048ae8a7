"""One agent under the runtime: the state machine behind every DESIGN §4 guarantee.

Both executors drive the same ``AgentRunner``. They differ only in *how* a callback is
invoked (inline under virtual time, or on a real thread under a watchdog) and in *when* ticks
happen; everything the guarantees say — which prediction ``act()`` receives, when learning is
skipped, when ``mitigate()`` runs, when the agent is quarantined — is decided here, once.

Timing model. A model-side tick runs its chain (collect → validate → learn → predict) on the
agent's model *lane*; its results take effect when the chain has finished (``clock.now()``
after the calls), and the lane is busy until then. The actuator side never waits for the
model lane: it reads the newest published prediction whose effective time has come.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sol.facilities import FacilityMissing
from sol.metrics import AgentMetrics, RuntimeMetrics
from sol.notices import AgentNotices
from sol.safety.backoff import Backoff
from sol.sdk import Agent, Clock, Prediction, Schedule, Verdict, as_verdict

Side = Literal["model", "actuator"]
#: ``not-applicable``: setup found the node lacks a facility the agent needs (not a failure)
State = Literal["new", "running", "paused", "quarantined", "failed", "not-applicable", "stopped"]

MODEL_CALLBACKS = frozenset({"collect", "validate", "learn", "predict", "assess_model"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one callback invocation."""

    ok: bool
    value: Any = None
    error: str | None = None
    #: seconds of the clock the call took (virtual: consumed; live: measured)
    duration: float = 0.0
    #: CPU seconds the call used (virtual: equal to duration; live: 0, the executor charges
    #: whole lane ticks through ``AgentRunner.charge``)
    cpu: float = 0.0
    timed_out: bool = False
    #: the executor already reported this timeout to the runner (live watchdog)
    reported: bool = False

    def describe(self) -> str:
        if self.timed_out:
            return "timeout"
        return "ok" if self.ok else f"error: {self.error}"


#: (side, callback name, function, args) -> Outcome
Invoker = Callable[[Side, str, Callable[..., Any], tuple[Any, ...]], Outcome]
#: (owner) -> a report with a ``summary()``; rolls back the agent's undo records
Restorer = Callable[[str], Any]


@dataclass(slots=True)
class _Published:
    effective: float
    prediction: Prediction  # for default markers, value is None and filled at act time


class AgentRunner:
    """Runs one agent's callbacks by the rules of DESIGN §4."""

    def __init__(
        self,
        agent: Agent,
        schedule: Schedule,
        *,
        clock: Clock,
        log: Any,
        metrics: RuntimeMetrics,
        invoker: Invoker,
        restore: Restorer | None = None,
        record: bool = False,
        notices: AgentNotices | None = None,
    ) -> None:
        self.agent = agent
        #: where the runtime says it mitigated or restored (sol.notices): at once, urgent
        self.notices = notices
        self.name = agent.name
        self.schedule = schedule
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.agent_metrics: AgentMetrics = metrics.for_agent(agent.name)
        self.invoke = invoker
        self._restore = restore
        self.state: State = "new"
        self.state_reason: str | None = None
        # model side
        self._published: deque[_Published] = deque(maxlen=4)
        self.learned_any = False
        self.invalid_streak = 0
        self.model_verdict: Verdict = Verdict.ok()
        self.model_busy_until = -math.inf
        self._hung_since: float | None = None
        #: a restore of this agent's undo records failed and is retried (see _rollback)
        self.restore_pending = False
        self._restore_next = math.inf
        self._restore_backoff = schedule.backoff_initial
        self._tokens = schedule.cpu_budget * schedule.budget_window
        self._tokens_at: float | None = None
        self._deferring = False
        # actuator side
        self.backoff = Backoff(schedule.backoff_initial, schedule.backoff_max)
        self.errors: deque[float] = deque()
        self.last_action: Prediction | None = None
        # the testing kit's record
        self.record = record
        self.actions: list[tuple[float, Prediction]] = []
        self.calls: list[tuple[float, str, str]] = []
        # model and actuator lanes (and a live watchdog) touch shared state under this lock;
        # agent callbacks are never called while holding it.
        self.lock = threading.RLock()
        # Hot-path counters are plain numbers read at scrape time (RuntimeMetrics collects
        # them); a prometheus Counter.inc() costs a lock per callback.
        self.tick_counts: dict[str, int] = {}
        self.applied_counts: dict[tuple[str, str], int] = {}
        self.model_cpu_s = 0.0
        metrics.track(self)

    # -- helpers ----------------------------------------------------------------------
    def _call(self, side: Side, name: str, fn: Callable[..., Any], *args: Any) -> Outcome:
        t = self.clock.now()
        out = self.invoke(side, name, fn, args)
        if self.record:
            self.calls.append((t, name, out.describe()))
        counts = self.tick_counts
        counts[name] = counts.get(name, 0) + 1
        if side == "model" and out.cpu > 0:
            self._tokens -= out.cpu
            self.model_cpu_s += out.cpu
        return out

    def charge(self, side: Side, cpu: float) -> None:
        """CPU seconds an executor measured for this agent outside ``Outcome.cpu`` (the live
        executor times whole lane ticks): the model side's spend counts against its budget."""
        if side == "model" and cpu > 0:
            self._tokens -= cpu
            self.model_cpu_s += cpu

    def _publish(self, prediction: Prediction, effective: float) -> None:
        with self.lock:
            self._published.append(_Published(effective, prediction))

    def _marker(self, reason: str, now: float) -> None:
        """Publish a default decision (its value is computed at act time)."""
        self._publish(Prediction(None, "default", reason, now, now + self.schedule.prediction_ttl), now)

    @property
    def active(self) -> bool:
        return self.state == "running"

    # -- lifecycle --------------------------------------------------------------------
    def start(self, ctx: Any) -> bool:
        """Run ``setup``; an agent whose setup fails never runs (the others do). One that
        raises ``FacilityMissing`` does not apply to this node: it never runs either, and is
        reported as ``not-applicable``, not as failed."""
        out = self._call("actuator", "setup", self._setup, ctx)
        if out.ok and isinstance(out.value, FacilityMissing):
            self.state, self.state_reason = "not-applicable", str(out.value)
            self.log.warning("agent.not_applicable", reason=str(out.value), facility=out.value.facility)
            self.metrics.state.labels(self.name).set(0)
            self._rollback("not-applicable")  # whatever setup wrote before it found out
            return False
        if not out.ok:
            self.state, self.state_reason = "failed", f"setup failed: {out.describe()}"
            self.log.error("agent.setup_failed", error=out.describe())
            self.metrics.state.labels(self.name).set(0)
            self._rollback("setup-failed")
            return False
        self.state = "running"
        self.metrics.state.labels(self.name).set(1)
        self.log.info("agent.started", schedule=_schedule_summary(self.schedule))
        return True

    def _setup(self, ctx: Any) -> FacilityMissing | None:
        # returned, not raised: the invokers turn an exception into an error string, and a
        # node without the facility is a fact about the node, not an error of the agent
        try:
            self.agent.setup(ctx)
        except FacilityMissing as exc:
            return exc
        return None

    def stop(self, *, restore: bool) -> None:
        """Guarantee 7: ``clean_up`` runs, then the undo journal per the rollback policy."""
        with self.lock:
            # paused: already cleaned up and restored when it was paused (LiveExecutor)
            if self.state in ("stopped", "quarantined", "failed", "not-applicable", "new", "paused"):
                self.state = "stopped" if self.state == "new" else self.state
                return
            self.state = "stopped"
        out = self._call("actuator", "clean_up", self.agent.clean_up)
        if not out.ok:
            self.log.error("agent.clean_up_failed", error=out.describe())
        if restore:
            self._rollback("stop")
        self.metrics.state.labels(self.name).set(0)
        self.log.info("agent.stopped", restored=restore)

    def _rollback(self, why: str) -> bool:
        """Restore this agent's undo records; True when nothing is left open.

        A restore that fails (the host refuses the write: EPERM, a busy knob) leaves the
        records open and is retried with backoff by ``retry_restore`` while the agent is out
        of service, so the host returns to its before-image as soon as it accepts writes
        again, not only at the next stop or ``sol restore``.
        """
        if self._restore is None:
            return True
        try:
            report = self._restore(self.name)
        except Exception as exc:  # the journal itself failed: say so loudly
            self.log.error("agent.restore_failed", why=why, error=f"{type(exc).__name__}: {exc}")
            ok = False
        else:
            summary = report.summary() if hasattr(report, "summary") else str(report)
            ok = bool(getattr(report, "ok", True))
            (self.log.info if ok else self.log.error)("agent.restored", why=why, summary=summary, complete=ok)
            if self.notices is not None:
                self.notices.urgent("restore", "*", detail={"why": why, "complete": ok})
        now = self.clock.now()
        if ok:
            self.restore_pending = False
        else:
            self._restore_backoff = (
                min(self._restore_backoff * 2, self.schedule.backoff_max)
                if (self.restore_pending)
                else self.schedule.backoff_initial
            )
            self.restore_pending = True
            self._restore_next = now + self._restore_backoff
        return ok

    def retry_restore(self, now: float) -> None:
        """Retry a failed restore of an agent that is out of service (quarantined, failed)."""
        if self.restore_pending and self.state != "running" and now >= self._restore_next:
            self._rollback("retry")

    # -- errors and quarantine (guarantee 5) ------------------------------------------
    def _error(self, side: Side, name: str, out: Outcome, now: float) -> None:
        kind = "timeout" if out.timed_out else "exception"
        self.metrics.errors.labels(self.name, name, kind).inc()
        self.log.warning("agent.callback_failed", callback=name, side=side, outcome=out.describe())
        with self.lock:
            self.errors.append(now)
            horizon = now - self.schedule.error_window
            while self.errors and self.errors[0] < horizon:
                self.errors.popleft()
            over = len(self.errors) >= self.schedule.max_errors and self.state == "running"
        if over:
            self.quarantine(
                f"{len(self.errors)} errors within {self.schedule.error_window:g}s "
                f"(last: {name} {out.describe()})"
            )

    def quarantine(self, why: str) -> None:
        with self.lock:
            if self.state in ("quarantined", "stopped", "failed", "not-applicable"):
                return
            self.state, self.state_reason = "quarantined", why
        self.metrics.quarantines.labels(self.name).inc()
        self.metrics.state.labels(self.name).set(0)
        self.log.error("agent.quarantined", reason=why)
        out = self._call("actuator", "clean_up", self.agent.clean_up)
        if not out.ok:
            self.log.error("agent.clean_up_failed", error=out.describe())
        self._rollback("quarantine")

    # -- model side -------------------------------------------------------------------
    def _budget_allows(self, now: float) -> bool:
        """Guarantee 6: a token bucket of model-side CPU seconds refilled at ``cpu_budget``."""
        s = self.schedule
        cap = s.cpu_budget * s.budget_window
        if self._tokens_at is not None:
            self._tokens = min(cap, self._tokens + (now - self._tokens_at) * s.cpu_budget)
        self._tokens_at = now
        if self._tokens < 0:
            if not self._deferring:
                self._deferring = True
                self.log.warning("agent.budget_exceeded", cpu_budget=s.cpu_budget, deficit_s=-self._tokens)
            self.metrics.deferred.labels(self.name).inc()
            return False
        if self._deferring:
            self._deferring = False
            self.log.info("agent.budget_recovered")
        return True

    def model_tick(self, now: float, *, collect: bool = True, predict: bool = True) -> None:
        """One model-lane tick: collect → validate → learn, then predict (DESIGN §4.1–3, 5, 6)."""
        if self.state != "running":
            return
        if now < self.model_busy_until:
            # A call that never returns leaves the model lane unusable: after error_window
            # past its timeout the agent is quarantined (the live watchdog does the same).
            hung = self._hung_since
            if hung is not None and now - hung > self.schedule.error_window:
                self.quarantine(f"model call hung for more than {self.schedule.error_window:g}s")
            return
        self._hung_since = None
        if not self._budget_allows(now):
            return
        try:
            if collect and not self._collect_and_learn():
                return
            if predict:
                self._predict()
        finally:
            self.model_busy_until = self.clock.now()

    def _model_failed(self, name: str, out: Outcome) -> None:
        # The error is effective once the call has failed, or when its timeout fired.
        now = self.clock.now()
        if out.timed_out and not out.reported:
            now = now - out.duration + self.schedule.callback_timeout
            self._hung_since = now
        if not out.reported:
            self._marker("error", now)
            self._error("model", name, out, now)

    def on_model_hang(self, name: str, now: float) -> None:
        """Live watchdog: a model-side call passed its timeout and is still running."""
        self._marker("error", now)
        self._error("model", name, Outcome(False, timed_out=True, error="hung"), now)

    def _collect_and_learn(self) -> bool:
        out = self._call("model", "collect", self.agent.collect)
        if not out.ok:
            self._model_failed("collect", out)
            return False
        obs = out.value
        vout = self._call("model", "validate", self.agent.validate, obs)
        if not vout.ok:
            self._model_failed("validate", vout)
            return False
        verdict = as_verdict(vout.value, what="validate()")
        if not verdict:
            self.invalid_streak += 1
            self.metrics.invalid.labels(self.name).inc()
            self.log.debug("agent.invalid_observation", reason=verdict.reason, streak=self.invalid_streak)
            if self.invalid_streak >= self.schedule.max_invalid_streak:
                if self.invalid_streak == self.schedule.max_invalid_streak:
                    self.log.warning(
                        "agent.invalid_streak", streak=self.invalid_streak, reason=verdict.reason
                    )
                self._marker("invalid-data", self.clock.now())
            return True  # predicting from the model as it is stays allowed below the streak
        self.invalid_streak = 0
        lout = self._call("model", "learn", self.agent.learn, obs)
        if not lout.ok:
            self._model_failed("learn", lout)
            return False
        self.learned_any = True
        return True

    def _predict(self) -> None:
        now = self.clock.now()
        if self.invalid_streak >= self.schedule.max_invalid_streak:
            self._marker("invalid-data", now)
            return
        if not self.model_verdict:
            self._marker("model-assessment", now)
            return
        if not self.learned_any:
            return  # cold start: nothing learned, nothing to predict from
        out = self._call("model", "predict", self.agent.predict)
        if not out.ok:
            self._model_failed("predict", out)
            return
        done = self.clock.now()
        self._publish(Prediction(out.value, "model", None, done, done + self.schedule.prediction_ttl), done)

    def assess_model_tick(self, now: float) -> None:
        """Guarantee 3: while ``assess_model`` fails, predictions are default."""
        if self.state != "running" or now < self.model_busy_until:
            return
        out = self._call("model", "assess_model", self.agent.assess_model)
        self.model_busy_until = self.clock.now()
        if not out.ok:
            self._model_failed("assess_model", out)
            verdict = Verdict.fail(f"assess_model {out.describe()}")
        else:
            verdict = as_verdict(out.value, what="assess_model()")
        was_ok = bool(self.model_verdict)
        self.model_verdict = verdict
        if was_ok and not verdict:
            self.log.warning("agent.model_rejected", reason=verdict.reason)
            self._marker("model-assessment", self.clock.now())
        elif not was_ok and verdict:
            self.log.info("agent.model_accepted")

    # -- actuator side ----------------------------------------------------------------
    def select(self, now: float) -> Prediction:
        """Guarantees 1–4: the decision ``act()`` gets at ``now`` (value may be pending)."""
        ttl = self.schedule.prediction_ttl
        if self.backoff.active(now):
            return Prediction(None, "default", "backoff", now, min(now + ttl, self.backoff.until))
        current: Prediction | None = None
        with self.lock:
            for entry in reversed(self._published):
                if entry.effective <= now:
                    current = entry.prediction
                    break
        if current is None:
            return Prediction(None, "default", "cold-start", now, now + ttl)
        if current.expired(now):
            return Prediction(None, "default", "expired", now, now + ttl)
        return current

    def act_tick(self, now: float) -> None:
        if self.state != "running":
            return
        prediction = self.select(now)
        if prediction.source == "default":
            dout = self._call("actuator", "default_predict", self.agent.default_predict)
            if not dout.ok:
                self._actuator_failed("default_predict", dout)
                return
            prediction = Prediction(
                dout.value, "default", prediction.reason, prediction.created_at, prediction.expires_at
            )
        if self.state != "running":
            return
        out = self._call("actuator", "act", self.agent.act, prediction)
        t = self.clock.now() if not out.timed_out else now + self.schedule.callback_timeout
        if self.record:
            self.actions.append((now, prediction))
        key = (prediction.source, prediction.reason or "")
        self.applied_counts[key] = self.applied_counts.get(key, 0) + 1
        self.last_action = prediction
        if not out.ok:
            self._actuator_failed("act", out, at=t)

    def _actuator_failed(self, name: str, out: Outcome, at: float | None = None) -> None:
        """Guarantee 5: a failing or hung actuator-side call triggers ``mitigate()``."""
        if out.reported:
            return
        now = self.clock.now() if at is None else at
        self._error("actuator", name, out, now)
        if self.state == "running":
            self.run_mitigate(cause=f"{name} {out.describe()}")

    def on_actuator_hang(self, name: str, now: float) -> None:
        """Live watchdog: an actuator-side call passed its timeout (mitigate runs elsewhere)."""
        self._error("actuator", name, Outcome(False, timed_out=True, error="hung"), now)

    def run_mitigate(self, cause: str) -> None:
        self.metrics.mitigations.labels(self.name, cause.split(" ")[0]).inc()
        self.log.warning("agent.mitigate", cause=cause)
        if self.notices is not None:
            self.notices.urgent("mitigate", "*", detail={"cause": cause})
        out = self._call("actuator", "mitigate", self.agent.mitigate)
        if not out.ok and not out.reported:
            self._error("actuator", "mitigate", out, self.clock.now())

    def assess_performance_tick(self, now: float) -> None:
        """Guarantee 4: harm → ``mitigate()`` now, then default decisions for a backoff."""
        if self.state != "running":
            return
        out = self._call("actuator", "assess_performance", self.agent.assess_performance)
        if not out.ok:
            if out.reported:
                return
            self._error("actuator", "assess_performance", out, self.clock.now())
            verdict = Verdict.fail(f"assess_performance {out.describe()}")
        else:
            verdict = as_verdict(out.value, what="assess_performance()")
        if self.state != "running":
            return
        if verdict:
            self.backoff.healthy(now)
            return
        length = self.backoff.fail(now)
        self.log.warning(
            "agent.harm", reason=verdict.reason, backoff_s=length, consecutive=self.backoff.failures
        )
        self.run_mitigate(cause=f"harm: {verdict.reason}")

    # -- introspection ----------------------------------------------------------------
    def status(self) -> Mapping[str, Any]:
        last = self.last_action
        return {
            "agent": self.name,
            "state": self.state,
            "reason": self.state_reason,
            "last_source": last.source if last else None,
            "last_reason": last.reason if last else None,
            "invalid_streak": self.invalid_streak,
            "model_ok": bool(self.model_verdict),
            "backoff_until": self.backoff.until if self.backoff.failures else None,
            "recent_errors": len(self.errors),
        }


def _schedule_summary(s: Schedule) -> str:
    return (
        f"collect={s.collect_every:g}s predict={s.predict_every:g}s act={s.act_every:g}s "
        f"ttl={s.prediction_ttl:g}s assess={s.assess_every:g}s timeout={s.callback_timeout:g}s"
    )


def wall_time() -> float:
    return time.time()
