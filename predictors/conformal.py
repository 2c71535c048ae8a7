"""Adaptive conformal calibration: keep the long-run miss rate of a decision at a target.

A learned quantile is only as good as the model behind it; the cost of a miss is what an
operator cares about. Adaptive conformal inference (Gibbs & Candès, NeurIPS'21) wraps any
predictor with one number that moves after each outcome: up by ``step * (1 - rate)`` after a
miss, down by ``step * rate`` otherwise. Whatever the data do, the fraction of misses over
``T`` outcomes stays within ``(hi - lo) / (step * T)`` of ``rate`` while the value stays inside
its bounds, so the guarantee holds without trusting the model.

``AdaptiveMargin`` is that number as a learner: ``learn_one({}, miss)`` with ``miss`` 1.0 (the
outcome exceeded what was provisioned) or 0.0, ``predict_one({})`` the current margin. How the
margin is applied (added, multiplied) is the caller's choice.

>>> margin = AdaptiveMargin(rate=0.1, step=0.5, initial=1.0, lo=0.0, hi=5.0)
>>> for miss in [0] * 9 + [1]:
...     margin.learn_one({}, float(miss))
>>> round(margin.predict_one({}), 6)  # 9 hits, 1 miss: back where it started
1.0
"""

from __future__ import annotations

import math

from .base import Features, Learner, check_target

__all__ = ["AdaptiveMargin"]


class AdaptiveMargin(Learner):
    """A margin steered so that misses happen at ``rate`` in the long run (ACI)."""

    def __init__(
        self,
        rate: float = 0.01,
        step: float = 0.05,
        *,
        initial: float = 0.0,
        lo: float = 0.0,
        hi: float = math.inf,
    ) -> None:
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate!r}")
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"step must be a finite number > 0, got {step!r}")
        if not (lo <= initial <= hi) or math.isnan(initial):
            raise ValueError(f"need lo <= initial <= hi, got {lo!r} <= {initial!r} <= {hi!r}")
        self.rate = rate
        self.step = step
        self.initial = initial
        self.lo = lo
        self.hi = hi
        self.value = initial
        self.n_seen = 0
        self.misses = 0

    def learn_one(self, x: Features, y: float) -> None:
        miss = check_target(y)
        if not 0.0 <= miss <= 1.0:
            raise ValueError(f"a miss indicator must be in [0, 1], got {y!r}")
        self.value = min(self.hi, max(self.lo, self.value + self.step * (miss - self.rate)))
        self.n_seen += 1
        self.misses += miss > 0.5

    def predict_one(self, x: Features) -> float:
        return self.value

    @property
    def miss_rate(self) -> float:
        """The share of misses over everything learnt so far."""
        return self.misses / self.n_seen if self.n_seen else 0.0
