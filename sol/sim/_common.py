"""Shared pieces of the simulated facilities: seeded streams, the normal CDF, series bins."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Stream ids of the node's random streams. Each draw is keyed by (seed, stream, block), so a
#: value depends on the simulated time it belongs to and never on how often the node was
#: advanced or read: the same seed gives the same node, byte for byte, whatever the cadence.
STREAM_CPU_BURST = 1
STREAM_MEM_DAMON = 2
STREAM_MEM_PHASES = 3
STREAM_GPU_REQUESTS = 4
STREAM_FAAS_INVOCATIONS = 5
STREAM_FAAS_SETUP = 6
STREAM_CPU_SYNTH = 7
STREAM_MEM_SETUP = 8
STREAM_GPU_SETUP = 9


def looped_slices(times: FloatArray, span: float, t0: float, t1: float) -> list[tuple[int, int, float]]:
    """Index ranges ``[lo, hi)`` of sorted ``times`` (a trace of length ``span`` that repeats
    end to end) falling in ``[t0, t1)``, each with the offset of its repetition."""
    out: list[tuple[int, int, float]] = []
    for c in range(math.floor(t0 / span), math.floor(t1 / span) + 1):
        lo = int(np.searchsorted(times, t0 - c * span, side="left"))
        hi = int(np.searchsorted(times, t1 - c * span, side="left"))
        if hi > lo:
            out.append((lo, hi, c * span))
    return out


def block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    """The generator of one block of one stream (random access in simulated time)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream, int(block)])


def norm_cdf(x: FloatArray) -> FloatArray:
    """Standard normal CDF, vectorised.

    numpy has no ``erf``; this is Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), ample for a
    probability that feeds a PSI share.
    """
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    out: FloatArray = 0.5 * (1.0 + np.where(x >= 0, erf, -erf))
    return out


class Series:
    """Time series binned into fixed periods: integrals in, bin means out.

    Facilities add pieces (start time, length, rate per named series); a piece never straddles
    a bin because every facility's step divides the period. Memory grows with simulated time
    over the period, not with the number of steps. A piece inside one bin (a sync over a short
    gap) takes the scalar paths (``add_values``, ``add_interval``): a few element updates
    instead of a dozen numpy calls on one-element arrays.
    """

    def __init__(self, origin: float, period: float, names: tuple[str, ...]) -> None:
        if period <= 0:
            raise ValueError(f"series period must be > 0, got {period}")
        self.origin = origin
        self.period = period
        self.names = names
        self._cap = 256
        self._cover = np.zeros(self._cap)
        self._sums = {n: np.zeros(self._cap) for n in names}
        self._hi = 0

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = self._cap
        while cap < need:
            cap *= 2
        self._cover = np.concatenate([self._cover, np.zeros(cap - self._cap)])
        for n in self.names:
            self._sums[n] = np.concatenate([self._sums[n], np.zeros(cap - self._cap)])
        self._cap = cap

    def bin_of(self, t: float) -> int:
        """The bin of a piece that starts at ``t``."""
        return max(0, math.floor((t - self.origin) / self.period + 1e-9))

    def add_values(self, i: int, length: float, integrals: Sequence[float], *, cover: bool = True) -> None:
        """Add integrals (rate x seconds, in ``names`` order) over ``length`` s to bin ``i``."""
        if i >= self._cap:
            self._grow(i + 1)
        if i >= self._hi:
            self._hi = i + 1
        if cover:
            self._cover[i] += length
        sums = self._sums
        for n, v in zip(self.names, integrals, strict=True):
            sums[n][i] += v

    def add(
        self,
        start: FloatArray,
        length: FloatArray,
        rates: Mapping[str, FloatArray | float],
        *,
        cover: bool = True,
    ) -> None:
        if start.size == 0:
            return
        idx = np.floor((start - self.origin) / self.period + 1e-9).astype(np.int64)
        np.maximum(idx, 0, out=idx)
        lo = int(idx[0]) if idx.size == 1 else int(idx.min())
        hi = int(idx[-1]) if idx.size == 1 else int(idx.max())
        self._grow(hi + 1)
        self._hi = max(self._hi, hi + 1)
        rel = idx - lo
        span = hi - lo + 1
        if cover:
            self._cover[lo : hi + 1] += np.bincount(rel, length, minlength=span)
        for n, r in rates.items():
            self._sums[n][lo : hi + 1] += np.bincount(rel, length * r, minlength=span)

    def add_counts(self, times: FloatArray | Sequence[float], name: str) -> None:
        """Events at ``times``: the bin mean of ``name`` becomes events per covered second."""
        if len(times) == 0:
            return
        if len(times) > 8:
            idx = np.floor((np.asarray(times, np.float64) - self.origin) / self.period + 1e-9).astype(
                np.int64
            )
            np.maximum(idx, 0, out=idx)
            self._grow(int(idx.max()) + 1)
            np.add.at(self._sums[name], idx, 1.0)
            return
        for t in times.tolist() if isinstance(times, np.ndarray) else times:
            i = self.bin_of(t)
            if i >= self._cap:
                self._grow(i + 1)
            self._sums[name][i] += 1.0

    def copy(self) -> Series:
        other = Series(self.origin, self.period, self.names)
        other._cap = self._cap
        other._cover = self._cover.copy()
        other._sums = {k: v.copy() for k, v in self._sums.items()}
        other._hi = self._hi
        return other

    def add_interval(self, t0: float, t1: float, rates: Mapping[str, float], *, cover: bool = True) -> None:
        """A piece of constant rates over ``[t0, t1)``, split at bin boundaries."""
        if t1 <= t0:
            return
        p = self.period
        b0 = math.floor((t0 - self.origin) / p + 1e-9)
        b1 = math.floor((t1 - self.origin) / p - 1e-9)
        if b0 == b1:
            self._add_one(max(b0, 0), t1 - t0, rates, cover)
            return
        edges = self.origin + p * np.arange(b0 + 1, b1 + 1, dtype=np.float64)
        starts = np.concatenate([[t0], edges])
        ends = np.concatenate([edges, [t1]])
        self.add(starts, ends - starts, dict(rates), cover=cover)

    def _add_one(self, i: int, w: float, rates: Mapping[str, float], cover: bool) -> None:
        if i >= self._cap:
            self._grow(i + 1)
        if i >= self._hi:
            self._hi = i + 1
        if cover:
            self._cover[i] += w
        for n, r in rates.items():
            self._sums[n][i] += w * float(r)

    def arrays(self, prefix: str) -> dict[str, tuple[FloatArray, FloatArray]]:
        cover = self._cover[: self._hi]
        keep = cover > 0
        t = self.origin + self.period * np.nonzero(keep)[0].astype(np.float64)
        out: dict[str, tuple[FloatArray, FloatArray]] = {}
        for n in self.names:
            out[f"{prefix}.{n}"] = (t.copy(), self._sums[n][: self._hi][keep] / cover[keep])
        return out


class FacilityBase:
    """What every simulated facility shares: the node's lock and clock, and lazy syncing.

    A facility's state is brought up to the node's time only when something needs it (a
    sensor read, an actuator write, the ground truth, or the node's periodic flush); the
    models integrate exactly over any gap, so laziness changes nothing but the cost.
    """

    name = ""

    def __init__(self, lock: threading.RLock, now: Callable[[], float], origin: float) -> None:
        self._lock = lock
        self._now = now
        self.origin = origin

    def sync(self, now: float) -> None:
        raise NotImplementedError

    def ground_truth(self) -> dict[str, float]:
        raise NotImplementedError

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        raise NotImplementedError

    def _synced_now(self) -> float:
        now = self._now()
        self.sync(now)
        return now


_F = TypeVar("_F", bound=FacilityBase)
_T = TypeVar("_T")


class FacilityView(Generic[_F]):
    """One side of a simulated facility as agents see it (its sensors, or its actuators).

    The twin of a Linux facility's sensor or actuator object: every call runs under the
    node's lock, on the facility brought up to the node's time first (:meth:`_at_now`).
    """

    def __init__(self, facility: _F) -> None:
        self._f = facility

    def _at_now(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(now, *args)`` under the node's lock, the facility synced to ``now``."""
        f = self._f
        with f._lock:
            return fn(f._synced_now(), *args)
