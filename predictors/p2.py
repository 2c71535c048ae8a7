"""A running quantile in constant memory: the P² algorithm.

Jain and Chlamtac, "The P² algorithm for dynamic calculation of quantiles and histograms
without storing observations", Communications of the ACM 28(10), 1985. Five markers track the
minimum, the ``p/2``, ``p`` and ``(1+p)/2`` quantiles and the maximum; each observation moves
the markers' positions, and a marker that drifts a whole position from where it should be is
moved by one, its height adjusted with a piecewise-parabolic (P²) formula, or linearly when
the parabola would leave the neighbours' heights.

The estimate is the middle marker's height. Until the sixth value it is the one of rank
``floor(p * n)`` (from 0) among the ``n`` seen, as river's ``stats.Quantile`` gives it: this
module exists so that ``TimeOfDayProfile`` (and with it ``cpu_harvest``) does not import
``river.stats``, which loads SciPy (~0.3 s and ~12 MiB at every daemon start). Tests check
that both give the same estimates.

>>> q = P2Quantile(0.5)
>>> for x in [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.3]:
...     q.update(x)
>>> q.get()
3.0
>>> P2Quantile(0.9).get() is None
True
"""

from __future__ import annotations

import bisect

__all__ = ["P2Quantile"]


class P2Quantile:
    """The ``p`` quantile of the values seen so far (an estimate), in O(1) memory and time."""

    __slots__ = ("_count", "_dn", "_n", "_np", "_q", "p")

    def __init__(self, p: float) -> None:
        if not 0.0 < p < 1.0:
            raise ValueError(f"p must be in (0, 1), got {p!r}")
        self.p = p
        self._count = 0
        #: marker heights; the first (up to) five values, sorted, until the markers exist
        self._q: list[float] = []
        #: marker positions (1-based), their desired positions, and the desired increments
        self._n = [1.0, 2.0, 3.0, 4.0, 5.0]
        self._np = [1.0, 1.0 + 2 * p, 1.0 + 4 * p, 3.0 + 2 * p, 5.0]
        self._dn = (0.0, p / 2, p, (1.0 + p) / 2, 1.0)

    def update(self, x: float) -> None:
        q = self._q
        self._count += 1
        if self._count <= 5:
            bisect.insort(q, x)
            return
        n, np_ = self._n, self._np
        # the cell the value falls in; the extreme markers follow new extremes
        if x < q[0]:
            q[0] = x
            k = 0
        elif x >= q[4]:
            q[4] = x
            k = 3
        else:
            k = bisect.bisect_right(q, x, 1, 4) - 1
        for i in range(k + 1, 5):
            n[i] += 1.0
        for i in range(5):
            np_[i] += self._dn[i]
        for i in (1, 2, 3):
            d = np_[i] - n[i]
            if (d >= 1.0 and n[i + 1] - n[i] > 1.0) or (d <= -1.0 and n[i - 1] - n[i] < -1.0):
                s = 1.0 if d > 0 else -1.0
                h = self._parabolic(i, s)
                if not q[i - 1] < h < q[i + 1]:
                    j = i + int(s)
                    h = q[i] + s * (q[j] - q[i]) / (n[j] - n[i])
                q[i] = h
                n[i] += s

    def _parabolic(self, i: int, s: float) -> float:
        q, n = self._q, self._n
        return q[i] + s / (n[i + 1] - n[i - 1]) * (
            (n[i] - n[i - 1] + s) * (q[i + 1] - q[i]) / (n[i + 1] - n[i])
            + (n[i + 1] - n[i] - s) * (q[i] - q[i - 1]) / (n[i] - n[i - 1])
        )

    def get(self) -> float | None:
        """The estimate; ``None`` before the first value."""
        q = self._q
        if self._count <= 5:
            return q[min(int(self.p * len(q)), len(q) - 1)] if q else None
        return q[2]

    def __repr__(self) -> str:
        est = self.get()
        return f"P2Quantile(p={self.p!r}, estimate={est if est is None else round(est, 6)!r})"

