"""DESIGN §4's eight guarantees, pinned in virtual time (deterministic, no sleeping).

Each test drives a small scripted agent whose behaviour at a given virtual time is set by the
test, and asserts on what ``act()`` received and which callbacks ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sol import Agent, Prediction, Schedule, Verdict
from sol.backend import NullBackend
from sol.testing import SimulationResult, simulate
from tests.agentkit import RecordingAgent

SCHED = Schedule(
    collect_every=1.0,
    act_every=1.0,
    prediction_ttl=2.5,
    assess_every=5.0,
    max_invalid_streak=3,
    backoff_initial=4.0,
    backoff_max=16.0,
    callback_timeout=0.5,
    cpu_budget=0.1,
    budget_window=10.0,
    max_errors=5,
    error_window=30.0,
)


class Scripted(RecordingAgent):
    """An agent whose every callback can be replaced by a function of virtual time."""

    name = "scripted"
    schedule = SCHED
    model_value = "model-value"
    default_value = "safe-value"

    def __init__(self, **behaviour: Callable[..., Any]) -> None:
        super().__init__()
        self.behaviour = behaviour

    def _maybe(self, name: str, default: Any, *args: Any) -> Any:
        fn = self.behaviour.get(name)
        return fn(self.now(), *args) if fn else default

    def collect(self) -> object:
        return self._maybe("collect", {"t": self.now(), "x": 1.0})

    def validate(self, obs: Any) -> Verdict | bool:
        return self._maybe("validate", Verdict.ok(), obs)

    def learn(self, obs: Any) -> None:
        self._maybe("learn", None, obs)
        super().learn(obs)

    def predict(self) -> object:
        return self._maybe("predict", self.model_value)

    def assess_model(self) -> Verdict | bool:
        return self._maybe("assess_model", True)

    def act(self, prediction: Prediction) -> None:
        self._maybe("act", None, prediction)
        super().act(prediction)

    def assess_performance(self) -> Verdict | bool:
        return self._maybe("assess_performance", True)

    def mitigate(self) -> None:
        super().mitigate()
        self._maybe("mitigate", None)


def run(agent: Agent, duration: float = 60.0, **kw: Any) -> SimulationResult:
    return simulate(agent, duration, seed=1, backend=NullBackend(), **kw)


def reasons_between(r: SimulationResult, t0: float, t1: float) -> set[tuple[str, str | None]]:
    return {(p.source, p.reason) for t, p in r.actions if t0 <= t < t1}


def raise_(exc: BaseException) -> Callable[..., Any]:
    def f(*_: Any) -> Any:
        raise exc

    return f


# -- 1. expiry ------------------------------------------------------------------------


def test_expiry_first_act_is_cold_start_then_model() -> None:
    # the predict tick publishes before the act tick of the same instant
    r = run(Scripted(), 5)
    assert r.actions[0][1].source == "model"
    r = run(Scripted(predict=lambda t: (_ for _ in ()).throw(AssertionError) if False else "v"), 5)
    assert {p.source for _, p in r.actions} == {"model"}


def test_cold_start_until_something_is_learned() -> None:
    invalid_first = Scripted(validate=lambda t, obs: t >= 2.0)
    r = run(invalid_first, 6)
    assert r.actions[0][1].reason == "cold-start"
    assert r.actions[1][1].reason == "cold-start"
    assert r.actions[2][1].source == "model"


def test_stale_prediction_expires_into_default_when_model_loop_is_starved() -> None:
    # predict() takes 10 s of virtual time from t=10: the model lane is busy, nothing new
    # is published; the last prediction (t=9, ttl 2.5) must stop being applied at t=11.5.
    agent = Scripted(predict=lambda t: agent.ctx.clock.consume(10.0) if 10 <= t < 11 else "v")
    sched = SCHED.replace(callback_timeout=20.0)
    r = run(agent, 30, schedule=sched)
    by_t = {t: p for t, p in r.actions}
    assert by_t[11.0].source == "model" and by_t[11.0].created_at == 9.0
    assert (by_t[12.0].source, by_t[12.0].reason) == ("default", "expired")
    assert by_t[12.0].value == "safe-value"
    assert all(p.source == "default" for t, p in r.actions if 12 <= t < 20)
    assert by_t[21.0].source == "model"


def test_no_applied_prediction_is_ever_older_than_ttl() -> None:
    agent = Scripted(predict=lambda t: agent.ctx.clock.consume(7.0) if int(t) % 9 == 0 else "v")
    r = run(agent, 120, schedule=SCHED.replace(callback_timeout=10.0))
    for t, p in r.actions:
        if p.source == "model":
            assert t - p.created_at < SCHED.prediction_ttl


# -- 2. bad data ----------------------------------------------------------------------


def test_invalid_observations_are_never_learned() -> None:
    agent = Scripted(
        collect=lambda t: {"t": t, "x": math.nan if 5 <= t < 8 else 1.0},
        validate=lambda t, obs: Verdict.fail("nan") if math.isnan(obs["x"]) else True,
    )
    run(agent, 20)
    assert agent.learned and all(not math.isnan(o["x"]) for o in agent.learned)


@pytest.mark.parametrize(
    ("bad_from", "bad_until", "expect_default"),
    [(5, 7, False), (5, 8, True), (5, 15, True)],
    ids=["two-invalid-below-streak", "three-invalid-reaches-streak", "long-invalid-run"],
)
def test_invalid_streak_switches_to_default_until_valid(
    bad_from: float, bad_until: float, expect_default: bool
) -> None:
    agent = Scripted(validate=lambda t, obs: not (bad_from <= t < bad_until))
    r = run(agent, 25)
    during = reasons_between(r, bad_from, bad_until)
    assert (("default", "invalid-data") in during) == expect_default
    assert reasons_between(r, bad_until, bad_until + 1) == {("model", None)}


# -- 3. bad model ---------------------------------------------------------------------


def test_failing_model_assessment_means_defaults_while_learning_continues() -> None:
    agent = Scripted(assess_model=lambda t: Verdict.fail("error too high") if 10 <= t < 30 else True)
    r = run(agent, 45)
    # assess ticks at 5,10,...: fails at 10 (effective at once), passes again at 30
    assert reasons_between(r, 11, 30) == {("default", "model-assessment")}
    assert reasons_between(r, 31, 45) == {("model", None)}
    learned_during = [o for o in agent.learned if 11 <= o["t"] < 30]
    assert len(learned_during) == 19


@pytest.mark.parametrize("bad", [None, "yes", 0], ids=["none", "string", "int"])
def test_non_verdict_from_assess_model_counts_as_failure(bad: Any) -> None:
    r = run(Scripted(assess_model=lambda t: bad), 12)
    assert ("default", "model-assessment") in reasons_between(r, 6, 12)


# -- 4. harm --------------------------------------------------------------------------


def test_harm_mitigates_at_once_then_backs_off_doubling() -> None:
    # performance fails at the assess ticks 10, 15, 20 (consecutive), healthy afterwards
    agent = Scripted(assess_performance=lambda t: Verdict.fail("psi high") if t in (10, 15, 20) else True)
    r = run(agent, 80)
    assert agent.mitigations == [10.0, 15.0, 20.0]
    # backoff 4 s from 10, 8 s from 15 (consecutive), 16 s from 20 (capped at 16)
    assert reasons_between(r, 11, 14) == {("default", "backoff")}
    assert reasons_between(r, 16, 23) == {("default", "backoff")}
    assert reasons_between(r, 21, 36) == {("default", "backoff")}
    assert reasons_between(r, 36, 40) == {("model", None)}


def test_backoff_resets_after_healthy_period() -> None:
    agent = Scripted(assess_performance=lambda t: Verdict.fail("slow") if t in (10, 60) else True)
    r = run(agent, 70)
    # 10 -> 4 s; healthy from 14 to 60 (>= backoff_max=16) -> reset: 60 -> 4 s again
    assert reasons_between(r, 61, 64) == {("default", "backoff")}
    assert reasons_between(r, 64, 70) == {("model", None)}


# -- 5. errors and hangs --------------------------------------------------------------


@pytest.mark.parametrize("callback", ["collect", "validate", "learn", "predict"], ids=lambda c: f"{c}-raises")
def test_model_side_exception_gives_default_error(callback: str) -> None:
    fails = {
        callback: lambda t, *a: (
            (_ for _ in ()).throw(RuntimeError("boom"))
            if 10 <= t < 11
            else ({"t": t, "x": 1.0} if callback == "collect" else True if callback == "validate" else "v")
        )
    }
    agent = Scripted(**fails)
    r = run(agent, 20)
    assert reasons_between(r, 10, 11) == {("default", "error")}
    assert r.state == "stopped"
    assert reasons_between(r, 12, 20) == {("model", None)}


def test_model_side_hang_times_out_into_default_error() -> None:
    agent = Scripted(learn=lambda t, obs: agent.ctx.clock.consume(math.inf) if 10 <= t < 11 else None)
    r = run(agent, 20)
    # the error takes effect at the timeout (10.5); the lane stays hung (never returns)
    assert ("default", "error") in reasons_between(r, 11, 12)
    assert all(p.source == "default" for t, p in r.actions if t >= 11)
    assert ("learn", "timeout") in [(n, o) for _, n, o in r.calls]


def test_really_hung_callback_is_interrupted_in_virtual_time() -> None:
    def spin(t: float, obs: Any) -> None:
        if 3 <= t < 4:
            while True:
                pass

    r = run(Scripted(learn=spin), 8)
    assert ("learn", "timeout") in [(n, o) for _, n, o in r.calls]
    assert r.state == "stopped"


@pytest.mark.parametrize("callback", ["act", "assess_performance"], ids=lambda c: f"{c}-raises")
def test_actuator_side_failure_triggers_mitigate(callback: str) -> None:
    agent = Scripted(**{callback: lambda t, *a: (_ for _ in ()).throw(OSError("EIO")) if t == 10 else True})
    run(agent, 20)
    assert agent.mitigations == [10.0]


def test_hung_act_triggers_mitigate_at_its_timeout() -> None:
    agent = Scripted(act=lambda t, p: agent.ctx.clock.consume(math.inf) if t == 10 else None)
    run(agent, 20)
    assert agent.mitigations == [10.5]


def test_repeated_errors_quarantine_the_agent_and_restore_its_journal(tmp_path: Path) -> None:
    from sol.actuators.restorers import default_restorers
    from sol.safety.journal import UndoJournal

    knob = tmp_path / "knob"
    knob.write_text("original\n")

    def act(t: float, p: Prediction) -> None:
        journal.record("scripted", "file", str(knob), "original")
        knob.write_text("changed\n")
        if t >= 10:
            raise OSError("EIO")

    journal = UndoJournal.open(tmp_path / "undo.journal")
    agent = Scripted(act=act)
    with capture_logs() as logs:
        r = run(agent, 60, journal=journal, restorers=default_restorers())
    assert r.state == "quarantined"
    assert knob.read_text().strip() == "original"
    assert agent.cleaned == 1
    quarantined = [e for e in logs if e["event"] == "agent.quarantined"]
    assert len(quarantined) == 1 and "5 errors" in quarantined[0]["reason"]
    # no calls after quarantine (at t=14: errors at 10..14)
    assert max(t for t, _, _ in r.calls) <= 14.0
    assert journal.open_records() == []
    journal.close()


def test_errors_spread_beyond_the_window_do_not_quarantine() -> None:
    agent = Scripted(predict=lambda t: (_ for _ in ()).throw(ValueError("x")) if int(t) % 10 == 0 else "v")
    r = run(agent, 120, schedule=SCHED.replace(error_window=30.0, max_errors=5))
    assert r.state == "stopped"


def test_failing_setup_leaves_agent_out_and_reports() -> None:
    class BadSetup(Scripted):
        def setup(self, ctx: Any) -> None:
            raise RuntimeError("no such cgroup")

    with capture_logs() as logs:
        r = run(BadSetup(), 10)
    assert r.state == "failed" and "no such cgroup" in str(r.status["reason"])
    assert r.actions == []
    assert any(e["event"] == "agent.setup_failed" for e in logs)


# -- 6. budget ------------------------------------------------------------------------


def test_model_past_cpu_budget_is_deferred_and_predictions_age_into_defaults() -> None:
    # each learn costs 0.4 s of CPU at 1 Hz: 40 % of a core against a 10 % budget
    agent = Scripted(learn=lambda t, obs: agent.ctx.clock.consume(0.4))
    with capture_logs() as logs:
        r = run(agent, 120)
    learned = len(agent.learned)
    assert learned < 40, learned  # ~ budget 0.1 * 120 s / 0.4 s + initial bucket
    assert ("default", "expired") in r.sources()
    assert any(e["event"] == "agent.budget_exceeded" for e in logs)


def test_actuator_side_is_never_starved_by_the_model() -> None:
    agent = Scripted(learn=lambda t, obs: agent.ctx.clock.consume(0.45))
    r = run(agent, 60, schedule=SCHED.replace(cpu_budget=16.0))
    act_times = [t for t, _ in r.actions]
    assert act_times == [float(i) for i in range(60)]


# -- 7. stop --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "restored"), [("auto", True), ("not_on_exit", False)], ids=["auto", "not-on-exit"]
)
def test_stop_cleans_up_and_rolls_back_by_policy(tmp_path: Path, policy: str, restored: bool) -> None:
    from sol.actuators.restorers import default_restorers
    from sol.log import get_logger
    from sol.runtime.base import AgentSpec
    from sol.runtime.virtual import VirtualExecutor
    from sol.safety.journal import UndoJournal

    knob = tmp_path / "knob"
    knob.write_text("before\n")
    journal = UndoJournal.open(tmp_path / "undo.journal")

    def act(t: float, p: Prediction) -> None:
        journal.record("scripted", "file", str(knob), "before")
        knob.write_text("after\n")

    agent = Scripted(act=act)
    ex = VirtualExecutor(
        [AgentSpec(agent)],
        backend=NullBackend(),
        log=get_logger(),
        journal=journal,
        restorers=default_restorers(),
        rollback=policy,
    )  # type: ignore[arg-type]
    ex.run(5)
    assert agent.cleaned == 1
    assert knob.read_text().strip() == ("before" if restored else "after")
    assert journal.open_records() == []
    journal.close()


# -- determinism ----------------------------------------------------------------------


def test_same_seed_same_calls() -> None:
    mk = lambda: Scripted(assess_model=lambda t: t % 20 < 15, validate=lambda t, o: int(t) % 7 != 0)  # noqa: E731
    a, b = run(mk(), 100), run(mk(), 100)
    assert a.calls == b.calls and a.actions == b.actions


def test_model_call_that_never_returns_quarantines_after_error_window() -> None:
    agent = Scripted(learn=lambda t, obs: agent.ctx.clock.consume(math.inf) if t >= 10 else None)
    r = run(agent, 120)
    # timeout at 10.5, error_window 30 s: quarantined at the first model tick after 40.5
    assert r.state == "quarantined" and "hung" in str(r.status["reason"])
    assert agent.cleaned == 1
    assert max(t for t, _ in r.actions) < 42


def test_failed_quarantine_restore_is_retried_until_the_host_accepts_it(tmp_path: Path) -> None:
    from sol.safety.journal import UndoJournal

    knob = tmp_path / "knob"
    knob.write_text("original\n")
    refused_until = 30.0
    attempts: list[float] = []

    def flaky_restore(target: str, before: Any) -> None:
        now = agent.ctx.clock.now()
        attempts.append(now)
        if now < refused_until:
            raise PermissionError(1, "Operation not permitted", target)
        Path(target).write_text(f"{before}\n")

    def act(t: float, p: Prediction) -> None:
        journal.record("scripted", "flaky", str(knob), "original")
        knob.write_text("changed\n")
        if t >= 10:
            raise OSError("EIO")

    journal = UndoJournal.open(tmp_path / "undo.journal")
    agent = Scripted(act=act)
    with capture_logs() as logs:
        r = run(agent, 60, journal=journal, restorers={"flaky": flaky_restore})
    assert r.state == "quarantined"
    assert knob.read_text().strip() == "original"
    # quarantined at 14; refused until 30; retried with backoff (4, 8, 16 s) in between
    assert attempts[0] == 14.0 and any(a >= refused_until for a in attempts)
    assert 2 <= len(attempts) <= 6
    assert journal.open_records() == []
    assert any(e["event"] == "agent.restored" and e.get("complete") is False for e in logs)
    journal.close()
