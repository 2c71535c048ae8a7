"""sol.predictors.cost_sensitive: classes decided on by expected cost."""

from __future__ import annotations

import doctest
import random

import pytest
from river import naive_bayes

import sol.predictors.cost_sensitive
from sol.predictors.base import Predictor
from sol.predictors.cost_sensitive import CostSensitiveClassifier


def test_doctests() -> None:
    assert doctest.testmod(sol.predictors.cost_sensitive).failed == 0


def trained(under: float, over: float, step: float = 1.0) -> CostSensitiveClassifier:
    rng = random.Random(2)
    model = CostSensitiveClassifier(under_cost=under, over_cost=over, step=step, lo=0, hi=20)
    for _ in range(4000):
        model.learn_one({"x": 1.0}, rng.choice([2.0, 2.0, 2.0, 3.0, 8.0]))  # 60/20/20 %
    return model


@pytest.mark.parametrize(
    ("under", "over", "decision"),
    [
        pytest.param(1.0, 9.0, 2.0, id="idle-cores-cost-more"),
        pytest.param(1.0, 1.0, 2.0, id="median"),
        pytest.param(3.0, 1.0, 3.0, id="75th-percentile"),
        pytest.param(99.0, 1.0, 8.0, id="shortage-costs-most"),
    ],
)
def test_decides_the_class_of_least_expected_cost(under: float, over: float, decision: float) -> None:
    model = trained(under, over)
    assert model.predict_one({"x": 1.0}) == decision
    k = int(decision)
    cost = model.expected_cost({"x": 1.0}, k)
    assert all(cost <= model.expected_cost({"x": 1.0}, j) + 1e-9 for j in range(0, 12))


def test_classes_have_the_width_of_step_and_are_clipped() -> None:
    model = CostSensitiveClassifier(step=0.5, lo=-2, hi=4)
    assert [model.to_class(y) for y in (-9.0, -0.2, 0.0, 0.3, 0.5, 0.51, 99.0)] == [-2, 0, 0, 1, 1, 2, 4]


def test_any_river_classifier_and_the_protocol() -> None:
    model = CostSensitiveClassifier(naive_bayes.MultinomialNB(), initial=1.5)
    assert isinstance(model, Predictor)
    assert model.predict_one({"a": 1}) == 1.5
    for y in (1.0, 2.0, 2.0):
        model.learn_one({"a": 1}, y)
    assert model.predict_one({"a": 1}) in (1.0, 2.0)
    clone = model.clone()
    assert clone.predict_one({"a": 1}) == 1.5 and clone.model is not model.model


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"under_cost": 0.0}, ValueError, id="zero-cost"),
        pytest.param({"step": 0.0}, ValueError, id="zero-step"),
        pytest.param({"lo": 3, "hi": 3}, ValueError, id="empty-range"),
        pytest.param({"classifier": object()}, TypeError, id="not-a-classifier"),
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        CostSensitiveClassifier(**kwargs)  # type: ignore[arg-type]
