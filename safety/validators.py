"""Data validators: is this observation fit to learn from? (DESIGN §4.2)

Each validator answers with a ``Verdict`` whose reason a human can read in a log line, so an
agent's ``validate()`` is usually one ``all_of(...)`` over these:

>>> def validate(obs, fresh=Fresh(max_age=2.0), now=10.0):
...     return all_of(
...         finite(obs["util"], "util"),
...         in_range(obs["util"], 0.0, 1.0, "util"),
...         fresh.check(obs["t"], now),
...     )
>>> bool(validate({"util": 0.4, "t": 9.5}))
True
>>> validate({"util": 1.7, "t": 9.5}).reason
'util = 1.7 is outside [0.0, 1.0]'
>>> validate({"util": 0.4, "t": 5.0}).reason
'sample is 5 s old (max 2 s)'

Validators never raise on bad data: a value of the wrong type is a failed verdict too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from sol.sdk import Verdict, as_verdict

__all__ = ["Fresh", "NotFrozen", "all_of", "finite", "in_range"]


def _fmt(value: object) -> str:
    """A compact number for a reason: ``0.1``, ``3``, ``2.5e-07``, ``nan``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return repr(value)
    return f"{float(value):.6g}"


def _as_float(value: object) -> float | None:
    """``value`` as a float if it is a real number (bool excluded), else None."""
    t = type(value)
    if t is float or t is int:  # the common case, without the ABC check (validators run per sample)
        return float(value)  # type: ignore[arg-type]
    if t is bool or not isinstance(value, Real):
        return None
    return float(value)


def _interval(lo: float | None, hi: float | None) -> str:
    return f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def in_range(value: object, lo: float | None, hi: float | None, what: str = "value") -> Verdict:
    """Pass when ``lo <= value <= hi`` (a ``None`` bound is open); NaN is never in range.

    >>> bool(in_range(0.5, 0, 1, "util"))
    True
    >>> in_range(-3, 0, None, "queue length").reason
    'queue length = -3 is below 0'
    >>> in_range(float("nan"), 0, 1, "util").reason
    'util is nan, not in [0, 1]'
    >>> in_range("high", 0, 1, "util").reason
    "util is not a number: 'high'"
    """
    x = _as_float(value)
    if x is None:
        return Verdict.fail(f"{what} is not a number: {value!r}")
    if math.isnan(x):
        return Verdict.fail(f"{what} is nan, not in {_interval(lo, hi)}")
    below = lo is not None and x < lo
    above = hi is not None and x > hi
    if not (below or above):
        return Verdict.ok()
    if lo is not None and hi is not None:
        return Verdict.fail(f"{what} = {_fmt(value)} is outside {_interval(lo, hi)}")
    if below:
        return Verdict.fail(f"{what} = {_fmt(value)} is below {lo}")
    return Verdict.fail(f"{what} = {_fmt(value)} is above {hi}")


def finite(value: object, what: str = "value") -> Verdict:
    """Pass when ``value`` -- a number, or a mapping/sequence/array of them, nested -- has no
    NaN or infinity. The reason names the first offending element.

    >>> bool(finite({"cpu": [0.1, 0.2], "mem": 3}, "obs"))
    True
    >>> finite({"cpu": [0.1, float("nan")]}, "obs").reason
    "obs['cpu'][1] is nan"
    >>> finite(float("-inf"), "power").reason
    'power is -inf'
    >>> finite(None, "power").reason
    'power is not a number: None'
    """
    bad = _first_non_finite(value, what)
    return Verdict.ok() if bad is None else Verdict.fail(bad)


def _first_non_finite(value: object, where: str) -> str | None:
    x = _as_float(value)
    if x is not None:
        return None if math.isfinite(x) else f"{where} is {_fmt(x)}"
    if isinstance(value, bool):
        return None
    # numpy is not imported here: an array can only exist if something imported numpy first
    # (the daemon's own agents need none, and the import costs ~0.15 s and ~15 MiB per start)
    np: Any = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.number):
            return f"{where} is not a numeric array (dtype {value.dtype})"
        if value.size == 0 or np.isfinite(value).all():
            return None
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
        at = index[0] if len(index) == 1 else index
        return f"{where}[{at}] is {_fmt(value[index])}"
    # (plain floats inside are checked inline: no path string is built for a good element)
    if isinstance(value, Mapping):
        for key, item in value.items():
            if type(item) is float and math.isfinite(item):
                continue
            bad = _first_non_finite(item, f"{where}[{key!r}]")
            if bad is not None:
                return bad
        return None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        for i, item in enumerate(value):
            if type(item) is float and math.isfinite(item):
                continue
            bad = _first_non_finite(item, f"{where}[{i}]")
            if bad is not None:
                return bad
        return None
    return f"{where} is not a number: {value!r}"


class Fresh:
    """Fail on stale samples: older than ``max_age`` seconds, or from the future.

    A timestamp more than ``future_tolerance`` seconds ahead of ``now`` means a broken clock
    or a unit mix-up (ms vs s); learning from it would be no safer than from a stale one.

    >>> fresh = Fresh(max_age=1.0)
    >>> bool(fresh.check(sample_time=99.5, now=100.0))
    True
    >>> fresh.check(sample_time=97.0, now=100.0).reason
    'sample is 3 s old (max 1 s)'
    >>> fresh.check(sample_time=100.2, now=100.0).reason
    'sample timestamp is 0.2 s in the future'
    """

    def __init__(self, max_age: float, *, future_tolerance: float = 0.0, what: str = "sample") -> None:
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds, got {max_age!r}")
        if not future_tolerance >= 0:
            raise ValueError(f"future_tolerance must be >= 0 seconds, got {future_tolerance!r}")
        self.max_age = max_age
        self.future_tolerance = future_tolerance
        self.what = what

    def check(self, sample_time: float, now: float) -> Verdict:
        t = _as_float(sample_time)
        if t is None or not math.isfinite(t):
            return Verdict.fail(f"{self.what} timestamp is not a finite time: {sample_time!r}")
        age = now - t
        if age > self.max_age:
            return Verdict.fail(f"{self.what} is {_fmt(age)} s old (max {_fmt(self.max_age)} s)")
        if -age > self.future_tolerance:
            return Verdict.fail(f"{self.what} timestamp is {_fmt(-age)} s in the future")
        return Verdict.ok()

    def __repr__(self) -> str:
        return f"Fresh(max_age={self.max_age!r}, future_tolerance={self.future_tolerance!r})"


class NotFrozen:
    """Fail while a sensor repeats the same value ``n`` times in a row (a frozen sensor).

    Values within ``tolerance`` of the first value of the current run count as the same, so a
    slowly ramping signal is not mistaken for a stuck one. Non-numeric values are compared
    with ``==``; NaN never repeats. Stateful: call ``check`` once per new sample.

    >>> frozen = NotFrozen(3, what="temperature")
    >>> [bool(frozen.check(v)) for v in (41.0, 42.0, 42.0, 42.0, 43.0)]
    [True, True, True, False, True]
    >>> frozen = NotFrozen(3, what="temperature")
    >>> for v in (42.0, 42.0, 42.0):
    ...     verdict = frozen.check(v)
    >>> verdict.reason
    'temperature stuck at 42 for 3 samples in a row (frozen sensor?)'
    """

    def __init__(self, n: int, tolerance: float = 0.0, *, what: str = "value") -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be a count >= 2, got {n!r}")
        if not tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        self.n = n
        self.tolerance = tolerance
        self.what = what
        self._anchor: object = None
        self._run = 0

    @property
    def run_length(self) -> int:
        """How many samples in a row (the last included) matched the run's first value."""
        return self._run

    def check(self, value: object) -> Verdict:
        if self._run and self._same(value, self._anchor):
            self._run += 1
        else:
            self._anchor, self._run = value, 1
        if self._run >= self.n:
            return Verdict.fail(
                f"{self.what} stuck at {_fmt(self._anchor)} for {self._run} samples in a row (frozen sensor?)"
            )
        return Verdict.ok()

    def _same(self, value: object, anchor: object) -> bool:
        x, a = _as_float(value), _as_float(anchor)
        if x is not None and a is not None:
            return abs(x - a) <= self.tolerance  # False for NaN
        try:
            return bool(value == anchor)
        except Exception:  # arrays and other types without a plain ==
            return False

    def reset(self) -> None:
        """Forget the current run (e.g. after the sensor was re-opened)."""
        self._anchor, self._run = None, 0

    def __repr__(self) -> str:
        return f"NotFrozen(n={self.n!r}, tolerance={self.tolerance!r})"


def all_of(*verdicts: Verdict | bool) -> Verdict:
    """The first failed verdict, or ``Verdict.ok()``; plain bools are accepted.

    >>> all_of(Verdict.ok(), True, Verdict.fail("first"), Verdict.fail("second")).reason
    'first'
    >>> bool(all_of())
    True
    """
    for verdict in verdicts:
        v = as_verdict(verdict, what="validator")
        if not v:
            return v
    return Verdict.ok()
