"""Simulated FaaS facility: invocations, a local object cache, cold starts, memory cost.

* Every function needs one cache object (its app's package and data, as Faa$T caches per
  application). An invocation finds the object warm (resident), loading (it waits for the
  rest: a cold start) or absent (it loads it: a cold start of ``init_s + size / load_bw``).
* After an invocation the platform keeps the object for ``keepalive_s`` past its end: the
  fixed 10-minute keep-alive Azure Functions used when the 2019 trace was taken (Shahrad et
  al., "Serverless in the Wild", ATC'20). An agent's ``prewarm`` loads an object ahead and
  keeps it for the same keep-alive after it is loaded; ``evict`` drops it at once.
* Memory-time is the resident size integrated over time; the wasted part is resident time in
  which no invocation of the object runs (ATC'20's "wasted memory time").
Invocations are processed one by one in time order (exact; a few hundred ns each).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sol.facilities import CacheObject, Invocation, Prewarm, Residency
from sol.sim._common import FacilityBase, FloatArray, IntArray, Series, looped_slices

_INF = math.inf


class InvocationStream(Protocol):
    """Invocations in trace time: start (s, sorted), function index, duration (s)."""

    @property
    def functions(self) -> tuple[str, ...]: ...

    @property
    def function_object(self) -> IntArray:
        """The cache object index of each function."""
        ...

    @property
    def objects(self) -> tuple[str, ...]: ...

    @property
    def object_bytes(self) -> IntArray: ...

    @property
    def source(self) -> str: ...

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]: ...


@dataclass(frozen=True)
class InvocationList:
    """A fixed list of invocations (a trace); it repeats every ``span_s``."""

    start_s: FloatArray
    function: IntArray
    duration_s: FloatArray
    functions: tuple[str, ...]
    function_object: IntArray
    objects: tuple[str, ...]
    object_bytes: IntArray
    span_s: float
    source: str = "trace"

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]:
        parts = looped_slices(self.start_s, self.span_s, t0, t1)
        ts = [self.start_s[lo:hi] + off for lo, hi, off in parts]
        fs = [self.function[lo:hi] for lo, hi, _ in parts]
        ds = [self.duration_s[lo:hi] for lo, hi, _ in parts]
        if not ts:
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        return np.concatenate(ts), np.concatenate(fs), np.concatenate(ds)


@dataclass(frozen=True)
class FaasConfig:
    keepalive_s: float = 600.0
    #: runtime start-up of a cold instance (assumption; cold starts are "up to seconds" in ATC'20)
    init_s: float = 0.25
    #: bytes/s at which an object is read into the cache (assumption: remote blob storage)
    load_bw: float = 200e6
    history_s: float = 3600.0
    series_period_s: float = 10.0


class FaasFacility(FacilityBase):
    name = "faas"

    def __init__(
        self,
        config: FaasConfig,
        stream: InvocationStream,
        *,
        seed: int,
        lock: threading.RLock,
        now: Callable[[], float],
        origin: float,
    ) -> None:
        super().__init__(lock, now, origin)
        self.config = config
        self.stream = stream
        self.seed = seed
        n = len(stream.objects)
        self._names = stream.objects
        self._index = {name: i for i, name in enumerate(stream.objects)}
        self._size = [int(b) for b in stream.object_bytes.tolist()]
        self._fobj = stream.function_object.tolist()
        # residency: load start, ready time, expiry (inf = none), busy_until
        self._load_start = [_INF] * n
        self._ready = [_INF] * n
        self._expires = [-_INF] * n
        self._busy_until = [-_INF] * n
        self.t = origin
        self._last_scan = origin
        self._hist_t: list[float] = []
        self._hist_f: list[int] = []
        self._hist_lo = 0
        self._acc = dict.fromkeys(
            (
                "invocations",
                "cold_starts",
                "cold_wait_s",
                "byte_s",
                "busy_byte_s",
                "duration_s",
                "prewarms",
                "evictions",
            ),
            0.0,
        )
        self._series = Series(
            origin,
            config.series_period_s,
            ("invocations_per_s", "cold_starts_per_s", "resident_gib"),
        )
        self.sensors = FaasSensorsSim(self)
        self.actuators = FaasActuatorsSim(self)

    def _load_time(self, o: int) -> float:
        return self.config.init_s + self._size[o] / self.config.load_bw

    def _close(self, o: int, end: float) -> None:
        """End object ``o``'s residency at ``end`` (its expiry or an eviction)."""
        start = self._load_start[o]
        if start == _INF:
            return
        if end > start:
            self._acc["byte_s"] += self._size[o] * (end - start)
            self._series.add_interval(
                start, end, {"resident_gib": self._size[o] / float(1 << 30)}, cover=False
            )
        self._load_start[o] = _INF
        self._ready[o] = _INF
        self._expires[o] = -_INF

    def set_stream(self, stream: InvocationStream) -> None:
        """From now on invocations come from ``stream`` (the same functions and objects, e.g.
        a surge); the caller brings the node up to the switch time first."""
        with self._lock:
            if list(stream.objects) != list(self.stream.objects):
                raise ValueError("set_stream needs the same objects (only the invocations change)")
            self.stream = stream

    def sync(self, now: float) -> None:
        if now <= self.t:
            return
        t0 = self.t
        ts, fs, ds = self.stream.between(t0 - self.origin, now - self.origin)
        ka = self.config.keepalive_s
        load_start, ready, expires, busy_until = (
            self._load_start,
            self._ready,
            self._expires,
            self._busy_until,
        )
        size = self._size
        fobj = self._fobj
        acc = self._acc
        cold = 0
        wait_sum = 0.0
        busy_bs = 0.0
        dur_sum = 0.0
        cold_t: list[float] = []
        tl = (ts + self.origin).tolist()
        for t, f, d in zip(tl, fs.tolist(), ds.tolist(), strict=True):
            o = fobj[f]
            if load_start[o] != _INF and t < expires[o]:
                wait = ready[o] - t if ready[o] > t else 0.0
            else:
                if load_start[o] != _INF:
                    self._close(o, expires[o])
                wait = self._load_time(o)
                load_start[o] = t
                ready[o] = t + wait
            if wait > 0.0:
                cold += 1
                wait_sum += wait
                cold_t.append(t)
            s = t + wait
            e = s + d
            if e + ka > expires[o]:
                expires[o] = e + ka
            bu = busy_until[o]
            if e > bu:
                busy_bs += size[o] * (e - (s if s > bu else bu))
                busy_until[o] = e
            dur_sum += d
        acc["invocations"] += len(tl)
        acc["cold_starts"] += cold
        acc["cold_wait_s"] += wait_sum
        acc["busy_byte_s"] += busy_bs
        acc["duration_s"] += dur_sum
        self._hist_t.extend(tl)
        self._hist_f.extend(fs.tolist())
        self._trim(now)
        self._series.add_interval(t0, now, {})
        self._series.add_counts(tl, "invocations_per_s")
        self._series.add_counts(cold_t, "cold_starts_per_s")
        if now - self._last_scan >= self._series.period:
            # close the residencies that expired unseen, so the series shows them
            self._last_scan = now
            for o in range(len(size)):
                if load_start[o] != _INF and expires[o] <= now:
                    self._close(o, expires[o])
        self.t = now

    def _trim(self, now: float) -> None:
        cutoff = now - self.config.history_s
        lo = self._hist_lo
        ht = self._hist_t
        while lo < len(ht) and ht[lo] < cutoff:
            lo += 1
        if lo > 4096 and lo > len(ht) // 2:
            del self._hist_t[:lo]
            del self._hist_f[:lo]
            lo = 0
        self._hist_lo = lo

    # -- sensors and actuators ---------------------------------------------------------
    def object_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown cache object {name!r} ({len(self._names)} objects)") from None

    def resident_bytes(self, o: int, now: float) -> int:
        start = self._load_start[o]
        if start == _INF or now >= self._expires[o] or now < start:
            return 0
        if now >= self._ready[o]:
            return self._size[o]
        frac = (now - start) / (self._ready[o] - start)
        return int(self._size[o] * frac)

    def prewarm(self, now: float, name: str) -> Prewarm:
        o = self.object_index(name)
        self._acc["prewarms"] += 1
        if self._load_start[o] != _INF and now < self._expires[o]:
            left = self._size[o] - self.resident_bytes(o, now)
            ready = max(self._ready[o], now)
            self._expires[o] = max(self._expires[o], ready + self.config.keepalive_s)
            return Prewarm(t=now, name=name, bytes_queued=left, ready_at=ready)
        if self._load_start[o] != _INF:
            self._close(o, self._expires[o])
        self._load_start[o] = now
        self._ready[o] = now + self._load_time(o)
        self._expires[o] = self._ready[o] + self.config.keepalive_s
        return Prewarm(t=now, name=name, bytes_queued=self._size[o], ready_at=self._ready[o])

    def evict(self, now: float, name: str) -> int:
        o = self.object_index(name)
        dropped = self.resident_bytes(o, now)
        if self._load_start[o] != _INF:
            self._acc["evictions"] += 1
            self._close(o, min(now, self._expires[o]))
        return dropped

    def ground_truth(self) -> dict[str, float]:
        a = self._acc
        now = self.t
        open_bs = 0.0
        for o in range(len(self._size)):
            if self._load_start[o] != _INF:
                open_bs += self._size[o] * max(0.0, min(now, self._expires[o]) - self._load_start[o])
        span = max(self.t - self.origin, 1e-12)
        gb = 1e9
        inv = a["invocations"]
        mem = (a["byte_s"] + open_bs) / gb
        return {
            "faas.functions": float(len(self.stream.functions)),
            "faas.objects": float(len(self._size)),
            "faas.invocations": inv,
            "faas.invocation_rate_per_s": inv / span,
            "faas.duration_mean_s": a["duration_s"] / inv if inv else 0.0,
            "faas.cold_starts": a["cold_starts"],
            "faas.cold_start_share": a["cold_starts"] / inv if inv else 0.0,
            "faas.cold_start_wait_s": a["cold_wait_s"],
            "faas.memory_gb_s": mem,
            "faas.wasted_memory_gb_s": max(0.0, mem - a["busy_byte_s"] / gb),
            "faas.prewarms": a["prewarms"],
            "faas.evictions": a["evictions"],
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        ser = self._series.copy()
        gib = float(1 << 30)
        for o in range(len(self._size)):
            start = self._load_start[o]
            if start != _INF:
                ser.add_interval(
                    start, min(self.t, self._expires[o]), {"resident_gib": self._size[o] / gib}, cover=False
                )
        return ser.arrays("faas")


class FaasSensorsSim:
    """``FaasSensors`` of the simulated node: mincore-like residency, invocation log."""

    def __init__(self, facility: FaasFacility) -> None:
        self._f = facility

    def objects(self) -> Sequence[CacheObject]:
        f = self._f
        return tuple(CacheObject(name=n, size_bytes=s) for n, s in zip(f._names, f._size, strict=True))

    def residency(self, name: str) -> Residency:
        f = self._f
        with f._lock:
            now = f._synced_now()
            o = f.object_index(name)
            return Residency(t=now, name=name, resident_bytes=f.resident_bytes(o, now), size_bytes=f._size[o])

    def invocations(self, since: float) -> Sequence[Invocation]:
        f = self._f
        with f._lock:
            f._synced_now()
            ht = f._hist_t
            lo = f._hist_lo
            # binary search in the kept history
            hi = len(ht)
            a, b = lo, hi
            while a < b:
                m = (a + b) // 2
                if ht[m] < since:
                    a = m + 1
                else:
                    b = m
            names = f.stream.functions
            objs = f._names
            return tuple(
                Invocation(t=ht[k], function=names[f._hist_f[k]], object=objs[f._fobj[f._hist_f[k]]])
                for k in range(a, hi)
            )


class FaasActuatorsSim:
    """``FaasActuators`` of the simulated node: read-ahead and drop of cache objects."""

    def __init__(self, facility: FaasFacility) -> None:
        self._f = facility

    def prewarm(self, name: str) -> Prewarm:
        f = self._f
        with f._lock:
            return f.prewarm(f._synced_now(), name)

    def evict(self, name: str) -> int:
        f = self._f
        with f._lock:
            return f.evict(f._synced_now(), name)
