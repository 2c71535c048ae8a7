"""sol.predictors.seasonal: the long-term time-of-day profile (Coach)."""

from __future__ import annotations

import doctest
import json
import math

import pytest

import sol.predictors.seasonal
from sol.predictors.seasonal import TimeOfDayProfile


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors.seasonal).failed == 0


def daily(profile: TimeOfDayProfile, days: int, level: float = 1.0, busy: float = 10.0) -> None:
    for day in range(days):
        for s in range(0, 100):
            profile.learn_one({"t": day * 100.0 + s}, busy if 40 <= s < 60 else level)


def test_learns_a_daily_pattern_and_moves_with_it_over_days() -> None:
    p = TimeOfDayProfile(period=100.0, buckets=10, q=0.9, day_alpha=0.5)
    assert p.predict_one({"t": 50.0}) == 0.0  # nothing seen yet: initial
    daily(p, 2)
    assert p.predict_one({"t": 250.0}) == pytest.approx(10.0, abs=0.5)
    assert p.predict_one({"t": 210.0}) == pytest.approx(1.0, abs=0.5)
    daily(p, 1, busy=20.0)  # one day busier: half way there (day_alpha)
    assert 13.0 < p.predict_one({"t": 350.0}) < 17.0


def test_state_round_trips_through_json_and_refuses_another_shape() -> None:
    p = TimeOfDayProfile(period=100.0, buckets=10)
    daily(p, 2)
    q = TimeOfDayProfile(period=100.0, buckets=10)
    q.load_state(json.loads(json.dumps(p.state())))
    assert q.predict_one({"t": 50.0}) == p.predict_one({"t": 50.0})
    with pytest.raises(ValueError, match="does not match"):
        TimeOfDayProfile(period=100.0, buckets=5).load_state(p.state())


@pytest.mark.parametrize(
    "kwargs",
    [{"period": 0.0}, {"buckets": 0}, {"q": 1.0}, {"day_alpha": 0.0}],
    ids=["period", "buckets", "q", "day_alpha"],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimeOfDayProfile(**kwargs)  # type: ignore[arg-type]


def test_a_non_finite_target_or_time_is_an_error() -> None:
    p = TimeOfDayProfile()
    with pytest.raises(ValueError):
        p.learn_one({"t": 1.0}, math.nan)
    with pytest.raises(ValueError):
        p.learn_one({"t": math.inf}, 1.0)
