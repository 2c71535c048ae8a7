"""Small shared pieces of the Linux backend: a once-only logger, delta tracking, expiring values."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any


class LogOnce:
    """Logs an event the first time a key is seen (a fallback taken, a facility missing)."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, event: str, level: str = "info", **fields: Any) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        getattr(self.log, level)(event, **fields)


class DeltaTracker:
    """Growth of a set of cumulative counters between calls, robust to members coming and going.

    A member seen for the first time only sets its baseline; a member that disappeared (a
    task that exited, a cgroup removed) stops counting; a counter that went backwards (reset)
    counts from its new value. ``total`` is a monotone sum of the deltas.
    """

    def __init__(self, now: float) -> None:
        self.last_t = now
        self.last: dict[Hashable, float] = {}
        self.total = 0.0
        self.primed = False

    def update(self, values: Mapping[Hashable, float], now: float) -> tuple[float, float]:
        """Returns ``(delta, interval)`` since the previous update."""
        delta = 0.0
        if self.primed:
            for key, value in values.items():
                before = self.last.get(key)
                if before is not None:
                    delta += value - before if value >= before else 0.0
        self.last = dict(values)
        self.primed = True
        interval = max(0.0, now - self.last_t)
        self.last_t = now
        self.total += delta
        return delta, interval


class Expiring:
    """Values kept until a deadline on the caller's clock (host state read at every window
    that changes rarely). A clock that went back (a test's, a reset) reads afresh."""

    def __init__(self) -> None:
        self._d: dict[Hashable, tuple[Any, float, float]] = {}

    def get(self, key: Hashable, now: float) -> tuple[bool, Any]:
        """``(True, value)`` while ``key``'s value is still valid at ``now``, else ``(False, None)``."""
        hit = self._d.get(key)
        if hit is not None and hit[1] <= now < hit[2]:
            return True, hit[0]
        return False, None

    def put(self, key: Hashable, value: Any, now: float, ttl: float) -> None:
        self._d[key] = (value, now, now + ttl)

    def forget(self, *keys: Hashable) -> None:
        for key in keys:
            self._d.pop(key, None)
