"""sol.predictors.p2: the P² running quantile, checked against river's stats.Quantile."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stats

import sol.predictors.p2
from sol.predictors.p2 import P2Quantile


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors.p2).failed == 0


@settings(max_examples=300, deadline=None)
@given(
    p=st.floats(min_value=0.01, max_value=0.99),
    values=st.lists(
        st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.integers(min_value=0, max_value=5).map(float),  # many ties
        ),
        max_size=400,
    ),
)
def test_gives_river_s_estimates_value_for_value(p: float, values: list[float]) -> None:
    # TimeOfDayProfile used river's stats.Quantile; this estimator replaced it so the daemon
    # need not import SciPy, and must not change what cpu_harvest learns
    ours, theirs = P2Quantile(p), stats.Quantile(p)
    assert ours.get() is None and theirs.get() is None
    for x in values:
        ours.update(x)
        theirs.update(x)
        assert ours.get() == theirs.get()


def test_tracks_a_high_quantile_of_a_long_stream() -> None:
    import random

    rng = random.Random(3)
    q = P2Quantile(0.95)
    xs = [rng.expovariate(1.0) for _ in range(20000)]
    for x in xs:
        q.update(x)
    exact = sorted(xs)[int(0.95 * len(xs))]
    est = q.get()
    assert est is not None and est == pytest.approx(exact, rel=0.03)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.5, 2.0])
def test_refuses_a_quantile_outside_0_1(p: float) -> None:
    with pytest.raises(ValueError, match="p must be in"):
        P2Quantile(p)
