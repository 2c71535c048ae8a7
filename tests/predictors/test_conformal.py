"""sol.predictors.conformal: the adaptive margin keeps misses at the target rate."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sol.predictors.conformal
from sol.predictors.conformal import AdaptiveMargin


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors.conformal).failed == 0


@settings(max_examples=20, deadline=None)
@given(
    rate=st.floats(0.01, 0.5),
    step=st.floats(0.01, 1.0),
    demands=st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=200, max_size=600),
)
def test_miss_rate_is_within_the_aci_bound_whatever_the_data(
    rate: float, step: float, demands: list[float]
) -> None:
    # the margin is the decision itself here; unbounded above (hi=inf) so only lo can bind,
    # and lo binds only while the margin is not needed (a decision of 0 misses any demand > 0)
    margin = AdaptiveMargin(rate=rate, step=step, initial=0.0, lo=-math.inf, hi=math.inf)
    misses = 0
    for demand in demands:
        miss = demand > margin.predict_one({})
        misses += miss
        margin.learn_one({}, float(miss))
    n = len(demands)
    spread = max(demands) - min(0.0, min(demands))
    assert abs(misses / n - rate) <= (spread + step) / (step * n) + 1e-9


def test_stays_inside_its_bounds() -> None:
    margin = AdaptiveMargin(rate=0.1, step=1.0, initial=0.0, lo=-0.5, hi=2.0)
    for _ in range(50):
        margin.learn_one({}, 1.0)
    assert margin.predict_one({}) == 2.0
    for _ in range(500):
        margin.learn_one({}, 0.0)
    assert margin.predict_one({}) == -0.5
    assert margin.miss_rate == pytest.approx(50 / 550)


@pytest.mark.parametrize(
    "kwargs",
    [{"rate": 0.0}, {"rate": 1.0}, {"step": 0.0}, {"initial": 5.0, "hi": 1.0}],
    ids=["rate-zero", "rate-one", "step", "initial-outside"],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveMargin(**kwargs)


def test_a_miss_indicator_outside_zero_one_is_an_error() -> None:
    with pytest.raises(ValueError):
        AdaptiveMargin().learn_one({}, 2.0)
