"""DESIGN §4's guarantees, checked on the record of a run with safeguards on.

Every check reads what the runtime recorded (``actions``: what ``act()`` received, ``calls``:
every callback and its outcome) and what the harness saw from outside the agent (the
verdicts of ``validate``/``assess_*``, the undo journal, the node's knobs). A violation names
the guarantee, the virtual time and what happened. Timing follows the runtime's model: a
model-side result takes effect when its call ends; an actuator-side failure is handled at
the call's end or at its timeout.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from sol.fault_injection.failpoints import MODEL_SIDE
from sol.fault_injection.faults import Fault, Timeline
from sol.fault_injection.harness import RunRecord, response

__all__ = ["Violation", "check_invariants"]

_EPS = 1e-6
#: report at most this many violations of one guarantee (then a count)
_CAP = 3


@dataclass(frozen=True, slots=True)
class Violation:
    guarantee: str
    t: float | None
    detail: str

    def __str__(self) -> str:
        at = f" at t={self.t:.3f}" if self.t is not None else ""
        return f"[{self.guarantee}]{at}: {self.detail}"


class _Found:
    def __init__(self) -> None:
        self.items: list[Violation] = []
        self._counts: dict[str, int] = {}

    def add(self, guarantee: str, t: float | None, detail: str) -> None:
        n = self._counts.get(guarantee, 0) + 1
        self._counts[guarantee] = n
        if n <= _CAP:
            self.items.append(Violation(guarantee, t, detail))

    def result(self) -> list[Violation]:
        out = list(self.items)
        for g, n in self._counts.items():
            if n > _CAP:
                out.append(Violation(g, None, f"... and {n - _CAP} more"))
        return out


def _life_end(rec: RunRecord, t: float) -> float:
    """When the daemon life that ``t`` falls in ended: the kill, for a time up to it. The
    harness restarts a killed daemon as systemd would, and the new process knows nothing of
    the dead one's verdicts or invalid streaks: its guarantees start afresh."""
    if rec.killed_at is not None and t <= rec.killed_at:
        return rec.killed_at
    return float("inf")


def _defaults_between(rec: RunRecord, t0: float, t1: float, found: _Found, guarantee: str, why: str) -> None:
    for t, p in rec.actions:
        if t0 <= t < t1 and p.source == "model":
            found.add(guarantee, t, f"a model prediction was applied while {why}")


def check_expiry(rec: RunRecord, found: _Found) -> None:
    """1. No model prediction older than ``prediction_ttl`` is ever applied.

    ``now >= expires_at`` is the runtime's own test, on the very numbers it used (so float
    noise at the boundary is not a violation); a prediction whose ``expires_at`` is later
    than ``created_at + prediction_ttl`` is flagged too.
    """
    ttl = rec.schedule.prediction_ttl
    for t, p in rec.actions:
        if p.source == "model" and (t >= p.expires_at or t - p.created_at > ttl + _EPS):
            made = f"t={p.created_at:.3f}"
            found.add("1-expiry", t, f"applied a model prediction made at {made} (ttl {ttl:g}s)")


def check_bad_data(rec: RunRecord, found: _Found) -> None:
    """2. learn() never sees a rejected observation; a streak of them gives defaults."""
    for t in rec.probe.bad_learns:
        found.add("2-bad-data", t, "learn() was called with an observation validate() rejected")
    need = rec.schedule.max_invalid_streak
    streak = 0
    vals = rec.probe.validations
    for i, (t, ok) in enumerate(vals):
        if i > 0 and _life_end(rec, vals[i - 1][0]) < t:
            streak = 0  # a restarted daemon counts its own streak
        streak = 0 if ok else streak + 1
        if streak == need:
            until = next((tv for tv, okv in vals[i + 1 :] if okv), float("inf"))
            until = min(until, _life_end(rec, t))
            _defaults_between(
                rec, t, until, found, "2-bad-data", f"{need}+ observations in a row were invalid"
            )


def check_bad_model(rec: RunRecord, found: _Found) -> None:
    """3. While assess_model() fails, predictions are default."""
    verdicts = rec.probe.model_verdicts
    for i, (t, ok) in enumerate(verdicts):
        if ok or (i > 0 and not verdicts[i - 1][1] and _life_end(rec, verdicts[i - 1][0]) >= t):
            continue
        until = next((tv for tv, okv in verdicts[i + 1 :] if okv), float("inf"))
        until = min(until, _life_end(rec, t))
        _defaults_between(rec, t, until, found, "3-bad-model", "assess_model() failed")


def check_harm(rec: RunRecord, found: _Found) -> None:
    """4. A failed assess_performance(): mitigate() within one assess period, then a backoff."""
    s = rec.schedule
    mitigations = sorted(t for t, n, _ in rec.calls if n in ("mitigate", "clean_up"))
    for t, ok in rec.probe.perf_verdicts:
        if ok:
            continue
        i = bisect.bisect_left(mitigations, t - _EPS)
        if i == len(mitigations) or mitigations[i] > t + s.assess_every + s.callback_timeout + _EPS:
            found.add(
                "4-harm",
                t,
                f"assess_performance() failed and mitigate() did not run within {s.assess_every:g}s",
            )
        for ta, p in rec.actions:
            if t < ta < t + s.backoff_initial - _EPS and p.source == "model":
                found.add(
                    "4-harm", ta, f"a model prediction was applied inside the backoff after harm at t={t:.3f}"
                )


def check_errors(rec: RunRecord, found: _Found) -> None:
    """5. A failed model-side call: no older model decision applied after it; a failed
    actuator-side call: mitigate() (or the quarantine's clean_up()); repeated errors quarantine."""
    s = rec.schedule
    handled = sorted(t for t, n, _ in rec.calls if n in ("mitigate", "clean_up"))
    errors: list[float] = []
    for t, name, outcome in rec.calls:
        if outcome == "ok" or name in ("setup", "clean_up"):
            continue
        errors.append(t)
        if name in MODEL_SIDE:
            effective = t + s.callback_timeout
            for ta, p in rec.actions:
                if ta > effective + _EPS and p.source == "model" and p.created_at <= t + _EPS:
                    found.add(
                        "5-errors",
                        ta,
                        f"after {name}() failed at t={t:.3f}, an older model decision was applied",
                    )
                    break
        elif name in ("act", "default_predict", "assess_performance"):
            i = bisect.bisect_left(handled, t - _EPS)
            if i == len(handled) or handled[i] > t + s.callback_timeout + _EPS:
                found.add("5-errors", t, f"{name}() failed ({outcome}) and mitigate() did not follow")
    errors.sort()
    k = s.max_errors
    required = any(
        errors[i + k - 1] - errors[i] < s.error_window - s.callback_timeout
        for i in range(len(errors) - k + 1)
    )
    if required and rec.state != "quarantined" and rec.killed_at is None:
        found.add(
            "5-quarantine",
            None,
            f"{len(errors)} errors, {k} within {s.error_window:g}s, but the agent ended {rec.state}",
        )
    if rec.state == "quarantined":
        if not rec.event_times("agent.quarantined"):
            found.add("5-quarantine", None, "quarantined without an agent.quarantined log event")
        names = [n for _, n, _ in rec.calls]
        if "clean_up" not in names:
            found.add("5-quarantine", rec.quarantined_at, "quarantined but clean_up() never ran")
        else:
            last = len(names) - 1 - names[::-1].index("clean_up")
            after = names[last + 1 :]
            if after:
                found.add(
                    "5-quarantine", rec.quarantined_at, f"callbacks ran after the quarantine: {after[:5]}"
                )
        _check_journal(rec, found, "5-quarantine")


def _check_journal(rec: RunRecord, found: _Found, guarantee: str) -> None:
    if rec.left_open and not (rec.final_restore_ok and rec.knobs_restored):
        found.add(
            guarantee,
            None,
            f"{rec.left_open} undo record(s) left open and `sol restore` could not put them back",
        )
    elif rec.left_open and not rec.event_times("journal.restore_failed"):
        found.add(guarantee, None, f"{rec.left_open} undo record(s) left open although no restore failed")


def check_stop(rec: RunRecord, found: _Found) -> None:
    """7. On stop, clean_up() runs and the undo journal is rolled back."""
    if rec.state != "stopped":
        return
    names = [n for _, n, _ in rec.calls]
    if not names or names[-1] != "clean_up":
        found.add("7-stop", None, f"the last callback was {names[-1] if names else None!r}, not clean_up()")
    if rec.left_open:
        found.add("7-stop", None, f"{rec.left_open} undo record(s) still open after stop")


def check_crash(rec: RunRecord, found: _Found) -> None:
    """8. After a SIGKILL, `sol restore` puts every before-image back."""
    if rec.killed_at is None:
        return
    if not rec.restore_ok:
        found.add("8-crash", rec.killed_at, "`sol restore` after the kill failed for some record")
    if not rec.knobs_restored:
        found.add("8-crash", rec.killed_at, "a knob does not hold its before-image after `sol restore`")


def check_response(rec: RunRecord, fault: Fault, timeline: Timeline, found: _Found) -> None:
    """The fault's required runtime response (when the runtime itself can see the fault)."""
    if not fault.requires or not rec.exercised:
        return
    seen = response(rec, timeline)
    if not set(seen) & fault.requires:
        found.add(
            "response",
            timeline.onset,
            f"expected one of {sorted(fault.requires)} after the fault, got {dict(seen) or 'nothing'}",
        )


def check_invariants(rec: RunRecord, fault: Fault | None, timeline: Timeline) -> list[Violation]:
    """Every §4 guarantee (and the fault's required response) on a safeguarded run."""
    if not rec.safeguards:
        raise ValueError("invariants hold with safeguards on; this run had them off")
    found = _Found()
    if rec.setup_error is not None:
        found.add("setup", 0.0, rec.setup_error)
        return found.result()
    check_expiry(rec, found)
    check_bad_data(rec, found)
    check_bad_model(rec, found)
    check_harm(rec, found)
    check_errors(rec, found)
    check_stop(rec, found)
    check_crash(rec, found)
    if fault is not None:
        check_response(rec, fault, timeline, found)
    return found.result()
