"""Clocks the runtime owns: virtual (simulation, tests) and monotonic (live)."""

from __future__ import annotations

import math
import threading
import time


class VirtualClock:
    """Discrete-event time. ``now()`` is the current event's time plus what the running
    callback has consumed so far; ``consume`` is how simulated work and injected faults
    (a slow learner, a hung write) take time without anything really waiting."""

    __slots__ = ("_consumed", "_t")

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)
        self._consumed = 0.0

    def now(self) -> float:
        return self._t + self._consumed

    def consume(self, seconds: float) -> None:
        if not seconds >= 0 or math.isinf(seconds):
            # inf means "never returns": charge a year, far past any timeout.
            seconds = 365 * 86400.0 if seconds == math.inf else 0.0
        self._consumed += seconds

    # -- executor side ------------------------------------------------------------------
    def set(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"virtual time cannot go backwards ({t} < {self._t})")
        self._t = t
        self._consumed = 0.0

    def take_consumed(self) -> float:
        c = self._consumed
        self._consumed = 0.0
        return c


class MonotonicClock:
    """Seconds from ``time.monotonic``; ``consume`` really waits (interruptible by stop)."""

    __slots__ = ("_stop",)

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop or threading.Event()

    def now(self) -> float:
        return time.monotonic()

    def consume(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(min(seconds, 365 * 86400.0))
