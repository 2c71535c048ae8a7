"""Model assessors: is the model good enough to use right now? (DESIGN §4.3)

An agent's ``assess_model()`` returns one of these verdicts. They learn from the truth as it
arrives: feed each ``(predicted, observed)`` pair once the observed value for a prediction is
known, and ask for the verdict when the runtime asks the agent.

>>> errors = RollingError(window=4, threshold=1.0, metric="mae")
>>> for predicted, observed in [(10, 10.5), (10, 9.5), (10, 10.2), (10, 10.1)]:
...     verdict = errors.update(predicted, observed)
>>> bool(verdict), round(errors.value, 3)
(True, 0.325)
>>> for predicted, observed in [(10, 14), (10, 15)]:
...     verdict = errors.update(predicted, observed)
>>> verdict.reason
'mae 2.32 over the last 4 predictions exceeds 1'
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from sol.sdk import Verdict

__all__ = ["METRICS", "DriftDetector", "Metric", "RollingError", "UnderPredictionRate"]

Metric = Literal["mae", "rmse", "mape", "bias", "under_rate", "mean_shortfall"]


def _mae(pairs: Sequence[tuple[float, float]]) -> float:
    return math.fsum(abs(o - p) for p, o in pairs) / len(pairs)


def _rmse(pairs: Sequence[tuple[float, float]]) -> float:
    return math.sqrt(math.fsum((o - p) ** 2 for p, o in pairs) / len(pairs))


def _mape(pairs: Sequence[tuple[float, float]]) -> float:
    # An observed 0 would divide by zero; measure those errors against 1 unit instead.
    return math.fsum(abs(o - p) / abs(o) if o else abs(p) for p, o in pairs) / len(pairs)


def _bias(pairs: Sequence[tuple[float, float]]) -> float:
    return math.fsum(o - p for p, o in pairs) / len(pairs)


def _under_rate(pairs: Sequence[tuple[float, float]]) -> float:
    # A NaN prediction compares False with everything: count it as an under-prediction.
    return sum(1 for p, o in pairs if not p >= o) / len(pairs)


def _mean_shortfall(pairs: Sequence[tuple[float, float]]) -> float:
    return math.fsum(max(0.0, o - p) if p == p else math.inf for p, o in pairs) / len(pairs)


#: name -> function of the (predicted, observed) pairs in the window; a higher value is worse.
#: ``bias`` is the mean of observed - predicted (positive: the model predicts too low);
#: ``under_rate`` the fraction of pairs where observed > predicted; ``mean_shortfall`` the mean
#: amount by which observed exceeded predicted (over-predictions count as 0).
METRICS: dict[str, Callable[[Sequence[tuple[float, float]]], float]] = {
    "mae": _mae,
    "rmse": _rmse,
    "mape": _mape,
    "bias": _bias,
    "under_rate": _under_rate,
    "mean_shortfall": _mean_shortfall,
}


class RollingError:
    """An error metric over the last ``window`` prediction/truth pairs, against a threshold.

    The verdict passes during warm-up (fewer than ``min_count`` pairs, default the whole
    window) and while ``metric <= threshold``. Pairs whose observed value is not finite are
    skipped (bad truth is the validators' business). A non-finite prediction is kept as NaN:
    it makes every averaged metric NaN, which fails, for as long as it is in the window, and
    counts as an under-prediction for ``under_rate``.
    """

    def __init__(
        self, window: int, threshold: float, metric: Metric = "mae", *, min_count: int | None = None
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a count >= 1, got {window!r}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        if min_count is not None and not 1 <= min_count <= window:
            raise ValueError(f"min_count must be in [1, window={window}], got {min_count!r}")
        self.window = window
        self.threshold = threshold
        self.metric = metric
        self.min_count = min_count
        self._pairs: deque[tuple[float, float]] = deque(maxlen=window)

    @property
    def count(self) -> int:
        """Pairs currently in the window."""
        return len(self._pairs)

    @property
    def value(self) -> float | None:
        """The metric over the window, or None before the first pair."""
        if not self._pairs:
            return None
        return METRICS[self.metric](self._pairs)

    def update(self, predicted: float, observed: float) -> Verdict:
        """Record one prediction and the truth it was about; return the new verdict."""
        o = float(observed)
        if math.isfinite(o):
            p = float(predicted)
            self._pairs.append((p if math.isfinite(p) else math.nan, o))
        return self.verdict()

    def verdict(self) -> Verdict:
        needed = self.window if self.min_count is None else self.min_count
        value = self.value
        if value is None or self.count < needed:
            return Verdict.ok()
        if value == value and value <= self.threshold:  # NaN fails
            return Verdict.ok()
        return Verdict.fail(
            f"{self.metric} {value:.3g} over the last {self.count} predictions exceeds {self.threshold:.3g}"
        )

    def reset(self) -> None:
        """Forget every pair (e.g. after the model was replaced)."""
        self._pairs.clear()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(window={self.window!r}, threshold={self.threshold!r}, "
            f"metric={self.metric!r}, min_count={self.min_count!r})"
        )


class UnderPredictionRate(RollingError):
    """The fraction of the last ``window`` predictions that the observed value exceeded.

    What a harvesting agent cares about: each prediction sizes a resource for the next
    window (cores the primaries will need); an under-prediction means the primaries were
    short. Observed values up to ``margin`` above the prediction still count as covered.

    >>> rate = UnderPredictionRate(window=10, max_rate=0.2, min_count=5)
    >>> for observed in [3, 3, 4, 3, 3, 5, 6, 3]:
    ...     verdict = rate.update(predicted=4, observed=observed)
    >>> verdict.reason
    'under-predicted 2 of the last 8 windows (25%), more than 20%'
    """

    def __init__(
        self, window: int, max_rate: float, *, margin: float = 0.0, min_count: int | None = None
    ) -> None:
        if not 0 <= max_rate <= 1:
            raise ValueError(f"max_rate must be a fraction in [0, 1], got {max_rate!r}")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        super().__init__(window, max_rate, "under_rate", min_count=min_count)
        self.max_rate = max_rate
        self.margin = margin

    def update(self, predicted: float, observed: float) -> Verdict:
        return super().update(float(predicted) + self.margin, observed)

    def verdict(self) -> Verdict:
        verdict = super().verdict()
        if verdict:
            return verdict
        under = round((self.value or 0.0) * self.count)
        return Verdict.fail(
            f"under-predicted {under} of the last {self.count} windows ({self.value or 0.0:.0%}), "
            f"more than {self.max_rate:.0%}"
        )

    def __repr__(self) -> str:
        return (
            f"UnderPredictionRate(window={self.window!r}, max_rate={self.max_rate!r}, "
            f"margin={self.margin!r}, min_count={self.min_count!r})"
        )


@runtime_checkable
class RiverDriftDetector(Protocol):
    """The part of ``river.base.DriftDetector`` we use."""

    @property
    def drift_detected(self) -> bool: ...

    def update(self, x: float) -> Any: ...

    def clone(self) -> Any: ...


class DriftDetector:
    """A ``river.drift`` detector whose verdict fails for ``hold`` after each detected drift.

    Feed it a stream whose distribution should be stable while the model is good -- usually
    the prediction error, or an input feature. After a drift the model was trained on
    another regime: the verdict fails (predictions fall back to the default) until ``hold``
    has passed, giving the online learner time to catch up.

    ``hold`` is in the unit of ``now`` if you pass ``now`` to ``update`` and ``verdict``
    (seconds of ``ctx.clock``), else in updates. Non-finite values are ignored, since one NaN
    would poison the detector's statistics for good.

    >>> import random
    >>> rng = random.Random(1)
    >>> detector = DriftDetector(hold=50, what="error")
    >>> stream = [rng.gauss(0, 1) for _ in range(500)] + [rng.gauss(5, 1) for _ in range(30)]
    >>> detected = [i for i, x in enumerate(stream) if detector.update(x)]
    >>> detected
    [511]
    >>> detector.verdict().reason
    'drift in error detected at 512 (ADWIN); model held off for 32 more updates'
    >>> for _ in range(32):
    ...     _ = detector.update(rng.gauss(5, 1))
    >>> bool(detector.verdict())
    True
    """

    def __init__(
        self, detector: RiverDriftDetector | None = None, *, hold: float = 100.0, what: str = "input"
    ) -> None:
        if not hold >= 0:
            raise ValueError(f"hold must be >= 0, got {hold!r}")
        if detector is None:
            from river.drift import ADWIN

            detector = ADWIN()  # type: ignore[no-untyped-call]
        self.detector: RiverDriftDetector = detector
        self.hold = hold
        self.what = what
        self._updates = 0
        self._last_drift: float | None = None
        self.n_drifts = 0

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a drift."""
        return bool(self.detector.drift_detected)

    @property
    def last_drift(self) -> float | None:
        """When the last drift was detected (``now`` or update count), None if never."""
        return self._last_drift

    def update(self, x: float, now: float | None = None) -> bool:
        """Feed one value; True when this value completed a detected drift."""
        self._updates += 1
        value = float(x)
        if not math.isfinite(value):
            return False
        self.detector.update(value)
        if not self.detector.drift_detected:
            return False
        self.n_drifts += 1
        self._last_drift = float(self._updates if now is None else now)
        return True

    def verdict(self, now: float | None = None) -> Verdict:
        if self._last_drift is None:
            return Verdict.ok()
        current = float(self._updates if now is None else now)
        remaining = self._last_drift + self.hold - current
        if remaining <= 0:
            return Verdict.ok()
        unit = "updates" if now is None else "s"
        name = type(self.detector).__name__
        return Verdict.fail(
            f"drift in {self.what} detected at {self._last_drift:g} ({name}); "
            f"model held off for {remaining:g} more {unit}"
        )

    def reset(self) -> None:
        """A fresh detector with the same parameters; forgets past drifts."""
        self.detector = self.detector.clone()
        self._updates = 0
        self._last_drift = None
        self.n_drifts = 0

    def __repr__(self) -> str:
        return f"DriftDetector(detector={self.detector!r}, hold={self.hold!r}, what={self.what!r})"
