"""Simulated memory facility: regions with phased access frequencies on two tiers.

* A workload is a set of address regions and a sequence of phases; in each phase a region has
  an access frequency ``p``: the share of DAMON sampling intervals in which its sampled page
  is accessed (what ``nr_accesses / max_nr_accesses`` estimates). Behind ``p`` is a per-page
  access rate ``-ln(1 - p) / sampling_interval`` (accesses per page per second, Poisson), from
  which far-tier accesses and slowdown follow.
* Each region has a share on the far node (CXL / memory-only NUMA node). The far tier adds
  ``far_extra_ns`` to every access; a workload whose time is ``memory_stall`` bound on memory at
  local latency slows down by ``memory_stall * far_share * far_extra_ns / local_ns``.
* ``migrate()`` queues copies on one migration engine of ``migrate_bw`` bytes/s (memtierd caps
  migration by bandwidth too); a region switches tier when its copy completes, and the
  workload pays ``migration_slowdown`` while the engine is busy.
* The DAMON sensor draws ``nr_accesses ~ Binomial(max_nr, p)`` per region for the last complete
  aggregation interval, keyed by the interval's index in the seeded stream.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sol.facilities import DamonRegion, DamonSnapshot, Migration, NumaNode
from sol.sim._common import STREAM_MEM_DAMON, FacilityBase, FloatArray, IntArray, Series, block_rng

LOCAL, FAR = 0, 1


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
    #: share of run time stalled on memory at local latency (workload sensitivity)
    memory_stall: float = 0.3
    migrate_bw: float = 2e9
    migration_slowdown: float = 0.02
    #: DAMON sampling interval: aggregation / max_nr_accesses (5 ms in the damo recording)
    series_period_s: float = 10.0
    #: "first-touch": fill local in address order; "far": everything starts on the far tier
    initial: str = "first-touch"


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
    ) -> None:
        super().__init__(lock, now, origin)
        if config.local_bytes + config.far_bytes < workload.footprint:
            raise ValueError(
                f"the workload's {workload.footprint} bytes do not fit the node "
                f"({config.local_bytes} local + {config.far_bytes} far)"
            )
        self.config = config
        self.seed = seed
        self._derive(workload)
        size = workload.size.astype(np.float64)
        # placement: share of each region on the far node
        self._far = np.zeros(workload.start.size)
        if config.initial == "far":
            self._far[:] = 1.0
        else:
            room = config.local_bytes
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
        self._pending: deque[tuple[float, int, int, float]] = deque()  # (done_at, region, to_node, bytes)
        self._incoming = [0.0, 0.0]
        self._engine_free = origin
        self.t = origin
        self._acc = dict.fromkeys(
            (
                "accesses",
                "far_accesses",
                "slow_s",
                "local_byte_s",
                "far_byte_s",
                "bytes_migrated",
                "migration_busy_s",
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
    def _integrate(self, t0: float, t1: float) -> None:
        if t1 <= t0:
            return
        tau0 = t0 - self.origin
        tau1 = t1 - self.origin
        per = self._series.period
        if math.floor(tau0 / per) + 1 >= math.ceil(tau1 / per):
            ph = self._one_phase(tau0, tau1)
            if ph is not None:
                self._integrate_one(ph, t0, t1 - t0)
                return
        phase, start, length = self._phase_pieces(t0, t1)
        if phase.size == 0:
            return
        cfg = self.config
        total = self._rate_total[phase]
        far = self._rate[phase] @ self._far
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, far / total, 0.0)
        busy = np.clip(self._engine_free - start, 0.0, length) / length
        slow = cfg.memory_stall * share * cfg.far_extra_ns / cfg.local_ns + cfg.migration_slowdown * busy
        far_bytes = float(self._far @ self._size)
        local_bytes = float(self._size.sum()) - far_bytes
        acc = self._acc
        acc["accesses"] += float(total @ length)
        acc["far_accesses"] += float(far @ length)
        acc["slow_s"] += float(slow @ length)
        span = float(length.sum())
        acc["local_byte_s"] += local_bytes * span
        acc["far_byte_s"] += far_bytes * span
        acc["migration_busy_s"] += float((busy * length).sum())
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

    def _integrate_one(self, ph: int, start: float, length: float) -> None:
        """``_integrate`` of one piece in one phase and one series bin, on scalars."""
        cfg = self.config
        total = float(self._rate_total[ph])
        far_bytes, far = self._far_state(ph)
        share = far / total if total > 0 else 0.0
        busy = min(max(self._engine_free - start, 0.0), length) / length
        slow = cfg.memory_stall * share * cfg.far_extra_ns / cfg.local_ns + cfg.migration_slowdown * busy
        local_bytes = self._size_total - far_bytes
        hot = float(self._hot_bytes[ph])
        acc = self._acc
        acc["accesses"] += total * length
        acc["far_accesses"] += far * length
        acc["slow_s"] += slow * length
        acc["local_byte_s"] += local_bytes * length
        acc["far_byte_s"] += far_bytes * length
        acc["migration_busy_s"] += busy * length
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

    def _derive(self, workload: MemoryWorkload) -> None:
        """Everything the facility computes from its workload's access frequencies."""
        self.w = workload
        n = workload.max_nr_accesses
        sample_s = workload.aggregation_s / n
        pages = workload.size.astype(np.float64) / 4096.0
        p = np.minimum(workload.freq, 1.0 - 0.5 / n)
        lam = -np.log1p(-p) / sample_s
        self._rate = lam * pages  # page accesses/s, [phases, regions]
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
        node up to the switch time first (``SimNode.advance``)."""
        with self._lock:
            old = self.w
            if not (
                np.array_equal(workload.start, old.start)
                and np.array_equal(workload.size, old.size)
                and np.array_equal(workload.phase_t, old.phase_t)
            ):
                raise ValueError("set_workload needs the same regions and phases (only frequencies change)")
            self._derive(workload)
            self._far_rate.clear()  # far access rates per phase, from the old rates

    def sync(self, now: float) -> None:
        while self.t < now:
            nxt = min(now, self.t + 600.0)  # bounded pieces per step of the loop
            if self._pending and self._pending[0][0] < nxt:
                nxt = self._pending[0][0]
            self._integrate(self.t, nxt)
            self.t = nxt
            while self._pending and self._pending[0][0] <= self.t:
                _, j, to, nbytes = self._pending.popleft()
                delta = nbytes / self._size[j]
                self._far[j] = min(1.0, max(0.0, self._far[j] + (delta if to == FAR else -delta)))
                self._far_bytes = None
                self._far_rate.clear()
                self._incoming[to] -= nbytes
                self._acc["bytes_migrated"] += nbytes

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
        cap = self.config.far_bytes if to_node == FAR else self.config.local_bytes
        local_b, far_b = self.node_bytes()
        used = far_b if to_node == FAR else local_b
        room = cap - used - self._incoming[to_node]
        # bytes of this region still on the other node, less what is already queued to move
        moved = failed = already = 0.0
        done_at = max(now, self._engine_free)
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
            done_at += take_b / self.config.migrate_bw
            self._pending.append((done_at, j, to_node, take_b))
            self._incoming[to_node] += take_b
            moved += take_b
        self._engine_free = done_at
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
            "mem.hot_bytes_mean": a["hot_byte_s"] / span,
            "mem.access_weighted_bytes_mean": a["weighted_byte_s"] / span,
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        return self._series.arrays("mem")


class MemorySensorsSim:
    """``MemorySensors`` of the simulated node: DAMON regions, NUMA nodes, placement."""

    def __init__(self, facility: MemoryFacility) -> None:
        self._f = facility

    def regions(self) -> DamonSnapshot:
        f = self._f
        with f._lock:
            return f.snapshot(f._synced_now())

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

    def placement(self, start: int, end: int) -> Mapping[int, int]:
        f = self._f
        with f._lock:
            f._synced_now()
            return f.placement(start, end)


class MemoryActuatorsSim:
    """``MemoryActuators`` of the simulated node: a bandwidth-capped migration engine."""

    def __init__(self, facility: MemoryFacility) -> None:
        self._f = facility

    def migrate(self, start: int, end: int, to_node: int) -> Migration:
        f = self._f
        with f._lock:
            now = f._synced_now()
            return f.migrate(now, int(start), int(end), int(to_node))
