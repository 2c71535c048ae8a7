"""Exponential backoff after harm (DESIGN §4.4).

After a failed performance assessment the actuator applies default decisions for a backoff
that starts at ``initial``, doubles on each consecutive failure up to ``maximum``, and resets
once the agent has been healthy for ``reset_after`` seconds since the backoff ended.

>>> b = Backoff(initial=1.0, maximum=4.0)
>>> b.fail(now=0.0), b.fail(now=1.5), b.fail(now=4.0), b.fail(now=9.0)
(1.0, 2.0, 4.0, 4.0)
>>> b.active(12.9), b.active(13.0)
(True, False)
>>> b.healthy(now=16.9); b.failures
4
>>> b.healthy(now=17.0); b.failures
0
"""

from __future__ import annotations

import math


class Backoff:
    def __init__(self, initial: float, maximum: float, reset_after: float | None = None) -> None:
        if not (0 < initial <= maximum < math.inf):
            raise ValueError(f"backoff needs 0 < initial <= maximum, both finite, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        # Doublings after which the length is at the cap. ``2.0 ** n`` overflows (OverflowError)
        # once n > 1023, which a day of consecutive harm verdicts reaches: the exponent is capped
        # here, before the power is taken, not the length after.
        self._doublings = max(0, math.ceil(math.log2(maximum) - math.log2(initial)))
        self.reset_after = maximum if reset_after is None else reset_after
        self.failures = 0
        self.until = -math.inf

    def fail(self, now: float) -> float:
        """Register a failure at ``now``; returns the length of the backoff it starts."""
        self.failures += 1
        length = self._length(self.failures - 1)
        self.until = max(self.until, now + length)
        return length

    def active(self, now: float) -> bool:
        return now < self.until

    def healthy(self, now: float) -> None:
        """Register a healthy assessment; resets after a long enough healthy stretch."""
        if self.failures and not self.active(now) and now - self.until >= self.reset_after:
            self.failures = 0

    def current(self) -> float:
        """The length the next failure's backoff would have."""
        return self._length(self.failures)

    def _length(self, doublings: int) -> float:
        return min(self.initial * 2.0 ** min(doublings, self._doublings), self.maximum)
