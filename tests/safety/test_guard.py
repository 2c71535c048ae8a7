"""The actuation guard: bounds, step and rate limits, non-finite proposals (DESIGN §5)."""

from __future__ import annotations

import doctest
import math

import pytest

import sol.safety.guard as guard_module
from sol.safety.guard import ActuationGuard, GuardDecision

INF = math.inf
NAN = math.nan


def test_module_examples_run() -> None:
    assert doctest.testmod(guard_module).failed == 0


# (lo, hi, max_step, min_interval), applied writes before the check, (current, proposed, now),
# expected (action, value), a fragment of the reason
CASES = [
    ((0, 100, None, None), [], (50, 70, 0.0), ("allow", 70.0), None),
    ((0, 100, None, None), [], (50, 100, 0.0), ("allow", 100.0), None),
    ((0, 100, None, None), [], (50, 170, 0.0), ("clamp", 100.0), "above hi 100"),
    ((0, 100, None, None), [], (50, -3, 0.0), ("clamp", 0.0), "below lo 0"),
    ((None, None, 10, None), [], (50, 75, 0.0), ("clamp", 60.0), "step limited to 10 from 50"),
    ((None, None, 10, None), [], (50, 20, 0.0), ("clamp", 40.0), "step limited to 10 from 50"),
    ((None, None, 10, None), [], (50, 60, 0.0), ("allow", 60.0), None),
    ((None, None, 10, None), [(30, 0.0)], (None, 90, 1.0), ("clamp", 40.0), "from 30"),
    ((None, None, 10, None), [], (None, 90, 1.0), ("allow", 90.0), None),
    ((None, None, 10, None), [(30, 0.0)], (NAN, 90, 1.0), ("clamp", 40.0), "from 30"),
    ((0, 100, 10, None), [], (95, 200, 0.0), ("clamp", 100.0), "above hi 100"),
    ((10, 100, 5, None), [], (0, 50, 0.0), ("clamp", 10.0), "below lo 10"),
    ((10, 100, 5, None), [], (500, 50, 0.0), ("clamp", 100.0), "above hi 100"),
    ((None, None, None, 1.0), [(5, 10.0)], (5, 6, 10.5), ("reject", None), "rate: last write 0.5s ago"),
    ((None, None, None, 1.0), [(5, 10.0)], (5, 6, 11.0), ("allow", 6.0), None),
    ((None, None, None, 1.0), [(5, 10.0)], (5, 6, 12.0), ("allow", 6.0), None),
    ((None, None, None, 1.0), [], (5, 6, 0.0), ("allow", 6.0), None),
    ((0, 100, 10, 1.0), [], (50, NAN, 0.0), ("reject", None), "non-finite"),
    ((0, 100, 10, 1.0), [], (50, INF, 0.0), ("reject", None), "non-finite"),
    ((0, 100, 10, 1.0), [], (50, -INF, 0.0), ("reject", None), "non-finite"),
    ((None, None, None, None), [], (None, 1e18, 0.0), ("allow", 1e18), None),
]
IDS = [
    "inside-bounds-allowed",
    "at-hi-allowed",
    "above-hi-clamped",
    "below-lo-clamped",
    "step-up-limited",
    "step-down-limited",
    "exactly-one-step-allowed",
    "unknown-current-steps-from-last-applied",
    "unknown-current-no-history-no-step-limit",
    "nan-current-steps-from-last-applied",
    "bounds-then-step",
    "current-below-lo-jumps-into-bounds",
    "current-above-hi-jumps-into-bounds",
    "within-min-interval-rejected",
    "exactly-min-interval-allowed",
    "after-min-interval-allowed",
    "first-write-never-rate-limited",
    "nan-rejected",
    "inf-rejected",
    "minus-inf-rejected",
    "no-limits-allow-anything-finite",
]


@pytest.mark.parametrize(("limits", "history", "call", "expected", "reason"), CASES, ids=IDS)
def test_guard_decision(
    limits: tuple[float | None, float | None, float | None, float | None],
    history: list[tuple[float, float]],
    call: tuple[float | None, float, float],
    expected: tuple[str, float | None],
    reason: str | None,
) -> None:
    guard = ActuationGuard(*limits)
    for value, at in history:
        guard.applied(value, at)
    decision = guard.check(*call)
    assert (decision.action, decision.value) == expected
    if reason is None:
        assert decision.reason is None
    else:
        assert decision.reason is not None and reason in decision.reason
    lo, hi = limits[0], limits[1]
    if decision.value is not None:
        assert lo is None or decision.value >= lo
        assert hi is None or decision.value <= hi


def test_a_rejected_proposal_does_not_count_as_applied() -> None:
    guard = ActuationGuard(None, None, None, min_interval=1.0)
    assert guard.check(None, NAN, 0.0).rejected
    assert guard.check(None, 1.0, 0.1).allowed, "only applied() starts the rate window"


@pytest.mark.parametrize(
    ("decision", "flags"),
    [
        (GuardDecision("allow", 1.0, None), (True, False, False)),
        (GuardDecision("clamp", 1.0, "x"), (False, True, False)),
        (GuardDecision("reject", None, "x"), (False, False, True)),
    ],
    ids=["allow", "clamp", "reject"],
)
def test_decision_flags(decision: GuardDecision, flags: tuple[bool, bool, bool]) -> None:
    assert (decision.allowed, decision.clamped, decision.rejected) == flags


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lo": 10, "hi": 1}, "lo .* <= hi"),
        ({"max_step": 0}, "max_step must be > 0"),
        ({"max_step": -1}, "max_step must be > 0"),
        ({"min_interval": -0.5}, "min_interval must be >= 0"),
        ({"lo": NAN}, "lo must be a finite number"),
        ({"hi": INF}, "hi must be a finite number"),
    ],
    ids=["lo-above-hi", "zero-step", "negative-step", "negative-interval", "nan-bound", "inf-bound"],
)
def test_impossible_limits_are_refused_at_construction(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ActuationGuard(**kwargs)
