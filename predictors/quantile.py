"""Online quantile regression: predict a high quantile of the target, not its mean.

A harvesting agent sizes a resource for the *peak* of the next window, and running short costs
far more than leaving a core idle. With an under-prediction costing ``c_u`` per unit and an
over-prediction ``c_o``, the decision with the least expected cost is the ``q = c_u / (c_u +
c_o)`` quantile of the target's distribution given the features; the pinball (quantile) loss
is minimised by exactly that quantile, so SGD on it learns a cost-sensitive regressor directly.

``QuantileRegressor`` computes exactly what river's ``LinearRegression`` with
``optim.SGD(lr)`` and ``optim.losses.Quantile(q)`` (behind a ``StandardScaler`` when ``scale``)
computes -- the same updates in the same order, checked against river itself in
``tests/predictors/test_quantile.py`` -- behind the ``sol.predictors`` protocol: finite float
predictions, ``initial`` before the first update, a non-finite target or prediction is a
``ValueError`` (the runtime then serves its default).

Why not river's objects themselves: importing ``river.linear_model`` loads SciPy's statistics
and ``river.preprocessing`` loads scikit-learn, ~90 MiB of resident memory for a dozen lines
of arithmetic. The daemon's budget is 128 MiB in all (docs/operating.md), and this learner
runs in it at 20 Hz.

>>> import random
>>> rng = random.Random(7)
>>> model = QuantileRegressor(q=0.9, lr=0.05)
>>> for _ in range(4000):
...     load = rng.random()
...     model.learn_one({"load": load}, 2.0 * load + rng.random())
>>> above = sum(model.predict_one({"load": 0.5}) < 1.0 + rng.random() for _ in range(1000))
>>> 40 < above < 200  # about 10 % of the outcomes exceed the 0.9 quantile
True
"""

from __future__ import annotations

import math

from .base import Features, Learner, check_target

__all__ = ["QuantileRegressor", "cost_quantile"]


def cost_quantile(under_cost: float, over_cost: float) -> float:
    """The quantile that minimises expected cost when one unit short costs ``under_cost`` and
    one unit too many ``over_cost`` (the newsvendor critical ratio).

    >>> cost_quantile(99.0, 1.0)
    0.99
    """
    if not (under_cost > 0 and over_cost > 0 and math.isfinite(under_cost) and math.isfinite(over_cost)):
        raise ValueError(f"costs must be finite and > 0, got under={under_cost!r}, over={over_cost!r}")
    return under_cost / (under_cost + over_cost)


class QuantileRegressor(Learner):
    """Linear regression on the pinball loss at quantile ``q``, trained online by SGD (river's arithmetic).

    ``lr`` is the SGD step of the weights, ``intercept_lr`` that of the intercept (default
    ``lr``); ``scale`` puts a ``StandardScaler`` in front (features of very different ranges).
    Agents usually feed features already in a common unit and leave ``scale`` off: it halves
    the cost of an update.
    """

    def __init__(
        self,
        q: float = 0.9,
        lr: float = 0.01,
        *,
        intercept_lr: float | None = None,
        l2: float = 0.0,
        scale: bool = False,
        initial: float = 0.0,
    ) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q!r}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if intercept_lr is not None and not (intercept_lr > 0 and math.isfinite(intercept_lr)):
            raise ValueError(f"intercept_lr must be a finite number > 0, got {intercept_lr!r}")
        self.q = q
        self.lr = lr
        self.intercept_lr = intercept_lr
        self.l2 = l2
        self.scale = scale
        self.initial = initial
        self.n_seen = 0
        self._lr_intercept = lr if intercept_lr is None else intercept_lr
        self.weights: dict[str, float] = {}
        self.intercept = 0.0
        # StandardScaler state (Welford, population variance), per feature
        self._counts: dict[str, int] = {}
        self._means: dict[str, float] = {}
        self._vars: dict[str, float] = {}

    def _learn_scaler(self, x: Features) -> None:
        counts, means, vars_ = self._counts, self._means, self._vars
        for i, xi in x.items():
            n = counts[i] = counts.get(i, 0) + 1
            old = means.get(i, 0.0)
            new = means[i] = old + (xi - old) / n
            v = vars_.get(i, 0.0)
            vars_[i] = v + ((xi - old) * (xi - new) - v) / n

    def _scaled(self, x: Features) -> Features:
        means, vars_ = self._means, self._vars
        out = {}
        for i, xi in x.items():
            v = vars_.get(i, 0.0)
            out[i] = (xi - means.get(i, 0.0)) / v**0.5 if v else 0.0
        return out

    def _dot(self, x: Features) -> float:
        w = self.weights
        dot: float = sum(w.get(i, 0.0) * xi for i, xi in x.items())
        return dot + self.intercept

    def learn_one(self, x: Features, y: float) -> None:
        y = check_target(y)
        if self.scale:
            self._learn_scaler(x)  # river's pipeline: the scaler learns, then transforms
            x = self._scaled(x)
        # d(pinball)/d(prediction): 1 - q above the target, -q below it
        g = float((y < self._dot(x)) - self.q)
        self.intercept -= self._lr_intercept * g
        w, lr, l2 = self.weights, self.lr, self.l2
        for i, xi in x.items():
            wi = w.get(i, 0.0)
            gi = xi * g
            if l2:
                gi += l2 * wi
            w[i] = wi - lr * gi
        self.n_seen += 1

    def predict_one(self, x: Features) -> float:
        if self.n_seen == 0:
            return self.initial
        value = float(self._dot(self._scaled(x) if self.scale else x))
        if not math.isfinite(value):
            raise ValueError(f"quantile regression predicted {value} (diverged?)")
        return value
