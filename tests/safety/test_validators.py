"""sol.safety.validators: every bad observation fails with a reason a human can read."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sol.safety.validators
from sol.safety.validators import Fresh, NotFrozen, all_of, finite, in_range
from sol.sdk import Verdict

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("value", "lo", "hi", "reason"),
    [
        pytest.param(0.5, 0.0, 1.0, None, id="inside"),
        pytest.param(0.0, 0.0, 1.0, None, id="lower-bound-inclusive"),
        pytest.param(1, 0.0, 1.0, None, id="upper-bound-inclusive-int"),
        pytest.param(np.float32(0.5), 0.0, 1.0, None, id="numpy-scalar"),
        pytest.param(5.0, None, None, None, id="unbounded"),
        pytest.param(1.5, 0.0, 1.0, "util = 1.5 is outside [0.0, 1.0]", id="above"),
        pytest.param(-0.1, 0.0, 1.0, "util = -0.1 is outside [0.0, 1.0]", id="below"),
        pytest.param(-1, 0, None, "util = -1 is below 0", id="below-open-top"),
        pytest.param(7, None, 4, "util = 7 is above 4", id="above-open-bottom"),
        pytest.param(NAN, 0.0, 1.0, "util is nan, not in [0.0, 1.0]", id="nan-never-in-range"),
        pytest.param(NAN, None, None, "util is nan, not in [-inf, inf]", id="nan-unbounded-fails"),
        pytest.param(INF, 0.0, None, None, id="inf-with-open-top"),
        pytest.param(-INF, 0.0, None, "util = -inf is below 0.0", id="neg-inf-below"),
        pytest.param(None, 0.0, 1.0, "util is not a number: None", id="none"),
        pytest.param("0.5", 0.0, 1.0, "util is not a number: '0.5'", id="string"),
        pytest.param(True, 0.0, 1.0, "util is not a number: True", id="bool"),
    ],
)
def test_in_range(value: object, lo: float | None, hi: float | None, reason: str | None) -> None:
    verdict = in_range(value, lo, hi, "util")
    assert bool(verdict) is (reason is None)
    assert verdict.reason == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(1.0, None, id="number"),
        pytest.param(0, None, id="int"),
        pytest.param([1, 2.5, -3], None, id="list"),
        pytest.param((1.0, 2.0), None, id="tuple"),
        pytest.param({"a": 1.0, "b": [2.0, {"c": 3}]}, None, id="nested"),
        pytest.param({}, None, id="empty-mapping"),
        pytest.param(np.array([[1.0, 2.0], [3.0, 4.0]]), None, id="array"),
        pytest.param(np.array([]), None, id="empty-array"),
        pytest.param(NAN, "obs is nan", id="nan"),
        pytest.param(-INF, "obs is -inf", id="neg-inf"),
        pytest.param([1.0, INF], "obs[1] is inf", id="inf-in-list"),
        pytest.param({"cpu": {"p99": NAN}}, "obs['cpu']['p99'] is nan", id="nan-nested-mapping"),
        pytest.param(np.array([1.0, 2.0, np.nan]), "obs[2] is nan", id="nan-in-array"),
        pytest.param(np.array([[1.0, 2.0], [np.inf, 4.0]]), "obs[(1, 0)] is inf", id="inf-in-2d-array"),
        pytest.param(np.array(["a"]), "obs is not a numeric array (dtype <U1)", id="string-array"),
        pytest.param({"cpu": None}, "obs['cpu'] is not a number: None", id="none-in-mapping"),
        pytest.param("1.0", "obs is not a number: '1.0'", id="string"),
    ],
)
def test_finite(value: object, reason: str | None) -> None:
    verdict = finite(value, "obs")
    assert bool(verdict) is (reason is None)
    assert verdict.reason == reason


@pytest.mark.parametrize(
    ("sample_time", "now", "reason"),
    [
        pytest.param(99.0, 100.0, None, id="fresh"),
        pytest.param(98.0, 100.0, None, id="exactly-max-age"),
        pytest.param(100.0, 100.0, None, id="now"),
        pytest.param(97.5, 100.0, "sample is 2.5 s old (max 2 s)", id="stale"),
        pytest.param(100.5, 100.0, "sample timestamp is 0.5 s in the future", id="future"),
        pytest.param(NAN, 100.0, "sample timestamp is not a finite time: nan", id="nan-time"),
        pytest.param(None, 100.0, "sample timestamp is not a finite time: None", id="no-time"),
    ],
)
def test_fresh(sample_time: float, now: float, reason: str | None) -> None:
    verdict = Fresh(max_age=2.0).check(sample_time, now)
    assert bool(verdict) is (reason is None)
    assert verdict.reason == reason


def test_fresh_tolerates_small_future_skew_when_asked() -> None:
    fresh = Fresh(max_age=1.0, future_tolerance=0.1)
    assert fresh.check(100.05, 100.0)
    assert not fresh.check(100.2, 100.0)


@pytest.mark.parametrize(
    ("n", "tolerance", "values", "passed"),
    [
        pytest.param(3, 0.0, [1, 2, 3, 4], [1, 1, 1, 1], id="changing-signal"),
        pytest.param(3, 0.0, [5, 5, 5, 5, 6], [1, 1, 0, 0, 1], id="frozen-then-recovers"),
        pytest.param(3, 0.0, [5, 5, 6, 5, 5], [1, 1, 1, 1, 1], id="run-broken"),
        pytest.param(3, 0.1, [5.0, 5.05, 4.95, 5.2], [1, 1, 0, 1], id="within-tolerance-is-same"),
        pytest.param(3, 0.1, [5.0, 5.08, 5.16, 5.24], [1, 1, 1, 1], id="slow-ramp-is-not-frozen"),
        pytest.param(2, 0.0, [NAN, NAN, NAN], [1, 1, 1], id="nan-never-repeats"),
        pytest.param(2, 0.0, ["idle", "idle", "busy"], [1, 0, 1], id="non-numeric-equality"),
    ],
)
def test_not_frozen(n: int, tolerance: float, values: list[object], passed: list[int]) -> None:
    frozen = NotFrozen(n, tolerance, what="temp")
    assert [int(bool(frozen.check(v))) for v in values] == passed


def test_not_frozen_reason_and_reset() -> None:
    frozen = NotFrozen(2, what="fan rpm")
    frozen.check(1200)
    verdict = frozen.check(1200)
    assert verdict.reason == "fan rpm stuck at 1200 for 2 samples in a row (frozen sensor?)"
    assert frozen.run_length == 2
    frozen.reset()
    assert frozen.run_length == 0
    assert frozen.check(1200)


def test_not_frozen_compares_arrays_without_raising() -> None:
    frozen = NotFrozen(2)
    assert frozen.check(np.array([1, 2]))
    assert frozen.check(np.array([1, 2]))  # ambiguous ==: treated as different, never raises


@pytest.mark.parametrize(
    ("kwargs", "cls"),
    [
        pytest.param({"max_age": 0}, Fresh, id="fresh-zero-age"),
        pytest.param({"max_age": 1, "future_tolerance": -1}, Fresh, id="fresh-negative-tolerance"),
        pytest.param({"n": 1}, NotFrozen, id="frozen-n-1"),
        pytest.param({"n": 3, "tolerance": NAN}, NotFrozen, id="frozen-nan-tolerance"),
    ],
)
def test_nonsense_parameters_are_rejected(kwargs: dict[str, float], cls: type) -> None:
    with pytest.raises(ValueError):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("verdicts", "reason"),
    [
        pytest.param([], None, id="empty"),
        pytest.param([Verdict.ok(), True], None, id="all-pass"),
        pytest.param([Verdict.ok(), Verdict.fail("a"), Verdict.fail("b")], "a", id="first-failure"),
        pytest.param([True, False], "validator returned False", id="plain-false"),
    ],
)
def test_all_of(verdicts: list[Verdict | bool], reason: str | None) -> None:
    verdict = all_of(*verdicts)
    assert bool(verdict) is (reason is None)
    assert verdict.reason == reason


def test_doctests() -> None:
    result = doctest.testmod(sol.safety.validators)
    assert result.attempted > 0 and result.failed == 0


_leaf = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.booleans(),
)
_nested = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.tuples(kids, kids),
        st.dictionaries(st.text(max_size=3), kids, max_size=3),
    ),
    max_leaves=12,
)


def _reference_bad(value: object, where: str) -> str | None:
    """The slow, obvious definition: the path of the first non-finite number, depth first."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if math.isfinite(value) else where
    items = value.items() if isinstance(value, dict) else enumerate(value)  # type: ignore[attr-defined]
    for key, item in items:
        bad = _reference_bad(item, f"{where}[{key!r}]" if isinstance(value, dict) else f"{where}[{key}]")
        if bad is not None:
            return bad
    return None


@settings(max_examples=300, deadline=None)
@given(_nested)
def test_finite_agrees_with_the_obvious_definition(value: object) -> None:
    verdict = finite(value, "obs")
    bad = _reference_bad(value, "obs")
    assert bool(verdict) == (bad is None)
    if bad is not None:
        assert (verdict.reason or "").startswith(bad + " is ")
