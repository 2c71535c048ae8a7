"""Simulated memory facility: regions with phased access frequencies on two tiers.

* A workload is a set of address regions and a sequence of phases; in each phase a region has
  an access frequency ``p``: the share of DAMON sampling intervals in which its sampled page
  is accessed (what ``nr_accesses / max_nr_accesses`` estimates). That is what DAMON reads;
  what the workload does is hidden behind it:
* Hidden per-page rates. Inside a region the pages' access rates are lognormal (a sigma drawn
  per region): DAMON samples one random page per sampling interval and sees it accessed with
  probability ``1 - exp(-rate * interval)``, so a region of heavy-tailed pages reads cooler
  than its mean rate. The rates are calibrated so that the region reads ``p`` on average (a
  replayed recording reads as recorded); a region at ``max_nr_accesses`` is touched anywhere
  from just often enough to ``saturated_rate_span`` times more (drawn per region). Far-tier
  accesses and slowdown follow the hidden rates.
* Each region has a share on the far node (CXL / memory-only NUMA node). The far tier adds
  ``far_extra_ns`` to every access; a workload whose time is ``memory_stall`` bound on memory at
  local latency slows down by ``memory_stall * far_share * far_extra_ns / local_ns``. Unless
  pinned, ``memory_stall`` is drawn per node so that the slowdown with every page far follows
  Pond's measured distribution (``FULL_FAR_SLOWDOWN_CDF``).
* ``migrate()`` queues copies on one migration engine; a region switches tier when its copy
  completes. Each folio (4 KiB page, or 2 MiB huge page for ``huge_page_share`` of the bytes)
  costs ``migrate_folio_s`` of kernel time plus its copy at ``migrate_copy_bw``, and the mover
  never exceeds ``migrate_bw`` (memtierd caps migration by bandwidth). While a copy runs the
  workload loses (a) the mover's kernel time out of its ``workload_cpus``, (b) the copy's share
  of each tier's bandwidth, and (c) the waits of its accesses to pages in flight: a batch of
  ``migrate_batch_bytes`` is unmapped to migration entries while it is copied, and an access to
  it waits half the batch's copy time on average. These costs are wall-clock bound: a copy can
  block the workload for at most its own duration (lost share ``m / (1 + m)``).
* The DAMON sensor draws ``nr_accesses ~ Binomial(max_nr, p)`` per region for the last complete
  aggregation interval, keyed by the interval's index in the seeded stream: one uniformly
  random page per sampling interval, found accessed with the region's mean probability ``p``.

Sources and assumptions of every constant: docs/simulator.md ("Memory").
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

from sol.facilities import DamonRegion, DamonSnapshot, MemoryPressure, Migration, NumaNode
from sol.sim._common import (
    STREAM_MEM_DAMON,
    STREAM_MEM_SETUP,
    FacilityBase,
    FacilityView,
    FloatArray,
    IntArray,
    Series,
    block_rng,
)

LOCAL, FAR = 0, 1
PAGE_BYTES = 4096
HUGE_PAGE_BYTES = 2 << 20

#: Pond (ASPLOS'23, 158 workloads with all memory on emulated CXL memory): the CDF of their
#: slowdown, as (share of workloads, slowdown) knots: about a quarter under 1 %, about 40 %
#: under 5 %, about a quarter over 25 %. The top knot (60 %) is an assumption.
FULL_FAR_SLOWDOWN_CDF: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.26, 0.01),
    (0.42, 0.05),
    (0.77, 0.25),
    (1.0, 0.60),
)

# blocks of the seeded setup stream (STREAM_MEM_SETUP)
_SETUP_PAGE_RATES = 1
_SETUP_SENSITIVITY = 2
_SETUP_PERTURB = 3

#: equal-probability strata of a region's per-page rate distribution (the lognormal's quantiles)
_STRATA = 16
_Z = np.array([NormalDist().inv_cdf((k + 0.5) / _STRATA) for k in range(_STRATA)])


@dataclass(frozen=True)
class MemoryWorkload:
    """Regions ``[start, start+size)`` and phases of access frequencies.

    ``phase_t[i]`` is the trace time phase ``i`` starts (``phase_t[0] == 0``); ``freq[i, j]`` the
    access frequency of region ``j`` in phase ``i`` (0..1). After ``span_s`` the phases repeat.
    """

    start: IntArray
    size: IntArray
    phase_t: FloatArray
    freq: FloatArray
    span_s: float
    aggregation_s: float = 0.1
    max_nr_accesses: int = 20
    source: str = "synthetic"

    def __post_init__(self) -> None:
        if self.freq.shape != (self.phase_t.size, self.start.size) or self.size.shape != self.start.shape:
            raise ValueError("freq must be [phases, regions] with one start and size per region")
        if self.phase_t.size == 0 or self.phase_t[0] != 0.0 or np.any(np.diff(self.phase_t) <= 0):
            raise ValueError("phase_t must start at 0 and increase")
        if self.span_s <= self.phase_t[-1]:
            raise ValueError("span_s must extend past the last phase start")
        if np.any(self.size <= 0) or np.any(np.diff(self.start) < self.size[:-1]):
            raise ValueError("regions must have positive sizes, sorted and not overlapping")

    @property
    def footprint(self) -> int:
        return int(self.size.sum())


@dataclass(frozen=True)
class MemoryConfig:
    local_bytes: int
    far_bytes: int
    #: idle load-to-use latency of local DRAM (assumption, typical two-socket server)
    local_ns: float = 100.0
    #: extra latency of the far tier; Pond (ASPLOS'23) reports +70-90 ns for CXL over local
    far_extra_ns: float = 80.0
    #: share of run time stalled on memory at local latency (the workload's sensitivity).
    #: None: drawn per node (seeded) so that the slowdown with every page far follows Pond's
    #: measured distribution, FULL_FAR_SLOWDOWN_CDF
    memory_stall: float | None = None
    #: the part of that distribution to draw from, as a range of its CDF
    stall_quantiles: tuple[float, float] = (0.0, 1.0)
    #: range of the per-region sigma of the per-page access rates: half of a region's pages
    #: at its base rate, the other half lognormally hotter (assumption: page hotness is
    #: heavy-tailed inside DAMON's regions; docs/simulator.md)
    page_rate_sigma: tuple[float, float] = (0.5, 2.0)
    #: a region DAMON reads saturated is touched 1..span x the least rate that saturates it,
    #: log-uniform per region (assumption)
    saturated_rate_span: float = 10.0
    #: the mover's cap on migration bandwidth, bytes/s (memtierd caps migration by bandwidth)
    migrate_bw: float = 2e9
    #: kernel time per folio migrated besides the copy (isolate, unmap to migration entries,
    #: batched TLB flush, remap): microseconds per 4 KiB page (assumption, docs/simulator.md)
    migrate_folio_s: float = 4e-6
    #: the kernel copies a folio with one thread, bytes/s (assumption; Nimble, ASPLOS'19:
    #: single-threaded copy leaves most of the memory bandwidth unused)
    migrate_copy_bw: float = 4e9
    #: share of the workload's bytes in 2 MiB transparent huge pages (one folio each)
    huge_page_share: float = 0.0
    #: bytes unmapped to migration entries at once: migrate_pages() batches at most
    #: HPAGE_PMD_NR pages (2 MiB on x86-64) since Linux 6.3
    migrate_batch_bytes: int = 2 << 20
    #: CPUs the workload's threads run on; the mover's kernel time is taken from them
    workload_cpus: float = 16.0
    #: sustained bandwidth of each tier, bytes/s, that a migration's copy competes for
    #: (assumptions: a DDR5 server socket; a x16 CXL memory expander)
    local_bw: float = 100e9
    far_bw: float = 30e9
    #: bin width of the time series
    series_period_s: float = 10.0
    #: "first-touch": fill local in address order; "far": everything starts on the far tier
    initial: str = "first-touch"

    def __post_init__(self) -> None:
        positive = (
            "local_ns",
            "migrate_bw",
            "migrate_folio_s",
            "migrate_copy_bw",
            "migrate_batch_bytes",
            "workload_cpus",
            "local_bw",
            "far_bw",
            "series_period_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"memory config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.local_bytes < 0 or self.far_bytes < 0 or self.far_extra_ns < 0:
            raise ValueError("memory config: local_bytes, far_bytes and far_extra_ns must be >= 0")
        if self.memory_stall is not None and not 0.0 <= self.memory_stall <= 1.0:
            raise ValueError(f"memory config: memory_stall must be in [0, 1], got {self.memory_stall!r}")
        lo, hi = self.stall_quantiles
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"memory config: stall_quantiles must be 0 <= lo <= hi <= 1, got {(lo, hi)!r}")
        lo, hi = self.page_rate_sigma
        if not 0.0 <= lo <= hi:
            raise ValueError(f"memory config: page_rate_sigma must be 0 <= lo <= hi, got {(lo, hi)!r}")
        if self.saturated_rate_span < 1.0:
            raise ValueError(
                f"memory config: saturated_rate_span must be >= 1, got {self.saturated_rate_span!r}"
            )
        if not 0.0 <= self.huge_page_share <= 1.0:
            raise ValueError(
                f"memory config: huge_page_share must be in [0, 1], got {self.huge_page_share!r}"
            )
        if self.initial not in ("first-touch", "far"):
            raise ValueError(f"memory config: initial must be 'first-touch' or 'far', got {self.initial!r}")

    def full_far_slowdown(self, memory_stall: float) -> float:
        """The slowdown of a workload with every access on the far tier."""
        return memory_stall * self.far_extra_ns / self.local_ns


@dataclass(frozen=True, slots=True)
class _Copy:
    """One queued copy: ``nbytes`` of region ``region`` to ``to_node`` over ``[start, done)``,
    with its costs to the workload while it runs (slowdown terms, see the module docstring)."""

    start: float
    done: float
    region: int
    to_node: int
    nbytes: float
    #: share of the copy's time the mover spends in the kernel (< 1 when the bandwidth cap idles it)
    duty: float
    #: (a) kernel time out of the workload's CPUs
    cpu: float
    #: (b) the copy's bandwidth share, for the workload's local and far accesses
    bw_local: float
    bw_far: float
    #: (c) waits on pages in flight, per unit of the region's share of the workload's accesses
    inflight: float


def perturbed_plays(workload: MemoryWorkload, seed: int, plays: int) -> MemoryWorkload:
    """``plays`` plays of a recorded ``workload`` end to end, each perturbed so that memorising
    one play does not predict the next (seeded, deterministic).

    A play starts at a random snapshot of the recording and wraps around (a circular time
    shift), and regions of one address area (a gap of 1 GiB or more starts a new one) and one
    size class (same power of two) trade access patterns at random: the same accesses, hot at
    other addresses. Hot bytes of a snapshot stay within 2x of the recording's.
    """
    if plays < 1:
        raise ValueError(f"plays must be >= 1, got {plays}")
    w = workload
    n_ph = w.phase_t.size
    durations = np.diff(np.append(w.phase_t, w.span_s))
    gap = np.diff(w.start) - w.size[:-1]
    area = np.concatenate([[0], np.cumsum(gap >= (1 << 30))])
    size_class = np.floor(np.log2(w.size)).astype(np.int64)
    group = area * 64 + size_class
    groups = [np.nonzero(group == g)[0] for g in np.unique(group)]
    phase_t: list[FloatArray] = []
    freq: list[FloatArray] = []
    t0 = 0.0
    for k in range(plays):
        rng = block_rng(seed, STREAM_MEM_SETUP, _SETUP_PERTURB + 1000 * (k + 1))
        order = np.roll(np.arange(n_ph), -int(rng.integers(n_ph)))
        columns = np.arange(w.start.size)
        for g in groups:
            columns[g] = g[rng.permutation(g.size)]
        d = durations[order]
        phase_t.append(t0 + np.concatenate([[0.0], np.cumsum(d[:-1])]))
        freq.append(w.freq[order][:, columns])
        t0 += float(d.sum())
    return MemoryWorkload(
        start=w.start,
        size=w.size,
        phase_t=np.concatenate(phase_t),
        freq=np.vstack(freq),
        span_s=t0,
        aggregation_s=w.aggregation_s,
        max_nr_accesses=w.max_nr_accesses,
        source=f"{w.source} ({plays} perturbed plays)",
    )


class MemoryFacility(FacilityBase):
    name = "memory"

    def __init__(
        self,
        config: MemoryConfig,
        workload: MemoryWorkload,
        *,
        seed: int,
        lock: threading.RLock,
        now: Callable[[], float],
        origin: float,
        target: str = "workload",
        pool: TierPool | None = None,
        local_room: int | None = None,
    ) -> None:
        super().__init__(lock, now, origin)
        #: the workload's name (``targets()``)
        self.target = target
        #: the tiers and migration engine this workload shares with others (MultiMemoryFacility)
        self._pool = pool
        if config.local_bytes + config.far_bytes < workload.footprint:
            raise ValueError(
                f"the workload's {workload.footprint} bytes do not fit the node "
                f"({config.local_bytes} local + {config.far_bytes} far)"
            )
        self.config = config
        self.seed = seed
        #: the workload's sensitivity to memory latency (pinned by the config, or drawn)
        self.memory_stall = self._draw_memory_stall()
        self._draw_page_rates(workload)
        self._derive(workload)
        size = workload.size.astype(np.float64)
        # placement: share of each region on the far node
        self._far = np.zeros(workload.start.size)
        if config.initial == "far":
            self._far[:] = 1.0
        else:
            room = config.local_bytes if local_room is None else local_room
            for j, s in enumerate(workload.size.tolist()):
                on_local = min(s, max(room, 0))
                room -= on_local
                self._far[j] = 1.0 - on_local / s
        self._size = size
        self._size_total = float(size.sum())
        self._starts: list[int] = workload.start.tolist()
        self._ends: list[int] = (workload.start + workload.size).tolist()
        # per placement (reset when a migration completes): far bytes, far access rate per phase
        self._far_bytes: float | None = None
        self._far_rate: dict[int, float] = {}
        # the phase piece of the last lookup: (phase, trace start, trace end)
        self._phase_piece: tuple[int, float, float] | None = None
        self._pending: deque[_Copy] = deque()  # in engine order: contiguous or with idle gaps
        self._incoming = [0.0, 0.0]
        self._engine_free = origin
        self.t = origin
        #: PSI-like share of the last ~10 s the workload lost (exponential average, as avg10)
        self._stall_avg10 = 0.0
        self._acc = dict.fromkeys(
            (
                "accesses",
                "far_accesses",
                "slow_s",
                "local_byte_s",
                "far_byte_s",
                "bytes_migrated",
                "migration_busy_s",
                "migration_cpu_s",
                "migration_slow_s",
                "hot_byte_s",
                "weighted_byte_s",
                "bytes_failed",
            ),
            0.0,
        )
        self._series = Series(
            origin,
            config.series_period_s,
            ("far_access_share", "slowdown", "local_gib", "far_gib", "hot_gib"),
        )
        self.sensors = MemorySensorsSim(self)
        self.actuators = MemoryActuatorsSim(self)

    # -- the hidden workload -----------------------------------------------------------
    def _draw_memory_stall(self) -> float:
        cfg = self.config
        if cfg.memory_stall is not None:
            return cfg.memory_stall
        lo, hi = cfg.stall_quantiles
        u = lo + (hi - lo) * float(block_rng(self.seed, STREAM_MEM_SETUP, _SETUP_SENSITIVITY).random())
        cdf, slowdown = zip(*FULL_FAR_SLOWDOWN_CDF, strict=True)
        full_far = float(np.interp(u, cdf, slowdown))
        return min(1.0, full_far * cfg.local_ns / cfg.far_extra_ns) if cfg.far_extra_ns > 0 else 0.0

    def _draw_page_rates(self, workload: MemoryWorkload) -> None:
        """Each region's hidden per-page rate distribution (fixed for the facility's life)."""
        cfg = self.config
        n = workload.start.size
        rng = block_rng(self.seed, STREAM_MEM_SETUP, _SETUP_PAGE_RATES)
        lo, hi = cfg.page_rate_sigma
        sigma = rng.uniform(lo, hi, n)
        sigma[workload.size < 2 * PAGE_BYTES] = 0.0  # one page is one rate
        # half of a region's pages at its base rate, the other half lognormally hotter: every
        # page is touched (else DAMON would split the region), a few far more than the rest
        x = np.exp(sigma[:, None] * np.maximum(_Z, 0.0)[None, :])
        self._strata: FloatArray = x / x.mean(axis=1, keepdims=True)  # [regions, strata], mean 1
        self._saturated_gain: FloatArray = np.exp(rng.uniform(0.0, math.log(cfg.saturated_rate_span), n))
        self._p_cap = 1.0 - 0.5 / workload.max_nr_accesses

    def _calibrate(self, freq: FloatArray) -> FloatArray:
        """Mean accesses per page per sampling interval behind DAMON frequencies ``freq``
        ([phases, regions]): the ``y`` with ``mean_k(1 - exp(-y * x_k)) == p`` over the region's
        rate strata ``x_k``; saturated entries get the saturating ``y`` times the region's gain."""
        cap = self._p_cap
        y = np.zeros(freq.shape)
        rows, cols = np.nonzero(freq > 0)
        if rows.size == 0:
            return y
        fv = freq[rows, cols]
        pv = np.minimum(fv, cap)
        # solve once per distinct (region, frequency): traces repeat a few levels per region
        key = cols.astype(np.float64) + 0.5 * pv
        uniq, inv = np.unique(key, return_inverse=True)
        uj = np.floor(uniq).astype(np.int64)
        up = 2.0 * (uniq - uj)
        x = self._strata[uj]
        # Jensen: a spread of rates reads cooler than a uniform one, so the uniform y is a lower bound
        lo = np.log(-np.log1p(-up))
        hi = lo + 16.0
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            q = 1.0 - np.exp(-np.exp(mid)[:, None] * x).mean(axis=1)
            below = q < up
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        yv = np.exp(0.5 * (lo + hi))[inv.reshape(-1)]
        y[rows, cols] = np.where(fv >= cap, yv * self._saturated_gain[cols], yv)
        return y

    def _derive(self, workload: MemoryWorkload, y: FloatArray | None = None) -> None:
        """Everything the facility computes from its workload's access frequencies (``y``: the
        hidden accesses per page per sampling interval, else calibrated from the frequencies)."""
        self.w = workload
        n = workload.max_nr_accesses
        sample_s = workload.aggregation_s / n
        pages = workload.size.astype(np.float64) / PAGE_BYTES
        if y is None:
            y = self._calibrate(workload.freq)
        self._rate = y * (pages / sample_s)  # hidden page accesses/s, [phases, regions]
        self._rate_total = self._rate.sum(axis=1)
        size = workload.size.astype(np.float64)
        self._hot_bytes = (workload.freq > 0).astype(np.float64) @ size
        self._weighted_bytes = workload.freq @ size
        # phase index at which each region's frequency last changed (DAMON age)
        changed = np.vstack([np.ones((1, workload.start.size), bool), np.diff(workload.freq, axis=0) != 0])
        idx = np.where(changed, np.arange(workload.phase_t.size)[:, None], 0)
        self._last_change = np.maximum.accumulate(idx, axis=0)

    def set_workload(self, workload: MemoryWorkload) -> None:
        """From now on the workload touches its regions as ``workload`` says (the same regions,
        e.g. hotter): placement and what was integrated so far stay. The caller brings the
        node up to the switch time first (``SimNode.advance``).

        The hidden rates change by the factor that takes a uniform page from the old frequency
        to the new one (``1 - (1 - p)**k`` is rates x ``k``); a region saturated before and after
        (DAMON cannot show its change) takes the median factor of the others; a region that was
        idle is calibrated afresh. DAMON then reads the new frequencies.
        """
        with self._lock:
            old = self.w
            if not (
                np.array_equal(workload.start, old.start)
                and np.array_equal(workload.size, old.size)
                and np.array_equal(workload.phase_t, old.phase_t)
            ):
                raise ValueError("set_workload needs the same regions and phases (only frequencies change)")
            cap = self._p_cap
            p_old = np.minimum(old.freq, cap)
            p_new = np.minimum(workload.freq, cap)
            sample_s = old.aggregation_s / old.max_nr_accesses
            y_old = self._rate * (sample_s * PAGE_BYTES / old.size.astype(np.float64))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(p_old > 0, np.log1p(-p_new) / np.log1p(-p_old), 0.0)
            saturated = (p_old >= cap) & (p_new >= cap)
            seen = (p_old > 0) & (p_old < cap) & (p_new > 0) & (p_new < cap)
            if saturated.any():
                ratio[saturated] = float(np.median(ratio[seen])) if seen.any() else 1.0
            y = y_old * ratio
            fresh = (p_old <= 0) & (p_new > 0)
            if fresh.any():
                y = np.where(fresh, self._calibrate(np.where(fresh, workload.freq, 0.0)), y)
            self._derive(workload, y)
            self._far_rate.clear()  # far access rates per phase, from the old rates

    # -- phases ------------------------------------------------------------------------
    def _one_phase(self, tau0: float, tau1: float) -> int | None:
        """The phase of trace times ``[tau0, tau1)`` if no phase starts strictly inside it."""
        c = self._phase_piece
        if c is None or not (c[1] <= tau0 < c[2]):
            w = self.w
            span = w.span_s
            cyc = math.floor(tau0 / span)
            ph = int(np.searchsorted(w.phase_t, tau0 - cyc * span, side="right")) - 1
            start = cyc * span + float(w.phase_t[ph])
            end = cyc * span + (float(w.phase_t[ph + 1]) if ph + 1 < w.phase_t.size else span)
            c = self._phase_piece = (ph, start, end)
        return c[0] if tau1 <= c[2] else None

    def _far_state(self, phase: int) -> tuple[float, float]:
        """(bytes on the far node, far page accesses/s in ``phase``) of the current placement."""
        fb = self._far_bytes
        if fb is None:
            fb = self._far_bytes = float(self._far @ self._size)
        fr = self._far_rate.get(phase)
        if fr is None:
            fr = self._far_rate[phase] = float(self._rate[phase] @ self._far)
        return fb, fr

    def _phase_pieces(self, t0: float, t1: float) -> tuple[IntArray, FloatArray, FloatArray]:
        """Split ``[t0, t1)`` at phase and series-bin boundaries: (phase, start, length)."""
        w = self.w
        span = w.span_s
        tau0 = t0 - self.origin
        tau1 = t1 - self.origin
        c0 = math.floor(tau0 / span)
        c1 = math.floor(tau1 / span)
        bounds = [np.array([tau0, tau1])]
        for c in range(c0, c1 + 1):
            b = c * span + np.append(w.phase_t, span)
            bounds.append(b[(b > tau0) & (b < tau1)])
        p = self._series.period
        e0 = math.floor(tau0 / p) + 1
        e1 = math.ceil(tau1 / p)
        if e1 >= e0:
            bounds.append(p * np.arange(e0, e1, dtype=np.float64))
        edges = np.unique(np.concatenate(bounds))
        edges = edges[(edges >= tau0) & (edges <= tau1)]
        starts = edges[:-1]
        lengths = np.diff(edges)
        keep = lengths > 1e-12
        starts, lengths = starts[keep], lengths[keep]
        mids = starts + 0.5 * lengths
        cyc = np.floor(mids / span)
        phase = np.searchsorted(w.phase_t, mids - cyc * span, side="right") - 1
        return phase.astype(np.int64), starts + self.origin, lengths

    # -- stepping ----------------------------------------------------------------------
    def _integrate(self, t0: float, t1: float, copy: _Copy | None) -> None:
        """Integrate ``[t0, t1)``, over which ``copy`` (or none) runs on the engine."""
        if t1 <= t0:
            return
        tau0 = t0 - self.origin
        tau1 = t1 - self.origin
        per = self._series.period
        if math.floor(tau0 / per) + 1 >= math.ceil(tau1 / per):
            ph = self._one_phase(tau0, tau1)
            if ph is not None:
                self._integrate_one(ph, t0, t1 - t0, copy)
                return
        phase, start, length = self._phase_pieces(t0, t1)
        if phase.size == 0:
            return
        cfg = self.config
        total = self._rate_total[phase]
        far = self._rate[phase] @ self._far
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, far / total, 0.0)
        slow = self.memory_stall * share * cfg.far_extra_ns / cfg.local_ns
        span = float(length.sum())
        acc = self._acc
        if copy is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                region_share = np.where(total > 0, self._rate[phase, copy.region] / total, 0.0)
            m = copy.cpu + (1.0 - share) * copy.bw_local + share * copy.bw_far + copy.inflight * region_share
            lost = m / (1.0 + m)
            slow = slow + lost
            acc["migration_slow_s"] += float(lost @ length)
            acc["migration_busy_s"] += span
            acc["migration_cpu_s"] += copy.duty * span
        far_bytes = float(self._far @ self._size)
        local_bytes = float(self._size.sum()) - far_bytes
        for lost_share, piece in zip((slow / (1.0 + slow)).tolist(), length.tolist(), strict=True):
            self._decay_stall(lost_share, piece)
        acc["accesses"] += float(total @ length)
        acc["far_accesses"] += float(far @ length)
        acc["slow_s"] += float(slow @ length)
        acc["local_byte_s"] += local_bytes * span
        acc["far_byte_s"] += far_bytes * span
        acc["hot_byte_s"] += float(self._hot_bytes[phase] @ length)
        acc["weighted_byte_s"] += float(self._weighted_bytes[phase] @ length)
        gib = float(1 << 30)
        self._series.add(
            start,
            length,
            {
                "far_access_share": share,
                "slowdown": 1.0 + slow,
                "local_gib": local_bytes / gib,
                "far_gib": far_bytes / gib,
                "hot_gib": self._hot_bytes[phase] / gib,
            },
        )

    def _integrate_one(self, ph: int, start: float, length: float, copy: _Copy | None) -> None:
        """``_integrate`` of one piece in one phase and one series bin, on scalars."""
        cfg = self.config
        total = float(self._rate_total[ph])
        far_bytes, far = self._far_state(ph)
        share = far / total if total > 0 else 0.0
        slow = self.memory_stall * share * cfg.far_extra_ns / cfg.local_ns
        acc = self._acc
        if copy is not None:
            region_share = float(self._rate[ph, copy.region]) / total if total > 0 else 0.0
            m = copy.cpu + (1.0 - share) * copy.bw_local + share * copy.bw_far + copy.inflight * region_share
            lost = m / (1.0 + m)
            slow += lost
            acc["migration_slow_s"] += lost * length
            acc["migration_busy_s"] += length
            acc["migration_cpu_s"] += copy.duty * length
        local_bytes = self._size_total - far_bytes
        hot = float(self._hot_bytes[ph])
        self._decay_stall(slow / (1.0 + slow), length)
        acc["accesses"] += total * length
        acc["far_accesses"] += far * length
        acc["slow_s"] += slow * length
        acc["local_byte_s"] += local_bytes * length
        acc["far_byte_s"] += far_bytes * length
        acc["hot_byte_s"] += hot * length
        acc["weighted_byte_s"] += float(self._weighted_bytes[ph]) * length
        gib = float(1 << 30)
        self._series.add_values(
            self._series.bin_of(start),
            length,
            (
                length * share,
                length * (1.0 + slow),
                length * (local_bytes / gib),
                length * (far_bytes / gib),
                length * (hot / gib),
            ),
        )

    def _decay_stall(self, lost_share: float, length: float) -> None:
        k = math.exp(-length / 10.0)
        self._stall_avg10 = self._stall_avg10 * k + lost_share * (1.0 - k)

    def pressure(self, now: float) -> MemoryPressure:
        """The workload's extra time so far (cumulative) and its lost share of the last ~10 s."""
        return MemoryPressure(
            t=now, stall_total_s=self._acc["slow_s"], some_avg10=self._stall_avg10, scope="workload"
        )

    def sync(self, now: float) -> None:
        pending = self._pending
        while self.t < now:
            nxt = min(now, self.t + 600.0)  # bounded pieces per step of the loop
            copy = None
            if pending:
                head = pending[0]
                if head.start > self.t:
                    nxt = min(nxt, head.start)
                else:
                    copy = head
                    nxt = min(nxt, head.done)
            self._integrate(self.t, nxt, copy)
            self.t = nxt
            while pending and pending[0].done <= self.t:
                c = pending.popleft()
                j = c.region
                delta = c.nbytes / self._size[j]
                self._far[j] = min(1.0, max(0.0, self._far[j] + (delta if c.to_node == FAR else -delta)))
                self._far_bytes = None
                self._far_rate.clear()
                self._incoming[c.to_node] -= c.nbytes
                self._acc["bytes_migrated"] += c.nbytes

    # -- sensors -----------------------------------------------------------------------
    def snapshot(self, now: float) -> DamonSnapshot:
        w = self.w
        agg = w.aggregation_s
        k = math.floor((now - self.origin) / agg + 1e-9) - 1
        if k < 0:
            regions = tuple(
                DamonRegion(int(s), int(s + z), 0, 0)
                for s, z in zip(w.start.tolist(), w.size.tolist(), strict=True)
            )
            return DamonSnapshot(
                t=now,
                t_start=self.origin,
                t_end=self.origin,
                max_nr_accesses=w.max_nr_accesses,
                regions=regions,
            )
        t_start = self.origin + k * agg
        tau0 = t_start - self.origin
        tau1 = t_start + agg - self.origin
        ph1 = self._one_phase(tau0, tau1)
        if ph1 is not None:
            phase = np.array([ph1])
            p = w.freq[ph1] * (tau1 - tau0) / (tau1 - tau0)  # the weighted mean below, one piece
        else:
            phase, _, length = self._phase_pieces(t_start, t_start + agg)
            p = (length @ w.freq[phase]) / length.sum()
        nr = block_rng(self.seed, STREAM_MEM_DAMON, k).binomial(w.max_nr_accesses, np.clip(p, 0.0, 1.0))
        ph = int(phase[-1])
        tau = (t_start - self.origin) % w.span_s
        changed_at = w.phase_t[self._last_change[ph]]
        age = np.floor(np.maximum(tau - changed_at, 0.0) / agg + 1e-9).astype(np.int64)
        regions = tuple(map(DamonRegion, self._starts, self._ends, nr.tolist(), age.tolist()))
        return DamonSnapshot(
            t=now, t_start=t_start, t_end=t_start + agg, max_nr_accesses=w.max_nr_accesses, regions=regions
        )

    def node_bytes(self) -> tuple[int, int]:
        far = self._far_bytes
        if far is None:
            far = self._far_bytes = float(self._far @ self._size)
        return round(self._size_total - far), round(far)

    def _overlap(self, start: int, end: int) -> tuple[IntArray, FloatArray]:
        w = self.w
        lo = np.maximum(w.start, start)
        hi = np.minimum(w.start + w.size, end)
        ov = (hi - lo).astype(np.float64)
        idx = np.nonzero(ov > 0)[0]
        return idx, ov[idx]

    def placement(self, start: int, end: int) -> dict[int, int]:
        idx, ov = self._overlap(start, end)
        far = float(ov @ self._far[idx]) if idx.size else 0.0
        local = float(ov.sum()) - far
        out: dict[int, int] = {}
        if local > 0.5:
            out[LOCAL] = round(local)
        if far > 0.5:
            out[FAR] = round(far)
        return out

    # -- actuation ---------------------------------------------------------------------
    def migrate(self, now: float, start: int, end: int, to_node: int) -> Migration:
        if to_node not in (LOCAL, FAR):
            raise ValueError(f"unknown NUMA node {to_node}; nodes: {LOCAL} (local), {FAR} (far)")
        if end <= start:
            raise ValueError(f"empty address range [{start:#x}, {end:#x})")
        idx, ov = self._overlap(start, end)
        pool = self._pool
        if pool is None:
            cap = self.config.far_bytes if to_node == FAR else self.config.local_bytes
            local_b, far_b = self.node_bytes()
            used = far_b if to_node == FAR else local_b
            room = cap - used - self._incoming[to_node]
            engine_free = self._engine_free
        else:  # the tier and the engine are the node's, shared with the other workloads
            room = pool.room(to_node)
            engine_free = pool.engine_free
        # bytes of this region still on the other node, less what is already queued to move
        moved = failed = already = 0.0
        done_at = max(now, engine_free)
        for j, o in zip(idx.tolist(), ov.tolist(), strict=True):
            share_other = self._far[j] if to_node == LOCAL else 1.0 - self._far[j]
            want = o * share_other
            already += o - want
            take = max(0.0, min(want, room))
            room -= take
            failed += want - take
            if take <= 0:
                continue
            take_b = float(math.floor(take))
            copy = self._copy(done_at, j, to_node, take_b)
            done_at = copy.done
            self._pending.append(copy)
            self._incoming[to_node] += take_b
            moved += take_b
        self._engine_free = done_at
        if pool is not None:
            pool.engine_free = done_at
        self._acc["bytes_failed"] += failed
        return Migration(
            t=now,
            start=start,
            end=end,
            to_node=to_node,
            bytes_moved=int(moved),
            bytes_failed=round(failed),
            bytes_already=round(already),
            done_at=done_at,
        )

    def _copy(self, start: float, j: int, to_node: int, nbytes: float) -> _Copy:
        """The engine's copy of ``nbytes`` of region ``j`` from ``start``, with its costs."""
        cfg = self.config
        huge = cfg.huge_page_share
        folios = nbytes * ((1.0 - huge) / PAGE_BYTES + huge / HUGE_PAGE_BYTES)
        kernel_s = folios * cfg.migrate_folio_s + nbytes / cfg.migrate_copy_bw
        duration = max(kernel_s, nbytes / cfg.migrate_bw)  # the mover idles to keep to its cap
        duty = kernel_s / duration
        rate = nbytes / duration
        stall = self.memory_stall
        # a batch is unmapped for the time the kernel takes to move it; an access that finds a
        # page of it waits on the migration entry for half that time on average
        batch = min(float(cfg.migrate_batch_bytes), nbytes)
        wait_s = 0.5 * kernel_s * batch / nbytes
        in_flight = duty * batch / float(self._size[j])  # share of the region's pages unmapped
        return _Copy(
            start=start,
            done=start + duration,
            region=j,
            to_node=to_node,
            nbytes=nbytes,
            duty=duty,
            cpu=duty / cfg.workload_cpus,
            # the copy reads one tier and writes the other: both carry `rate` more bytes/s
            bw_local=stall * rate / cfg.local_bw,
            bw_far=stall * (1.0 + cfg.far_extra_ns / cfg.local_ns) * rate / cfg.far_bw,
            inflight=stall * in_flight * wait_s / (cfg.local_ns * 1e-9),
        )

    # -- reports -----------------------------------------------------------------------
    def ground_truth(self) -> dict[str, float]:
        a = self._acc
        span = max(self.t - self.origin, 1e-12)
        local_b, far_b = self.node_bytes()
        return {
            "mem.footprint_bytes": float(self.w.footprint),
            "mem.local_capacity_bytes": float(self.config.local_bytes),
            "mem.accesses": a["accesses"],
            "mem.far_accesses": a["far_accesses"],
            "mem.far_access_share": a["far_accesses"] / a["accesses"] if a["accesses"] > 0 else 0.0,
            "mem.slowdown_mean": 1.0 + a["slow_s"] / span,
            "mem.extra_time_s": a["slow_s"],
            "mem.local_bytes": float(local_b),
            "mem.far_bytes": float(far_b),
            "mem.local_bytes_mean": a["local_byte_s"] / span,
            "mem.far_bytes_mean": a["far_byte_s"] / span,
            "mem.bytes_migrated": a["bytes_migrated"],
            "mem.bytes_migration_failed": a["bytes_failed"],
            "mem.migration_busy_s": a["migration_busy_s"],
            "mem.migration_cpu_s": a["migration_cpu_s"],
            "mem.migration_extra_time_s": a["migration_slow_s"],
            "mem.far_sensitivity": self.config.full_far_slowdown(self.memory_stall),
            "mem.hot_bytes_mean": a["hot_byte_s"] / span,
            "mem.access_weighted_bytes_mean": a["weighted_byte_s"] / span,
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        return self._series.arrays("mem")


def _check_target(f: MemoryFacility, target: str | None) -> None:
    if target is not None and target != f.target:
        raise ValueError(f"unknown memory target {target!r}; targets: {f.target!r}")


class MemorySensorsSim(FacilityView["MemoryFacility"]):
    """``MemorySensors`` of the simulated node: DAMON regions, NUMA nodes, placement.
    One workload, named ``targets()[0]``; ``target=`` may name it or be left out."""

    def targets(self) -> tuple[str, ...]:
        return (self._f.target,)

    def regions(self, target: str | None = None) -> DamonSnapshot:
        _check_target(self._f, target)
        return self._at_now(self._f.snapshot)

    def nodes(self) -> tuple[NumaNode, ...]:
        f = self._f
        with f._lock:
            now = f._synced_now()
            local_b, far_b = f.node_bytes()
            return (
                NumaNode(
                    t=now, node=LOCAL, tier="local", total_bytes=f.config.local_bytes, used_bytes=local_b
                ),
                NumaNode(t=now, node=FAR, tier="far", total_bytes=f.config.far_bytes, used_bytes=far_b),
            )

    def placement(self, start: int, end: int, target: str | None = None) -> Mapping[int, int]:
        f = self._f
        _check_target(f, target)
        with f._lock:
            f._synced_now()
            return f.placement(start, end)

    def pressure(self, target: str | None = None) -> MemoryPressure:
        """The workload's time lost to memory (far accesses and migration): exact, not PSI."""
        _check_target(self._f, target)
        return self._at_now(self._f.pressure)


class MemoryActuatorsSim(FacilityView["MemoryFacility"]):
    """``MemoryActuators`` of the simulated node: a bandwidth-capped migration engine."""

    def migrate(self, start: int, end: int, to_node: int, target: str | None = None) -> Migration:
        _check_target(self._f, target)
        return self._at_now(self._f.migrate, int(start), int(end), int(to_node))


# ---------------------------------------------------------------------------------------
# several workloads on one node
# ---------------------------------------------------------------------------------------


class TierPool:
    """The node's two tiers and its one migration engine, shared by several workloads: a
    workload's copy waits for the engine behind the others' and a tier's room is what every
    workload leaves of it (each workload's copies still cost only that workload: the mover's
    kernel time and bandwidth are charged to the workload whose pages move)."""

    def __init__(self, local_bytes: int, far_bytes: int, origin: float) -> None:
        self.capacity = (int(local_bytes), int(far_bytes))
        self.engine_free = origin
        self.members: list[MemoryFacility] = []

    def used(self) -> tuple[int, int]:
        local = far = 0
        for m in self.members:
            a, b = m.node_bytes()
            local += a
            far += b
        return local, far

    def room(self, node: int) -> float:
        used = self.used()[node]
        incoming = sum(m._incoming[node] for m in self.members)
        return self.capacity[node] - used - incoming


class MultiMemoryFacility(FacilityBase):
    """A node with several workloads sharing its local tier, far tier and migration engine.

    Each member is a :class:`MemoryFacility` of its own (its footprint, DAMON regions, access
    pattern and, unless its config pins it, a sensitivity drawn from Pond's distribution with
    its own seed), so slowdown is per workload. First touch gives each workload local memory in
    proportion to its footprint. Sensors and actuators name the workload with ``target=``
    (``targets()`` lists them; left out: the first).
    """

    name = "memory"

    def __init__(
        self,
        members: list[tuple[str, MemoryConfig, MemoryWorkload, int]],
        *,
        local_bytes: int,
        far_bytes: int,
        lock: threading.RLock,
        now: Callable[[], float],
        origin: float,
    ) -> None:
        super().__init__(lock, now, origin)
        if not members:
            raise ValueError("a multi-workload memory node needs at least one workload")
        names = [m[0] for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"workload names must be unique, got {names}")
        total = sum(w.footprint for _, _, w, _ in members)
        if local_bytes + far_bytes < total:
            raise ValueError(
                f"the workloads' {total} bytes do not fit the node ({local_bytes} local + {far_bytes} far)"
            )
        self.pool = TierPool(local_bytes, far_bytes, origin)
        self.members: dict[str, MemoryFacility] = {}
        for name, cfg, w, seed in members:
            shared = replace(cfg, local_bytes=local_bytes, far_bytes=far_bytes)
            m = MemoryFacility(
                shared,
                w,
                seed=seed,
                lock=lock,
                now=now,
                origin=origin,
                target=name,
                pool=self.pool,
                local_room=int(local_bytes * w.footprint / total),
            )
            self.members[name] = m
            self.pool.members.append(m)
        self.config = replace(members[0][1], local_bytes=local_bytes, far_bytes=far_bytes)
        self.sensors = MultiMemorySensorsSim(self)
        self.actuators = MultiMemoryActuatorsSim(self)

    def member(self, target: str | None) -> MemoryFacility:
        if target is None:
            return self.pool.members[0]
        m = self.members.get(target)
        if m is None:
            raise ValueError(f"unknown memory target {target!r}; targets: {', '.join(self.members)}")
        return m

    def sync(self, now: float) -> None:
        for m in self.pool.members:
            m.sync(now)

    def ground_truth(self) -> dict[str, float]:
        """The node's figures (bytes, accesses and migration summed; the slowdown, its extra
        time and the sensitivity those of the mean workload) and each workload's under
        ``mem.<target>.``."""
        per = {name: m.ground_truth() for name, m in self.members.items()}
        out: dict[str, float] = {}
        mean_keys = ("mem.slowdown_mean", "mem.extra_time_s", "mem.far_sensitivity")
        for key in next(iter(per.values())):
            vals = [g[key] for g in per.values()]
            out[key] = sum(vals) / len(vals) if key in mean_keys else sum(vals)
        acc = out["mem.accesses"]
        out["mem.far_access_share"] = out["mem.far_accesses"] / acc if acc > 0 else 0.0
        out["mem.local_capacity_bytes"] = float(self.pool.capacity[LOCAL])
        for name, g in per.items():
            out.update({f"mem.{name}.{k[len('mem.') :]}": v for k, v in g.items()})
        return out

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        out: dict[str, tuple[FloatArray, FloatArray]] = {}
        for name, m in self.members.items():
            out.update(m._series.arrays(f"mem.{name}"))
        return out


class MultiMemorySensorsSim(FacilityView[MultiMemoryFacility]):
    """``MemorySensors`` of a node with several workloads (``target=`` names one)."""

    def targets(self) -> tuple[str, ...]:
        return tuple(self._f.members)

    def regions(self, target: str | None = None) -> DamonSnapshot:
        m = self._f.member(target)
        return self._at_now(lambda now: m.snapshot(now))

    def nodes(self) -> tuple[NumaNode, ...]:
        f = self._f
        with f._lock:
            now = f._synced_now()
            local_b, far_b = f.pool.used()
            local_cap, far_cap = f.pool.capacity
            return (
                NumaNode(t=now, node=LOCAL, tier="local", total_bytes=local_cap, used_bytes=local_b),
                NumaNode(t=now, node=FAR, tier="far", total_bytes=far_cap, used_bytes=far_b),
            )

    def placement(self, start: int, end: int, target: str | None = None) -> Mapping[int, int]:
        m = self._f.member(target)
        return self._at_now(lambda now: m.placement(start, end))

    def pressure(self, target: str | None = None) -> MemoryPressure:
        m = self._f.member(target)
        return self._at_now(lambda now: m.pressure(now))


class MultiMemoryActuatorsSim(FacilityView[MultiMemoryFacility]):
    """``MemoryActuators`` of a node with several workloads: one engine, ``target=`` names whose
    pages move."""

    def migrate(self, start: int, end: int, to_node: int, target: str | None = None) -> Migration:
        m = self._f.member(target)
        return self._at_now(lambda now: m.migrate(now, int(start), int(end), int(to_node)))
