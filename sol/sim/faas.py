"""Simulated FaaS facility: invocations, a local object cache, cold starts, memory cost.

* Every function needs one cache object (its app's package and data, as Faa$T caches per
  application). An invocation finds the object warm (resident), loading (it waits for the
  rest: a cold start) or absent (it loads it: a cold start).
* A load is a transfer, then the runtime's start-up. Transfers share the node's load
  bandwidth (``load_bw``): N concurrent transfers each get ``load_bw / N``, and one never more
  than ``load_bw_per_load`` (one stream from remote storage). The start-up is the object's
  own, drawn once per object. ``isolated_cold_start_s`` is the cold start of each object on
  an idle node; docs/simulator.md gives the published latencies it is calibrated to.
* The node holds at most ``memory_bytes`` of objects, loading or resident. A load that would
  not fit first drops residencies already expired, then evicts idle objects, least recently
  used first (an object is idle when no invocation runs or waits on it; a prewarm still
  loading is idle too). When that is not enough, a cold start loads anyway (counted as
  overcommitted: the invocation has to run) and a prewarm is refused.
* After an invocation the platform keeps the object for ``keepalive_s`` past its end: the
  fixed 10-minute keep-alive Azure Functions used when the 2019 trace was taken (Shahrad et
  al., "Serverless in the Wild", ATC'20). An agent's ``prewarm`` loads an object ahead and
  keeps it for the same keep-alive after it is loaded; ``evict`` drops it at once, unless an
  invocation runs on it (a running instance holds its memory: the evict is refused, 0 bytes).
* Memory-time is the size of every object from its load's start to its end, integrated over
  time; the wasted part is resident time in which no invocation of the object runs (ATC'20's
  "wasted memory time").
* Recorded traces are short (the 2019 sample is one hour): ``ResampledTrace`` replays the
  recording once, then draws every later pass again from it, so the previous hour is no
  oracle of the next.

Invocations are processed one by one in time order (exact; about a microsecond each);
transfer completions are events between them, computed from the processor-sharing
bandwidth in closed form. A cold start's wait is counted when its transfer ends.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sol.facilities import CacheObject, Invocation, Prewarm, Residency
from sol.sim._common import (
    STREAM_FAAS_INVOCATIONS,
    STREAM_FAAS_SETUP,
    FacilityBase,
    FacilityView,
    FloatArray,
    IntArray,
    Series,
    block_rng,
    looped_slices,
)

_INF = math.inf

#: Cold-start calibration (the sources, and the percentiles this gives, in docs/simulator.md,
#: "FaaS"): an object's runtime start-up is lognormal, after a transfer at up to 200 MB/s, so
#: that a cold start alone on the node lands where measurements of production platforms put it.
FAAS_INIT_MEDIAN_S = 1.5
FAAS_INIT_LOG_SIGMA = 0.7
#: one transfer from remote storage (assumption: one blob-store stream); the node's link,
#: shared by its concurrent transfers (assumption: a 10 Gb/s NIC)
FAAS_LOAD_BW_PER_LOAD = 200e6
FAAS_LOAD_BW = 1.25e9

#: block of ``STREAM_FAAS_SETUP`` that draws the objects' start-up times (blocks 0-2 draw sizes)
_INIT_BLOCK = 3
#: ``ResampledTrace`` draws pass ``c`` from block ``_RESAMPLE_BLOCK0 + c`` of
#: ``STREAM_FAAS_INVOCATIONS``, far above the blocks the trace readers and generators use
_RESAMPLE_BLOCK0 = 1 << 41


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


class LoopedTrace(InvocationStream, Protocol):
    """A recorded trace that starts over at its end, every ``span_s`` seconds."""

    @property
    def span_s(self) -> float: ...


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


def _window(
    t: FloatArray, f: IntArray, d: FloatArray, t0: float, t1: float
) -> tuple[FloatArray, IntArray, FloatArray]:
    lo, hi = np.searchsorted(t, (t0, t1), side="left").tolist()  # t is sorted
    return t[lo:hi], f[lo:hi], d[lo:hi]


#: extra-Poisson hour-to-hour spread of a function's rate: the std of log(second half-hour /
#: first half-hour) of the 2019 sample's non-timer functions with at least 50 invocations in
#: each half is 0.33, of which Poisson noise explains sqrt(0.016); split between the two
#: halves that is 0.22 per half (0.15-0.22 for thresholds of 20-200 invocations)
FAAS_PASS_GAIN_LOG_SIGMA = 0.2


@dataclass
class ResampledTrace:
    """A recorded trace replayed once, then drawn again for every later pass.

    Pass 0 is the recording. Pass ``c >= 1`` bins the recording's pass ``c`` by ``bin_s``
    (the 2019 trace's minutes) and draws each bin's count of each function from a Poisson
    law whose mean is the recorded count times the function's gain for that pass (lognormal,
    mean 1, log-std ``gain_log_sigma``), at uniform times inside the bin, with durations drawn
    from the function's own in that pass. So a function keeps its rate and its shape over the
    hour on average, but no pass repeats another. A function whose binned counts repeat with
    a period that divides the recording (a timer every 5 minutes) keeps its recorded counts
    when ``keep_periodic``: a real timer is that predictable.
    """

    trace: LoopedTrace
    seed: int
    bin_s: float = 60.0
    gain_log_sigma: float = FAAS_PASS_GAIN_LOG_SIGMA
    keep_periodic: bool = True
    _cache: dict[int, tuple[FloatArray, IntArray, FloatArray]] = field(default_factory=dict, repr=False)
    _kept: npt.NDArray[np.bool_] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.trace.span_s > 0 or not self.bin_s > 0:
            raise ValueError("a resampled trace needs a positive span and bin")

    @property
    def functions(self) -> tuple[str, ...]:
        return self.trace.functions

    @property
    def function_object(self) -> IntArray:
        return self.trace.function_object

    @property
    def objects(self) -> tuple[str, ...]:
        return self.trace.objects

    @property
    def object_bytes(self) -> IntArray:
        return self.trace.object_bytes

    @property
    def source(self) -> str:
        return self.trace.source

    @property
    def span_s(self) -> float:
        return self.trace.span_s

    @property
    def n_bins(self) -> int:
        return max(1, math.ceil(self.span_s / self.bin_s - 1e-9))

    def counts(self, t: FloatArray, f: IntArray, c: int) -> IntArray:
        """Invocations of pass ``c`` (times in trace time) binned: functions x bins."""
        m = self.n_bins
        b = np.clip(np.floor((t - c * self.span_s) / self.bin_s).astype(np.int64), 0, m - 1)
        n = len(self.functions)
        out: IntArray = np.bincount(f * m + b, minlength=n * m).reshape(n, m)
        return out

    def periodic(self) -> npt.NDArray[np.bool_]:
        """Functions whose recorded binned counts repeat with a period dividing the span."""
        if self._kept is None:
            t, f, _ = self.trace.between(0.0, self.span_s)
            counts = self.counts(t, f, 0)
            m = counts.shape[1]
            kept = np.zeros(counts.shape[0], bool)
            exact = abs(m * self.bin_s - self.span_s) < 1e-6 * self.span_s
            if exact:
                for p in range(1, m // 2 + 1):
                    if m % p == 0:
                        kept |= (counts[:, p:] == counts[:, :-p]).all(axis=1)
            self._kept = kept & (counts.sum(axis=1) > 0)
        return self._kept

    def _pass(self, c: int) -> tuple[FloatArray, IntArray, FloatArray]:
        got = self._cache.get(c)
        if got is not None:
            return got
        span = self.span_s
        t, f, d = self.trace.between(c * span, (c + 1) * span)
        if c > 0:
            t, f, d = self._redraw(c, t, f, d)
        got = (t, f, d)
        if len(self._cache) > 3:
            self._cache.pop(next(iter(self._cache)))
        self._cache[c] = got
        return got

    def _redraw(
        self, c: int, t: FloatArray, f: IntArray, d: FloatArray
    ) -> tuple[FloatArray, IntArray, FloatArray]:
        rng = block_rng(self.seed, STREAM_FAAS_INVOCATIONS, _RESAMPLE_BLOCK0 + c)
        n = len(self.functions)
        counts = self.counts(t, f, c)
        s = self.gain_log_sigma
        gain = np.exp(rng.normal(-0.5 * s * s, s, n)) if s > 0 else np.ones(n)
        kept = self.periodic() if self.keep_periodic else np.zeros(n, bool)
        lam = counts * np.where(kept, 0.0, gain)[:, None]
        k = rng.poisson(lam)
        fn, bn = np.nonzero(k)
        reps = k[fn, bn]
        f_new = np.repeat(fn, reps).astype(np.int64)
        b_new = np.repeat(bn, reps)
        start = c * self.span_s + self.bin_s * b_new
        width = np.minimum(self.bin_s, c * self.span_s + self.span_s - start)
        t_new = start + rng.uniform(0.0, 1.0, f_new.size) * width
        # durations: the function's own in this pass (k > 0 only where it has some)
        order = np.argsort(f, kind="stable")
        first = np.searchsorted(f[order], np.arange(n), side="left")
        per_fn = np.bincount(f, minlength=n)
        pick = first[f_new] + np.minimum(
            (rng.uniform(0.0, 1.0, f_new.size) * per_fn[f_new]).astype(np.int64), per_fn[f_new] - 1
        )
        d_new = d[order][pick]
        keep = kept[f]
        t_all = np.concatenate([t[keep], t_new])
        f_all = np.concatenate([f[keep], f_new])
        d_all = np.concatenate([d[keep], d_new])
        o = np.argsort(t_all, kind="stable")
        return t_all[o], f_all[o], d_all[o]

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]:
        span = self.span_s
        ts: list[FloatArray] = []
        fs: list[IntArray] = []
        ds: list[FloatArray] = []
        if t1 <= t0:
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        # passes that [t0, t1) reaches into (not one that starts at t1)
        for c in range(max(0, math.floor(t0 / span)), math.ceil(t1 / span)):
            t, f, d = _window(*self._pass(c), t0, t1)
            ts.append(t)
            fs.append(f)
            ds.append(d)
        if not ts:
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        if len(ts) == 1:
            return ts[0], fs[0], ds[0]
        return np.concatenate(ts), np.concatenate(fs), np.concatenate(ds)


@dataclass(frozen=True)
class Population:
    """Which population each function belongs to (``names[of_function[f]]``)."""

    names: tuple[str, ...]
    of_function: IntArray

    @classmethod
    def single(cls, name: str, n_functions: int) -> Population:
        return cls((name,), np.zeros(n_functions, np.int64))


class CombinedStream:
    """Several invocation streams on one node, each its own population: their functions
    and objects side by side (names must not collide), their invocations merged in time."""

    def __init__(self, parts: Sequence[tuple[str, InvocationStream]]) -> None:
        if not parts:
            raise ValueError("a combined stream needs at least one part")
        self.parts = tuple(parts)
        self.functions: tuple[str, ...] = tuple(n for _, s in parts for n in s.functions)
        self.objects: tuple[str, ...] = tuple(n for _, s in parts for n in s.objects)
        for what, names in (("function", self.functions), ("object", self.objects)):
            if len(set(names)) != len(names):
                raise ValueError(f"the combined streams share a {what} name")
        f_off = np.cumsum([0, *(len(s.functions) for _, s in parts)])
        o_off = np.cumsum([0, *(len(s.objects) for _, s in parts)])
        self._f_off = f_off.tolist()
        self.function_object: IntArray = np.concatenate(
            [s.function_object + o_off[i] for i, (_, s) in enumerate(parts)]
        ).astype(np.int64)
        self.object_bytes: IntArray = np.concatenate([s.object_bytes for _, s in parts]).astype(np.int64)
        self.population = Population(
            tuple(name for name, _ in parts),
            np.repeat(np.arange(len(parts)), np.diff(f_off)).astype(np.int64),
        )
        self.source = " + ".join(f"{name}: {s.source}" for name, s in parts)

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]:
        got = [s.between(t0, t1) for _, s in self.parts]
        t = np.concatenate([g[0] for g in got])
        f = np.concatenate([g[1] + off for g, off in zip(got, self._f_off, strict=False)])
        d = np.concatenate([g[2] for g in got])
        order = np.argsort(t, kind="stable")
        return t[order], f[order].astype(np.int64), d[order]


@dataclass(frozen=True)
class FaasConfig:
    keepalive_s: float = 600.0
    #: runtime start-up of a cold instance once its object is in: lognormal per object
    init_median_s: float = FAAS_INIT_MEDIAN_S
    init_log_sigma: float = FAAS_INIT_LOG_SIGMA
    #: bytes/s of the node's load bandwidth, shared by its concurrent transfers
    load_bw: float = FAAS_LOAD_BW
    #: bytes/s one transfer gets at most; None: the whole ``load_bw``
    load_bw_per_load: float | None = FAAS_LOAD_BW_PER_LOAD
    #: bytes of objects (loading or resident) the node holds; None: unbounded
    memory_bytes: int | None = None
    #: weight of an invocation of each named population in ``faas.weighted_cold_start_share``
    #: (1 for a population not named)
    population_weights: tuple[tuple[str, float], ...] = ()
    history_s: float = 3600.0
    series_period_s: float = 10.0

    def __post_init__(self) -> None:
        if not (self.keepalive_s >= 0 and self.init_median_s >= 0 and self.init_log_sigma >= 0):
            raise ValueError("keepalive_s, init_median_s and init_log_sigma must be >= 0")
        if not self.load_bw > 0 or (self.load_bw_per_load is not None and not self.load_bw_per_load > 0):
            raise ValueError("load_bw and load_bw_per_load must be > 0")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be > 0 or None, got {self.memory_bytes}")
        for name, w in self.population_weights:
            if not w >= 0:
                raise ValueError(f"population weight of {name!r} must be >= 0, got {w}")

    def transfer_rate(self, n: int) -> float:
        """Bytes/s each of ``n`` concurrent transfers gets (processor sharing)."""
        share = self.load_bw / max(n, 1)
        cap = self.load_bw_per_load
        return share if cap is None or cap > share else cap


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
        population: Population | None = None,
    ) -> None:
        super().__init__(lock, now, origin)
        self.config = config
        self.stream = stream
        self.seed = seed
        n = len(stream.objects)
        n_fn = len(stream.functions)
        self.population = population or Population.single("all", n_fn)
        if self.population.of_function.shape != (n_fn,):
            raise ValueError(f"the population names {self.population.of_function.size} functions, not {n_fn}")
        self._names = stream.objects
        self._index = {name: i for i, name in enumerate(stream.objects)}
        self._size = [int(b) for b in stream.object_bytes.tolist()]
        self._fobj: list[int] = stream.function_object.tolist()
        rng = block_rng(seed, STREAM_FAAS_SETUP, _INIT_BLOCK)
        init = config.init_median_s * np.exp(rng.normal(0.0, config.init_log_sigma, n))
        self._init: list[float] = np.minimum(init, 120.0).tolist()
        # residency: load start (inf = none), ready (inf while transferring), expiry, busy_until
        self._load_start = [_INF] * n
        self._ready = [_INF] * n
        self._expires = [-_INF] * n
        self._busy_until = [-_INF] * n
        # transfers: processor sharing on one virtual clock V (bytes each transfer has got),
        # advanced only at events so the result does not depend on how often we look
        self._xfer = [False] * n
        self._v0 = [0.0] * n
        self._seq = [0] * n
        self._heap: list[tuple[float, int, int]] = []
        self._n_xfer = 0
        self._ps_t = origin
        self._ps_v = 0.0
        self._next_done = _INF
        self._load_count = 0
        # invocations waiting for an object's transfer: count, sum of arrival times, longest run
        self._wait_n = [0] * n
        self._wait_t = [0.0] * n
        self._wait_d = [0.0] * n
        # capacity: bytes loading or resident, and objects by last use (oldest first)
        self._used = 0
        self._lru: OrderedDict[int, None] = OrderedDict()
        self._touch = [-_INF] * n
        self._inv_f = [0] * n_fn
        self._cold_f = [0] * n_fn
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
                "prewarms_refused",
                "evictions",
                "evictions_refused_busy",
                "capacity_evictions",
                "capacity_evicted_bytes",
                "overcommitted_loads",
                "bytes_loaded",
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

    def isolated_cold_start_s(self) -> FloatArray:
        """Each object's cold start on an idle node: its transfer alone, then its start-up."""
        rate = self.config.transfer_rate(1)
        out: FloatArray = np.array(self._size, np.float64) / rate + np.array(self._init)
        return out

    # -- transfers (processor sharing) --------------------------------------------------
    def _v_at(self, t: float) -> float:
        """The virtual clock at ``t``, no completion pending before ``t``."""
        if self._n_xfer == 0:
            return self._ps_v
        return self._ps_v + (t - self._ps_t) * self.config.transfer_rate(self._n_xfer)

    def _set_clock(self, t: float) -> None:
        self._ps_v = self._v_at(t)
        self._ps_t = t

    def _plan_next(self) -> None:
        heap = self._heap
        while heap:
            vf, seq, o = heap[0]
            if self._xfer[o] and self._seq[o] == seq:
                rate = self.config.transfer_rate(self._n_xfer)
                self._next_done = self._ps_t + max(0.0, vf - self._ps_v) / rate
                return
            heapq.heappop(heap)
        self._next_done = _INF

    def _transfers_until(self, t: float) -> None:
        """Complete, in time order, every transfer that ends at or before ``t``."""
        while self._next_done <= t:
            tc = self._next_done
            vf, _, o = heapq.heappop(self._heap)
            self._ps_v = vf
            self._ps_t = tc
            self._n_xfer -= 1
            self._xfer[o] = False
            self._transfer_done(o, tc)
            self._plan_next()

    def _transfer_done(self, o: int, tc: float) -> None:
        ready = tc + self._init[o]
        self._ready[o] = ready
        n = self._wait_n[o]
        if n == 0:
            self._expires[o] = ready + self.config.keepalive_s
            return
        acc = self._acc
        acc["cold_wait_s"] += n * ready - self._wait_t[o]
        end = ready + self._wait_d[o]
        self._expires[o] = end + self.config.keepalive_s
        bu = self._busy_until[o]
        if end > bu:
            acc["busy_byte_s"] += self._size[o] * (end - (ready if ready > bu else bu))
            self._busy_until[o] = end
        self._wait_n[o] = 0
        self._wait_t[o] = 0.0
        self._wait_d[o] = 0.0

    def _start_transfer(self, o: int, t: float) -> None:
        self._set_clock(t)
        self._load_count += 1
        self._seq[o] = self._load_count
        self._v0[o] = self._ps_v
        self._xfer[o] = True
        self._n_xfer += 1
        heapq.heappush(self._heap, (self._ps_v + self._size[o], self._load_count, o))
        self._plan_next()

    def _cancel_transfer(self, o: int, t: float) -> None:
        self._set_clock(t)
        self._xfer[o] = False
        self._n_xfer -= 1
        self._plan_next()

    def _transferred(self, o: int, now: float) -> int:
        return int(min(self._size[o], max(0.0, self._v_at(now) - self._v0[o])))

    # -- residency -------------------------------------------------------------------------
    def _start_load(self, o: int, t: float, *, demand: bool) -> bool:
        """Reserve room for ``o`` and start its transfer at ``t``; False: a prewarm refused."""
        size = self._size[o]
        cap = self.config.memory_bytes
        if cap is not None and self._used + size > cap and not self._make_room(o, t, size):
            if not demand:
                return False
            self._acc["overcommitted_loads"] += 1
        self._used += size
        self._load_start[o] = t
        self._ready[o] = _INF
        self._expires[o] = _INF
        self._lru[o] = None
        self._lru.move_to_end(o)
        self._touch[o] = t
        self._acc["bytes_loaded"] += size
        self._start_transfer(o, t)
        return True

    def _pinned(self, o: int, t: float) -> bool:
        """An invocation runs on ``o`` or waits for it: it cannot be evicted for room."""
        return self._wait_n[o] > 0 or self._busy_until[o] > t

    def _make_room(self, new: int, t: float, size: int) -> bool:
        cap = self.config.memory_bytes
        assert cap is not None
        self._close_expired(t)
        if self._used + size <= cap:
            return True
        acc = self._acc
        for o in list(self._lru):
            if self._used + size <= cap:
                break
            if o == new or self._pinned(o, t):
                continue
            acc["capacity_evictions"] += 1
            acc["capacity_evicted_bytes"] += self.resident_bytes(o, t)
            self._close(o, t)
        return self._used + size <= cap

    def _close_expired(self, t: float) -> None:
        """Close the residencies expired by ``t``. An object's expiry is at least its last
        use plus the keep-alive, so they are all among those unused since ``t - keepalive``:
        the head of the LRU order."""
        horizon = t - self.config.keepalive_s
        expired: list[int] = []
        for o in self._lru:
            if self._touch[o] > horizon:
                break
            if not self._xfer[o] and self._expires[o] <= t:
                expired.append(o)
        for o in expired:
            self._close(o, self._expires[o])

    def _close(self, o: int, end: float) -> None:
        """End object ``o``'s residency at ``end`` (its expiry or an eviction)."""
        start = self._load_start[o]
        if start == _INF:
            return
        if self._xfer[o]:
            self._cancel_transfer(o, end)
        if end > start:
            self._acc["byte_s"] += self._size[o] * (end - start)
            self._series.add_interval(
                start, end, {"resident_gib": self._size[o] / float(1 << 30)}, cover=False
            )
        self._used -= self._size[o]
        self._lru.pop(o, None)
        self._load_start[o] = _INF
        self._ready[o] = _INF
        self._expires[o] = -_INF

    def set_stream(self, stream: InvocationStream) -> None:
        """From now on invocations come from ``stream`` (the same functions and objects, e.g.
        a surge); the caller brings the node up to the switch time first."""
        with self._lock:
            if list(stream.objects) != list(self.stream.objects):
                raise ValueError("set_stream needs the same objects (only the invocations change)")
            if len(stream.functions) != len(self.stream.functions):
                raise ValueError("set_stream needs the same functions (only the invocations change)")
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
        xfer, wait_n, wait_t, wait_d = self._xfer, self._wait_n, self._wait_t, self._wait_d
        lru, touch = self._lru, self._touch
        inv_f, cold_f = self._inv_f, self._cold_f
        size = self._size
        fobj = self._fobj
        acc = self._acc
        cold = 0
        wait_sum = 0.0
        busy_bs = 0.0
        dur_sum = 0.0
        cold_t: list[float] = []
        tl = (ts + self.origin).tolist()
        fl = fs.tolist()
        for t, f, d in zip(tl, fl, ds.tolist(), strict=True):
            if t >= self._next_done:
                self._transfers_until(t)
            o = fobj[f]
            inv_f[f] += 1
            if load_start[o] != _INF and t < expires[o]:
                lru.move_to_end(o)
                touch[o] = t
            else:
                if load_start[o] != _INF:
                    self._close(o, expires[o])
                self._start_load(o, t, demand=True)
            dur_sum += d
            if xfer[o]:
                # its wait is known when the transfer ends
                wait_n[o] += 1
                wait_t[o] += t
                if d > wait_d[o]:
                    wait_d[o] = d
                cold += 1
                cold_f[f] += 1
                cold_t.append(t)
                continue
            r = ready[o]
            wait = r - t if r > t else 0.0
            if wait > 0.0:
                cold += 1
                cold_f[f] += 1
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
        self._transfers_until(now)
        acc["invocations"] += len(tl)
        acc["cold_starts"] += cold
        acc["cold_wait_s"] += wait_sum
        acc["busy_byte_s"] += busy_bs
        acc["duration_s"] += dur_sum
        self._hist_t.extend(tl)
        self._hist_f.extend(fl)
        self._trim(now)
        self._series.add_interval(t0, now, {})
        self._series.add_counts(tl, "invocations_per_s")
        self._series.add_counts(cold_t, "cold_starts_per_s")
        if now - self._last_scan >= self._series.period:
            # close the residencies that expired unseen, so the series shows them
            self._last_scan = now
            self._close_expired(now)
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
        if self._xfer[o]:
            return self._transferred(o, now)
        return self._size[o]

    def _ready_estimate(self, o: int, now: float) -> float:
        """When ``o`` would be ready at today's share of the load bandwidth."""
        if not self._xfer[o]:
            return max(self._ready[o], now)
        left = self._size[o] - self._transferred(o, now)
        return now + left / self.config.transfer_rate(self._n_xfer) + self._init[o]

    def prewarm(self, now: float, name: str) -> Prewarm:
        o = self.object_index(name)
        self._acc["prewarms"] += 1
        if self._load_start[o] != _INF and now < self._expires[o]:
            self._lru.move_to_end(o)
            self._touch[o] = now
            left = self._size[o] - self.resident_bytes(o, now)
            ready = self._ready_estimate(o, now)
            if not self._xfer[o]:
                # its transfer's end sets the expiry of one still loading
                self._expires[o] = max(self._expires[o], ready + self.config.keepalive_s)
            return Prewarm(t=now, name=name, bytes_queued=left, ready_at=ready)
        if self._load_start[o] != _INF:
            self._close(o, self._expires[o])
        if not self._start_load(o, now, demand=False):
            self._acc["prewarms_refused"] += 1
            return Prewarm(t=now, name=name, bytes_queued=0, ready_at=now)
        return Prewarm(t=now, name=name, bytes_queued=self._size[o], ready_at=self._ready_estimate(o, now))

    def evict(self, now: float, name: str) -> int:
        o = self.object_index(name)
        dropped = self.resident_bytes(o, now)
        if self._load_start[o] == _INF:
            return dropped
        if not self._xfer[o] and self._busy_until[o] > now and now < self._expires[o]:
            # a running instance holds its memory: dropping it would count memory the
            # invocation still uses as saved (a policy could "unload" every call mid-run)
            self._acc["evictions_refused_busy"] += 1
            return 0
        self._acc["evictions"] += 1
        if not self._xfer[o]:
            self._close(o, min(now, self._expires[o]))
            return dropped
        # invocations waiting on a transfer that is dropped wait for a new one
        waiting = (self._wait_n[o], self._wait_t[o], self._wait_d[o])
        self._wait_n[o], self._wait_t[o], self._wait_d[o] = 0, 0.0, 0.0
        self._close(o, now)
        if waiting[0]:
            self._start_load(o, now, demand=True)
            self._wait_n[o], self._wait_t[o], self._wait_d[o] = waiting
        return dropped

    def ground_truth(self) -> dict[str, float]:
        a = self._acc
        now = self.t
        open_bs = 0.0
        for o in self._lru:
            open_bs += self._size[o] * max(0.0, min(now, self._expires[o]) - self._load_start[o])
        span = max(self.t - self.origin, 1e-12)
        gb = 1e9
        inv = a["invocations"]
        mem = (a["byte_s"] + open_bs) / gb
        cap = self.config.memory_bytes
        out = {
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
            "faas.gb_loaded": a["bytes_loaded"] / gb,
            "faas.prewarms": a["prewarms"],
            "faas.prewarms_refused": a["prewarms_refused"],
            "faas.evictions": a["evictions"],
            "faas.evictions_refused_busy": a["evictions_refused_busy"],
            "faas.capacity_evictions": a["capacity_evictions"],
            "faas.capacity_evicted_gb": a["capacity_evicted_bytes"] / gb,
            "faas.overcommitted_loads": a["overcommitted_loads"],
        }
        if cap is not None:
            out["faas.memory_capacity_gb"] = cap / gb
        out.update(self._population_truth())
        return out

    def per_function(self) -> tuple[IntArray, IntArray]:
        """Invocations and cold starts of each function so far (benchmarks: ATC'20's
        distribution of per-function cold-start shares)."""
        with self._lock:
            return np.array(self._inv_f, np.int64), np.array(self._cold_f, np.int64)

    def _population_truth(self) -> dict[str, float]:
        """Per population: functions, invocations, cold starts; the cold-start share weighted
        by ``population_weights``, and the mean over invoked functions of their own share."""
        pop = self.population
        inv_f = np.array(self._inv_f, np.float64)
        cold_f = np.array(self._cold_f, np.float64)
        k = len(pop.names)
        n_fn = np.bincount(pop.of_function, minlength=k)
        inv_p = np.bincount(pop.of_function, inv_f, minlength=k)
        cold_p = np.bincount(pop.of_function, cold_f, minlength=k)
        weights = dict(self.config.population_weights)
        w = np.array([weights.get(name, 1.0) for name in pop.names])
        out: dict[str, float] = {}
        for i, name in enumerate(pop.names):
            pre = f"faas.population.{name}."
            out[pre + "functions"] = float(n_fn[i])
            out[pre + "invocations"] = float(inv_p[i])
            out[pre + "cold_starts"] = float(cold_p[i])
            out[pre + "cold_start_share"] = float(cold_p[i] / inv_p[i]) if inv_p[i] else 0.0
        den = float((w * inv_p).sum())
        out["faas.weighted_cold_start_share"] = float((w * cold_p).sum()) / den if den else 0.0
        invoked = inv_f > 0
        out["faas.function_cold_start_share_mean"] = (
            float((cold_f[invoked] / inv_f[invoked]).mean()) if invoked.any() else 0.0
        )
        return out

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        ser = self._series.copy()
        gib = float(1 << 30)
        for o in self._lru:
            ser.add_interval(
                self._load_start[o],
                min(self.t, self._expires[o]),
                {"resident_gib": self._size[o] / gib},
                cover=False,
            )
        return ser.arrays("faas")


class FaasSensorsSim(FacilityView["FaasFacility"]):
    """``FaasSensors`` of the simulated node: mincore-like residency, invocation log."""

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


class FaasActuatorsSim(FacilityView["FaasFacility"]):
    """``FaasActuators`` of the simulated node: read-ahead and drop of cache objects."""

    def prewarm(self, name: str) -> Prewarm:
        return self._at_now(self._f.prewarm, name)

    def evict(self, name: str) -> int:
        return self._at_now(self._f.evict, name)
