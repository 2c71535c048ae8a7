"""sol.predictors: the learn_one/predict_one protocol and the online learners."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import linear_model, preprocessing

import sol.predictors.base
import sol.predictors.online
from sol.predictors.base import Learner, Predictor
from sol.predictors.online import EWMA, LastValue, RiverRegressor, RollingQuantile

LEARNERS: list[Any] = [
    pytest.param(lambda: EWMA(alpha=0.3), id="ewma"),
    pytest.param(lambda: EWMA(alpha=1.0, initial=5.0), id="ewma-initial"),
    pytest.param(lambda: RollingQuantile(window=20, q=0.95), id="rolling-quantile"),
    pytest.param(lambda: LastValue(initial=1.0), id="last-value"),
    pytest.param(lambda: RiverRegressor(linear_model.LinearRegression()), id="river-linear"),
    pytest.param(lambda: RiverRegressor.scaled_linear(lr=0.05), id="river-scaled-linear"),
]
Factory = Callable[[], Learner]


def stream(seed: int = 3, n: int = 200) -> list[tuple[dict[str, float], float]]:
    rng = np.random.default_rng(seed)
    loads = rng.uniform(0, 10, n)
    ys = 2.0 * loads + 1.0 + rng.normal(0, 0.5, n)
    return [({"load": float(x)}, float(y)) for x, y in zip(loads, ys, strict=True)]


# -- conformance: the same checks for every learner -------------------------------------------


@pytest.mark.parametrize("make", LEARNERS)
def test_follows_the_predictor_protocol(make: Factory) -> None:
    model = make()
    assert isinstance(model, Predictor)
    prediction = model.predict_one({"load": 1.0})
    assert isinstance(prediction, float) and math.isfinite(prediction)
    for x, y in stream(n=50):
        assert model.learn_one(x, y) is None
        assert isinstance(model.predict_one(x), float)


@pytest.mark.parametrize("make", LEARNERS)
def test_predicts_initial_before_learning(make: Factory) -> None:
    model = make()
    assert model.predict_one({"load": 3.0}) == getattr(model, "initial", 0.0)


@pytest.mark.parametrize("make", LEARNERS)
def test_clone_is_untrained_with_the_same_parameters(make: Factory) -> None:
    model = make()
    fresh = make()
    for x, y in stream(n=50):
        model.learn_one(x, y)
    clone = model.clone()
    assert type(clone) is type(model)
    assert repr(clone) == repr(model) == repr(fresh)
    probe = {"load": 7.0}
    assert clone.predict_one(probe) == fresh.predict_one(probe)
    assert clone.predict_one(probe) != model.predict_one(probe)


@pytest.mark.parametrize("make", LEARNERS)
def test_learning_is_deterministic(make: Factory) -> None:
    a, b = make(), make()
    for x, y in stream(n=80):
        a.learn_one(x, y)
        b.learn_one(x, y)
    assert a.predict_one({"load": 2.0}) == b.predict_one({"load": 2.0})


@pytest.mark.parametrize("make", LEARNERS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_target_raises_and_leaves_the_model_unchanged(make: Factory, bad: float) -> None:
    model = make()
    for x, y in stream(n=30):
        model.learn_one(x, y)
    before = model.predict_one({"load": 4.0})
    with pytest.raises(ValueError, match="finite"):
        model.learn_one({"load": 4.0}, bad)
    assert model.predict_one({"load": 4.0}) == before


@pytest.mark.parametrize(
    ("factory", "error"),
    [
        pytest.param(lambda: EWMA(alpha=0.0), ValueError, id="ewma-alpha-0"),
        pytest.param(lambda: EWMA(alpha=1.5), ValueError, id="ewma-alpha-above-1"),
        pytest.param(lambda: EWMA(alpha=math.nan), ValueError, id="ewma-alpha-nan"),
        pytest.param(lambda: RollingQuantile(window=0, q=0.5), ValueError, id="quantile-window-0"),
        pytest.param(lambda: RollingQuantile(window=5, q=1.1), ValueError, id="quantile-q-above-1"),
        pytest.param(lambda: RiverRegressor(object()), TypeError, id="river-not-a-model"),
    ],
)
def test_nonsense_parameters_are_rejected(factory: Callable[[], object], error: type[Exception]) -> None:
    with pytest.raises(error):
        factory()


def test_constructors_store_parameters_only() -> None:
    model = RiverRegressor(linear_model.LinearRegression(), initial=2.0)
    assert repr(model).startswith("RiverRegressor(model=LinearRegression")
    assert repr(RollingQuantile(window=3, q=0.5)) == "RollingQuantile(window=3, q=0.5, initial=0.0)"
    assert repr(EWMA(0.2)) == "EWMA(alpha=0.2, initial=0.0)"


# -- each learner does what it says -----------------------------------------------------------


def test_ewma_matches_its_recurrence() -> None:
    ys = [y for _, y in stream(n=100)]
    model = EWMA(alpha=0.2)
    expected = ys[0]
    for i, y in enumerate(ys):
        model.learn_one({}, y)
        if i:
            expected = 0.8 * expected + 0.2 * y
        assert model.predict_one({}) == pytest.approx(expected)
    assert model.n_seen == 100


def test_ewma_with_alpha_one_is_the_last_value() -> None:
    ewma, last = EWMA(alpha=1.0), LastValue()
    for _, y in stream(n=20):
        ewma.learn_one({}, y)
        last.learn_one({}, y)
        assert ewma.predict_one({}) == last.predict_one({})


def test_ewma_follows_a_regime_change() -> None:
    rng = np.random.default_rng(1)
    model = EWMA(alpha=0.2)
    for y in rng.normal(10.0, 1.0, 200):
        model.learn_one({}, float(y))
    assert model.predict_one({}) == pytest.approx(10.0, abs=1.0)
    for y in rng.normal(30.0, 1.0, 30):
        model.learn_one({}, float(y))
    assert model.predict_one({}) == pytest.approx(30.0, abs=1.0)


@settings(max_examples=60, deadline=None)
@given(
    ys=st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=40),
    window=st.integers(1, 12),
    q=st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.95, 1.0]),
)
def test_rolling_quantile_matches_numpy_on_every_window(ys: list[float], window: int, q: float) -> None:
    model = RollingQuantile(window=window, q=q)
    for i, y in enumerate(ys):
        model.learn_one({}, y)
        recent = ys[max(0, i + 1 - window) : i + 1]
        assert model.predict_one({}) == pytest.approx(float(np.quantile(recent, q)))
        assert model.n_seen == len(recent)


def test_a_high_rolling_quantile_covers_most_windows() -> None:
    rng = np.random.default_rng(2)
    ys = rng.normal(10.0, 2.0, 2000)
    model = RollingQuantile(window=200, q=0.95)
    under = 0
    for i, y in enumerate(ys):
        if i >= 200 and y > model.predict_one({}):
            under += 1
        model.learn_one({}, float(y))
    assert 0.02 < under / (len(ys) - 200) < 0.08


def test_river_regressor_learns_a_linear_relation() -> None:
    model = RiverRegressor(preprocessing.StandardScaler() | linear_model.LinearRegression())
    for x, y in stream(n=2000):
        model.learn_one(x, y)
    for load in (2.0, 5.0, 8.0):
        assert model.predict_one({"load": load}) == pytest.approx(2.0 * load + 1.0, abs=0.5)


class _Fake:
    """A river-like model whose prediction we choose."""

    def __init__(self, prediction: Any) -> None:
        self.prediction = prediction

    def learn_one(self, x: dict[str, Any], y: float) -> None:
        pass

    def predict_one(self, x: dict[str, Any]) -> Any:
        return self.prediction


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        pytest.param(None, 4.0, id="none-is-cold-start"),
        pytest.param(np.float32(2.5), 2.5, id="numpy-scalar"),
        pytest.param(3, 3.0, id="int"),
    ],
)
def test_river_regressor_returns_plain_floats(prediction: Any, expected: float) -> None:
    value = RiverRegressor(_Fake(prediction), initial=4.0).predict_one({})
    assert type(value) is float and value == expected


@pytest.mark.parametrize("prediction", [math.nan, math.inf], ids=["nan", "inf"])
def test_river_regressor_refuses_to_hand_out_a_diverged_prediction(prediction: float) -> None:
    with pytest.raises(ValueError, match="diverged"):
        RiverRegressor(_Fake(prediction)).predict_one({})


@pytest.mark.parametrize(
    "module",
    [pytest.param(sol.predictors.base, id="base"), pytest.param(sol.predictors.online, id="online")],
)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
