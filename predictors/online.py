"""Online learners for agents, and the heuristic baselines they are compared with.

All follow ``sol.predictors.base.Predictor``: ``learn_one(x, y)``, ``predict_one(x)`` on dict
features. ``EWMA``, ``RollingQuantile`` and ``LastValue`` forecast a series from its own past
and ignore ``x`` (pass ``{}``); ``RiverRegressor`` learns from the features.

Every learner predicts ``initial`` (default 0.0) before its first ``learn_one``; the runtime
serves ``default_predict()`` during cold start anyway. A non-finite target raises
``ValueError`` and leaves the model unchanged.

>>> model = EWMA(alpha=0.5)
>>> for y in (10.0, 20.0, 20.0):
...     model.learn_one({}, y)
>>> model.predict_one({})
17.5
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

from .base import Features, Learner, check_target

__all__ = ["EWMA", "LastValue", "RiverRegressor", "RollingQuantile"]


class EWMA(Learner):
    """Exponentially weighted moving average of the target: ``m = alpha * y + (1 - alpha) * m``.

    The first target initialises the average (no bias towards ``initial``). Higher ``alpha``
    follows changes faster and noise more.

    >>> model = EWMA(alpha=0.1, initial=2.0)
    >>> model.predict_one({})
    2.0
    >>> model.learn_one({}, 8.0)
    >>> model.predict_one({}), model.n_seen
    (8.0, 1)
    """

    def __init__(self, alpha: float, initial: float = 0.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self.initial = initial
        self._mean = initial
        self.n_seen = 0

    def learn_one(self, x: Features, y: float) -> None:
        value = check_target(y)
        if self.n_seen == 0:
            self._mean = value
        else:
            # This form (not m += alpha * (y - m)) is exact for alpha = 1.
            self._mean = self.alpha * value + (1.0 - self.alpha) * self._mean
        self.n_seen += 1

    def predict_one(self, x: Features) -> float:
        return self._mean


class RollingQuantile(Learner):
    """The ``q`` quantile of the last ``window`` targets -- a high one sizes for peaks.

    Quantiles interpolate linearly between order statistics (numpy's default ``linear``
    method). O(window) per update, which is cheap for the windows agents use (tens to
    thousands of samples).

    >>> model = RollingQuantile(window=5, q=0.9)
    >>> for y in (1, 2, 3, 4, 10, 5):
    ...     model.learn_one({}, y)
    >>> model.predict_one({})  # of 2, 3, 4, 10, 5
    8.0
    """

    def __init__(self, window: int, q: float, initial: float = 0.0) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a count >= 1, got {window!r}")
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        self.window = window
        self.q = q
        self.initial = initial
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    @property
    def n_seen(self) -> int:
        """Targets currently in the window."""
        return len(self._recent)

    def learn_one(self, x: Features, y: float) -> None:
        value = check_target(y)
        if len(self._recent) == self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append(value)
        bisect.insort(self._sorted, value)

    def predict_one(self, x: Features) -> float:
        values = self._sorted
        if not values:
            return self.initial
        position = self.q * (len(values) - 1)
        lo = math.floor(position)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (position - lo)


class LastValue(Learner):
    """The naive baseline: tomorrow looks like today.

    >>> model = LastValue()
    >>> model.learn_one({}, 3.0); model.learn_one({}, 7.0)
    >>> model.predict_one({})
    7.0
    """

    def __init__(self, initial: float = 0.0) -> None:
        self.initial = initial
        self._last = initial

    def learn_one(self, x: Features, y: float) -> None:
        self._last = check_target(y)

    def predict_one(self, x: Features) -> float:
        return self._last


class RiverRegressor(Learner):
    """Adapts any river regressor (or pipeline) to ``Predictor``, with the same guarantees.

    Predictions are plain floats. A model that predicts None (nothing learnt yet) predicts
    ``initial``; one that predicts NaN or infinity (diverged SGD, say) raises ``ValueError``,
    so the runtime serves the default decision (``reason="error"``) rather than let an agent
    act on NaN, and quarantines the agent if it keeps happening.

    >>> model = RiverRegressor.scaled_linear(lr=0.1)
    >>> for i in range(300):
    ...     x = {"load": i % 10}
    ...     model.learn_one(x, 2.0 * x["load"] + 1.0)
    >>> round(model.predict_one({"load": 4}))  # 2 * 4 + 1
    9
    """

    def __init__(self, model: Any, initial: float = 0.0) -> None:
        if not (
            callable(getattr(model, "learn_one", None)) and callable(getattr(model, "predict_one", None))
        ):
            raise TypeError(f"expected a river regressor with learn_one/predict_one, got {model!r}")
        self.model = model
        self.initial = initial

    @classmethod
    def scaled_linear(cls, *, lr: float = 0.01, l2: float = 0.0, initial: float = 0.0) -> RiverRegressor:
        """``StandardScaler | LinearRegression`` trained by SGD; ``lr`` for weights and intercept."""
        from river import linear_model, optim, preprocessing

        regression = linear_model.LinearRegression(optimizer=optim.SGD(lr), intercept_lr=lr, l2=l2)
        return cls(preprocessing.StandardScaler() | regression, initial=initial)

    def learn_one(self, x: Features, y: float) -> None:
        self.model.learn_one(x, check_target(y))

    def predict_one(self, x: Features) -> float:
        raw = self.model.predict_one(x)
        if raw is None:
            return self.initial
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(f"{type(self.model).__name__} predicted {value} (diverged?)")
        return value
