"""sol.predictors.quantile: online quantile regression on the pinball loss."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import sol.predictors.quantile
from sol.predictors.base import Predictor
from sol.predictors.quantile import QuantileRegressor, cost_quantile


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors.quantile).failed == 0


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99], ids=lambda q: f"q{q}")
def test_learns_the_conditional_quantile(q: float) -> None:
    rng = np.random.default_rng(1)
    model = QuantileRegressor(q=q, lr=0.02)
    for _ in range(20000):
        load = float(rng.random())
        model.learn_one({"load": load}, 3.0 * load + float(rng.exponential(1.0)))
    for load in (0.2, 0.8):
        expected = 3.0 * load - math.log(1 - q)  # the exponential's q quantile
        assert model.predict_one({"load": load}) == pytest.approx(expected, abs=0.35)


def test_follows_the_protocol_and_clones_untrained() -> None:
    model = QuantileRegressor(q=0.9, initial=2.5)
    assert isinstance(model, Predictor)
    assert model.predict_one({"a": 1.0}) == 2.5
    model.learn_one({"a": 1.0}, 4.0)
    assert isinstance(model.predict_one({"a": 1.0}), float)
    assert model.clone().predict_one({"a": 1.0}) == 2.5
    assert repr(model).startswith("QuantileRegressor(q=0.9")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"q": 1.0}, "q must be", id="q-one"),
        pytest.param({"q": 0.0}, "q must be", id="q-zero"),
        pytest.param({"lr": -1.0}, "lr must be", id="negative-lr"),
        pytest.param({"intercept_lr": math.nan}, "intercept_lr", id="nan-intercept-lr"),
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        QuantileRegressor(**kwargs)


def test_a_non_finite_target_is_an_error_and_changes_nothing() -> None:
    model = QuantileRegressor(q=0.9)
    model.learn_one({"a": 1.0}, 1.0)
    before = model.predict_one({"a": 1.0})
    with pytest.raises(ValueError, match="finite"):
        model.learn_one({"a": 1.0}, math.inf)
    assert model.predict_one({"a": 1.0}) == before


def test_cost_quantile_is_the_critical_ratio() -> None:
    assert cost_quantile(3.0, 1.0) == 0.75
    with pytest.raises(ValueError):
        cost_quantile(0.0, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"q": 0.99, "lr": 0.02}, id="agent-default"),
        pytest.param({"q": 0.9, "lr": 0.05, "intercept_lr": 0.01, "l2": 0.001}, id="l2"),
        pytest.param({"q": 0.75, "lr": 0.01, "scale": True}, id="scaled"),
    ],
)
def test_computes_what_river_computes(kwargs: dict[str, float]) -> None:
    """The hand-written arithmetic (kept off river.linear_model for memory) is river's: the
    same predictions, step by step, over a stream with features coming and going."""
    from river import linear_model, optim, preprocessing

    q, lr = kwargs["q"], kwargs["lr"]
    reference = linear_model.LinearRegression(
        optimizer=optim.SGD(lr),
        loss=optim.losses.Quantile(q),
        intercept_lr=kwargs.get("intercept_lr", lr),
        l2=kwargs.get("l2", 0.0),
    )
    river_model = preprocessing.StandardScaler() | reference if kwargs.get("scale") else reference
    ours = QuantileRegressor(**kwargs)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    worst = 0.0
    for step in range(5000):
        x = {"level": float(rng.random()), "jump": float(rng.normal()), "big": 50.0 * float(rng.random())}
        if step % 7 == 0:
            del x["jump"]  # a feature that is sometimes absent
        y = 2.0 * x["level"] + 0.01 * x["big"] + float(rng.exponential())
        if step:
            expected = float(river_model.predict_one(x))
            worst = max(worst, abs(ours.predict_one(x) - expected) / max(1.0, abs(expected)))
        river_model.learn_one(x, y)
        ours.learn_one(x, y)
    assert worst < 1e-9
