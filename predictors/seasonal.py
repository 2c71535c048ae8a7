"""Long-term time-of-day patterns: what a quantity usually reaches at this time of the day.

Coach (ASPLOS'25) observes that most cloud VMs follow daily patterns and predicts each VM's
utilisation per time window of the day from its history over many days, then oversubscribes
against that prediction. ``TimeOfDayProfile`` is that long-term component as an online
learner: the day (``period`` seconds) is cut into ``buckets``; within a bucket it tracks a high
quantile ``q`` of the target (the P² estimator, constant memory: ``p2.P2Quantile``, which
gives river's ``stats.Quantile`` estimates without importing SciPy), and when the bucket ends
the value is folded into the bucket's profile with weight ``day_alpha`` (an EWMA over days).

Features carry the clock time: ``x = {"t": seconds}``. Any time origin works (the runtime's
clock is monotonic, not wall time): only the period matters for learning a daily pattern,
so the buckets are aligned with the origin of the clock rather than with midnight.

>>> profile = TimeOfDayProfile(period=100.0, buckets=4, q=0.5)
>>> for day in range(3):
...     for s in range(100):
...         t = day * 100.0 + s
...         profile.learn_one({"t": t}, 10.0 if s < 25 else 1.0)   # busy first quarter
>>> profile.predict_one({"t": 310.0}), profile.predict_one({"t": 360.0})
(10.0, 1.0)
>>> profile.days_seen(310.0)
3
"""

from __future__ import annotations

import math
from typing import Any

from .base import Features, Learner, check_target
from .p2 import P2Quantile

__all__ = ["TimeOfDayProfile"]


class TimeOfDayProfile(Learner):
    """Per time-of-day bucket, an EWMA over days of the bucket's ``q`` quantile."""

    def __init__(
        self,
        period: float = 86400.0,
        buckets: int = 48,
        q: float = 0.95,
        day_alpha: float = 0.5,
        initial: float = 0.0,
    ) -> None:
        if not (period > 0 and math.isfinite(period)):
            raise ValueError(f"period must be a finite number of seconds > 0, got {period!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets must be a count >= 1, got {buckets!r}")
        if not 0.0 < q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {q!r}")
        if not 0.0 < day_alpha <= 1.0:
            raise ValueError(f"day_alpha must be in (0, 1], got {day_alpha!r}")
        self.period = period
        self.buckets = buckets
        self.q = q
        self.day_alpha = day_alpha
        self.initial = initial
        self._width = period / buckets
        self._profile: list[float | None] = [None] * buckets
        self._days: list[int] = [0] * buckets
        #: the bucket being observed: its absolute index (time // width) and its estimator
        self._current: int | None = None
        self._estimator: P2Quantile | None = None

    def _slot(self, t: float) -> int:
        return math.floor(t / self._width)

    def _close(self) -> None:
        if self._current is None or self._estimator is None:
            return
        value = self._estimator.get()
        if value is not None and math.isfinite(value):
            b = self._current % self.buckets
            old = self._profile[b]
            self._profile[b] = value if old is None else (1 - self.day_alpha) * old + self.day_alpha * value
            self._days[b] += 1
        self._estimator = None

    def learn_one(self, x: Features, y: float) -> None:
        value = check_target(y)
        t = float(x["t"])
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t!r}")
        slot = self._slot(t)
        if slot != self._current:
            self._close()
            self._current = slot
        if self._estimator is None:
            self._estimator = P2Quantile(self.q)
        self._estimator.update(value)

    def predict_one(self, x: Features) -> float:
        """The profile of the bucket ``x["t"]`` falls in; ``initial`` until one day of it was seen."""
        value = self._profile[self._slot(float(x["t"])) % self.buckets]
        return self.initial if value is None else value

    def days_seen(self, t: float) -> int:
        """How many days have contributed to the bucket of time ``t``."""
        return self._days[self._slot(t) % self.buckets]

    def state(self) -> dict[str, Any]:
        """The learned profile, to persist across restarts (JSON-serialisable)."""
        return {
            "period": self.period,
            "buckets": self.buckets,
            "profile": list(self._profile),
            "days": list(self._days),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a profile saved by ``state()``; a profile of another shape is refused."""
        if state.get("period") != self.period or state.get("buckets") != self.buckets:
            raise ValueError(
                f"profile shape {state.get('period')!r} s / {state.get('buckets')!r} buckets does not match "
                f"{self.period!r} s / {self.buckets!r}"
            )
        profile = [None if v is None else float(v) for v in state["profile"]]
        days = [int(d) for d in state["days"]]
        if len(profile) != self.buckets or len(days) != self.buckets:
            raise ValueError("profile and days must have one entry per bucket")
        if any(v is not None and not math.isfinite(v) for v in profile):
            raise ValueError("profile values must be finite")
        self._profile, self._days = profile, days
