"""The invariant checks flag each broken DESIGN §4 guarantee, and only those.

Records are written by hand (table-driven): a healthy history, then one thing broken. The last
test breaks the real runtime (expiry) and shows the harness catches it end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sol.fault_injection.faults import Timeline, get_fault
from sol.fault_injection.harness import RunRecord, run_cell
from sol.fault_injection.invariants import check_invariants
from sol.runtime.runner import AgentRunner
from sol.sdk import Prediction, Schedule

SCHED = Schedule(
    collect_every=1.0,
    act_every=1.0,
    prediction_ttl=3.0,
    assess_every=5.0,
    backoff_initial=2.0,
    callback_timeout=0.5,
    max_errors=3,
    error_window=30.0,
)
TL = Timeline(duration=20.0, onset=5.0, length=10.0, surge=1.0)


def model(t: float, created: float | None = None) -> tuple[float, Prediction]:
    c = t if created is None else created
    return (t, Prediction(1, "model", None, c, c + SCHED.prediction_ttl))


def default(t: float, reason: str) -> tuple[float, Prediction]:
    return (t, Prediction(0, "default", reason, t, t + SCHED.prediction_ttl))


def healthy() -> RunRecord:
    rec = RunRecord("tester", None, True, 1, SCHED, state="stopped")
    for i in range(10):
        t = float(i)
        rec.calls += [(t, n, "ok") for n in ("collect", "validate", "learn", "predict", "act")]
        rec.probe.validations.append((t, True))
        rec.actions.append(model(t))
    rec.calls.append((10.0, "clean_up", "ok"))
    return rec


def _replace_action(rec: RunRecord, t: float, action: tuple[float, Prediction]) -> None:
    rec.actions = [a for a in rec.actions if a[0] != t] + [action]
    rec.actions.sort(key=lambda a: a[0])


def stale(rec: RunRecord) -> None:
    _replace_action(rec, 6.0, model(6.0, created=2.0))


def learned_invalid(rec: RunRecord) -> None:
    rec.probe.bad_learns.append(3.0)


def invalid_streak(rec: RunRecord) -> None:
    rec.probe.validations[2:5] = [(2.0, False), (3.0, False), (4.0, False)]
    # 4.0 is the third invalid one: the action at 4.0 must be default, it was not


def bad_model(rec: RunRecord) -> None:
    rec.probe.model_verdicts = [(5.0, False), (8.0, True)]


def harm_without_mitigate(rec: RunRecord) -> None:
    rec.probe.perf_verdicts = [(5.0, False)]


def model_error_then_older_decision(rec: RunRecord) -> None:
    rec.calls.insert(-1, (5.0, "learn", "error: boom"))
    _replace_action(rec, 6.0, model(6.0, created=4.5))


def act_error_without_mitigate(rec: RunRecord) -> None:
    rec.calls.insert(-1, (7.0, "act", "error: EIO"))


def errors_without_quarantine(rec: RunRecord) -> None:
    for t in (3.0, 4.0, 5.0):
        rec.calls.insert(-1, (t, "act", "error: EIO"))
        rec.calls.insert(-1, (t, "mitigate", "ok"))


def no_clean_up(rec: RunRecord) -> None:
    rec.calls.pop()


def records_left_open(rec: RunRecord) -> None:
    rec.left_open = 1


def kill_not_restored(rec: RunRecord) -> None:
    rec.killed_at, rec.restore_ok, rec.knobs_restored = 5.0, False, False


def quarantine_without_clean_up(rec: RunRecord) -> None:
    rec.state = "quarantined"
    rec.events.append((5.0, "agent.quarantined", {}))
    rec.calls.pop()


@pytest.mark.parametrize(
    ("breakage", "guarantee"),
    [
        (stale, "1-expiry"),
        (learned_invalid, "2-bad-data"),
        (invalid_streak, "2-bad-data"),
        (bad_model, "3-bad-model"),
        (harm_without_mitigate, "4-harm"),
        (model_error_then_older_decision, "5-errors"),
        (act_error_without_mitigate, "5-errors"),
        (errors_without_quarantine, "5-quarantine"),
        (quarantine_without_clean_up, "5-quarantine"),
        (no_clean_up, "7-stop"),
        (records_left_open, "7-stop"),
        (kill_not_restored, "8-crash"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_each_broken_guarantee_is_flagged(breakage: Callable[[RunRecord], None], guarantee: str) -> None:
    rec = healthy()
    breakage(rec)
    found = check_invariants(rec, None, TL)
    assert {v.guarantee for v in found} == {guarantee}, found


@pytest.mark.parametrize(
    ("verdicts", "validations", "flagged"),
    [
        pytest.param([(3.0, False)], [], False, id="a-dead-daemons-failed-assessment"),
        pytest.param([], [(3.0, False), (4.0, False), (6.0, False)], False, id="a-streak-across-the-restart"),
        pytest.param([(3.0, False), (6.0, False)], [], True, id="the-restarted-daemons-own-failure"),
    ],
)
def test_a_killed_daemons_verdicts_do_not_bind_the_restarted_one(
    verdicts: list[tuple[float, bool]], validations: list[tuple[float, bool]], flagged: bool
) -> None:
    # proc.sigkill: the daemon dies at 4.5 with its model rejected (or two readings invalid)
    # and is restarted at 5.5. The new process has assessed nothing yet and counts its own
    # invalid streak: its first acts are its model's, as for any fresh start (found when
    # cpu_harvest's window became 200 ms and the reduced matrix killed it while its model was
    # rejected).
    rec = healthy()
    rec.killed_at, rec.restore_ok, rec.knobs_restored = 4.5, True, True
    rec.probe.model_verdicts = verdicts
    for tv, ok in validations:
        rec.probe.validations = [(t, ok if t == tv else v) for t, v in rec.probe.validations]
    rec.actions = [a for a in rec.actions if not 4.5 < a[0] < 5.5]  # nothing runs while dead
    rec.probe.validations = [v for v in rec.probe.validations if not 4.5 < v[0] < 5.5]
    rec.calls = [c for c in rec.calls if not 4.5 < c[0] < 5.5]
    for t in (3.0, 4.0):
        _replace_action(rec, t, default(t, "model-assessment" if verdicts else "invalid-data"))
    found = check_invariants(rec, None, TL)
    if flagged:  # a failure of the new daemon binds it: 6.0 and later must be default
        assert {v.guarantee for v in found} == {"3-bad-model"} and found[0].t == 6.0, found
    else:
        assert found == [], found


def test_a_healthy_record_passes() -> None:
    assert check_invariants(healthy(), None, TL) == []


def test_a_required_response_that_never_came_is_flagged() -> None:
    rec = healthy()
    rec.exercised = True
    found = check_invariants(rec, get_fault("proc.crash_loop"), TL)
    assert [v.guarantee for v in found] == ["response"]


def test_invariants_are_for_safeguarded_runs_only() -> None:
    rec = healthy()
    rec.safeguards = False
    with pytest.raises(ValueError, match="safeguards on"):
        check_invariants(rec, None, TL)


def test_violations_of_one_guarantee_are_capped() -> None:
    rec = healthy()
    rec.probe.bad_learns = [float(i) for i in range(10)]
    found = check_invariants(rec, None, TL)
    assert len(found) == 4 and found[-1].detail == "... and 7 more"


def test_the_harness_catches_a_runtime_that_applies_expired_predictions(monkeypatch: Any) -> None:
    """Break guarantee 1 in the real runtime: the hung learner's last decision stays applied."""
    from sol.agents.example_ewma import ExampleEwmaAgent

    original = AgentRunner.select

    def lenient(self: AgentRunner, now: float) -> Prediction:
        chosen = original(self, now)
        if chosen.reason in ("expired", "error"):
            with self.lock:
                for entry in reversed(self._published):
                    if entry.effective <= now and entry.prediction.source == "model":
                        return entry.prediction
        return chosen

    monkeypatch.setattr(AgentRunner, "select", lenient)
    cell = run_cell(ExampleEwmaAgent, get_fault("model.learn_hang"), timeline=Timeline(120.0, 30.0, 60.0))
    assert "1-expiry" in {v.guarantee for v in cell.violations}
