"""Simulated CPU facility: primaries with bursty core demand, a harvest group, PSI.

Model (docs/simulator.md has the full story):

* Primary demand comes in windows (5 min in the Azure VM traces) that give each VM's mean and
  peak utilisation. Inside a window, 1 s slots are either a burst slot at the peak or a base
  slot at the level that keeps the window mean exact; the burst slots are drawn per window from
  the node's seeded stream. So a replay reproduces the trace's mean and peak of every window.
* Inside a 100 ms cell, demand is lognormal around the cell's level (coefficient of variation
  ``sub_cv``): the share of time demand exceeds the primaries' cores (PSI "some") and the
  demand not served (the lognormal's partial expectation) are closed forms, so a cell costs a
  few vector operations and no draws.
* The harvest group gets the cores granted to it (a cpuset), the primaries the rest; the batch
  job always has ``harvest_demand_cores`` runnable threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sol.facilities import CPU_GROUPS, CpuPressure, CpuUsage, RunQueueDelay
from sol.sim._common import STREAM_CPU_BURST, FacilityBase, FloatArray, IntArray, Series, block_rng, norm_cdf

_PSI_HORIZONS = (10.0, 60.0, 300.0)
_BLOCK_WINDOWS = 64
_CHUNK_S = 600.0


@dataclass(frozen=True)
class VmCpuDemand:
    """Per-VM CPU utilisation in windows: what a VM CPU trace gives.

    ``avg_pct``/``max_pct`` are ``[windows, vms]`` percentages of each VM's ``vcpus``; a replay
    past the last window wraps around to the first.
    """

    avg_pct: FloatArray
    max_pct: FloatArray
    window_s: float
    vcpus: IntArray
    names: tuple[str, ...]
    source: str = "synthetic"

    def __post_init__(self) -> None:
        if self.avg_pct.ndim != 2 or self.avg_pct.shape != self.max_pct.shape:
            raise ValueError("avg_pct and max_pct must be [windows, vms] arrays of one shape")
        if self.avg_pct.shape[1] != len(self.vcpus) or len(self.names) != len(self.vcpus):
            raise ValueError("one vcpus count and one name per VM column")
        if self.avg_pct.shape[0] == 0:
            raise ValueError("no CPU windows")

    @property
    def n_vms(self) -> int:
        return int(self.avg_pct.shape[1])

    @property
    def span_s(self) -> float:
        return float(self.avg_pct.shape[0] * self.window_s)


@dataclass(frozen=True)
class CpuConfig:
    cores: int
    #: cell of the sub-window model (s); PSI, usage and shortfall windows resolve to it
    cell_s: float = 0.1
    #: burst slot (s); a window holds window_s / slot_s of them
    slot_s: float = 1.0
    #: upper bound of the share of a window's slots at the peak level (assumption, see docs)
    burst_share: float = 0.05
    #: coefficient of variation of demand inside a cell (assumption, see docs)
    sub_cv: float = 0.25
    #: runnable threads of the batch job; None = as many as the node has cores
    harvest_demand_cores: float | None = None
    #: a window counts as not served when more than this share of its demand waited
    unserved_threshold: float = 0.01
    #: trace time at the node's clock start (s)
    trace_offset_s: float = 0.0
    series_period_s: float = 10.0
    initial_harvest_cores: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class CpuFacility(FacilityBase):
    name = "cpu"

    def __init__(
        self,
        config: CpuConfig,
        demand: VmCpuDemand,
        *,
        seed: int,
        lock: threading.RLock,
        now: Callable[[], float],
        origin: float,
    ) -> None:
        super().__init__(lock, now, origin)
        if config.cores < 1:
            raise ValueError(f"a CPU facility needs >= 1 core, got {config.cores}")
        slots = demand.window_s / config.slot_s
        if (
            abs(slots - round(slots)) > 1e-9
            or abs(config.slot_s / config.cell_s - round(config.slot_s / config.cell_s)) > 1e-9
        ):
            raise ValueError("window_s must be a multiple of slot_s, and slot_s of cell_s")
        self.config = config
        self.demand = demand
        self.seed = seed
        self._slots = round(slots)
        self._vcpu_share = demand.vcpus.astype(np.float64) / 100.0
        self._harvest_demand = float(
            config.cores if config.harvest_demand_cores is None else config.harvest_demand_cores
        )
        self._sigma2 = math.log1p(config.sub_cv**2)
        self._sigma = math.sqrt(self._sigma2)
        self._rank_cache: dict[int, np.ndarray] = {}
        self.t = origin
        self._granted = int(config.initial_harvest_cores)
        # cumulative ground truth
        self._acc = dict.fromkeys(
            (
                "primary_demand_core_s",
                "primary_served_core_s",
                "primary_unserved_core_s",
                "primary_unserved_windows",
                "windows",
                "util_pct_s",
                "harvest_granted_core_s",
                "harvested_core_s",
                "primary_psi_some_s",
                "primary_psi_full_s",
                "harvest_psi_some_s",
                "harvest_psi_full_s",
                "harvest_run_delay_s",
            ),
            0.0,
        )
        self._ema = {(g, k, h): 0.0 for g in CPU_GROUPS for k in ("some", "full") for h in _PSI_HORIZONS}
        self._last_usage: dict[str, tuple[float, float, float]] = {g: (origin, 0.0, 0.0) for g in CPU_GROUPS}
        self._last_delay: dict[str, tuple[float, float, float]] = {g: (origin, 0.0, 0.0) for g in CPU_GROUPS}
        self._series = Series(
            origin,
            config.series_period_s,
            (
                "primary_demand_cores",
                "primary_served_cores",
                "primary_unserved_cores",
                "harvest_granted_cores",
                "harvest_used_cores",
                "primary_psi_some",
            ),
        )
        self.sensors = CpuSensorsSim(self)
        self.actuators = CpuActuatorsSim(self)

    # -- demand ------------------------------------------------------------------------
    def _ranks(self, window: IntArray, slot: IntArray) -> IntArray:
        """Rank of each (window, vm, slot) among its window's slots in a seeded shuffle."""
        out = np.empty((window.size, self.demand.n_vms), dtype=np.int64)
        blocks = window // _BLOCK_WINDOWS
        for b in np.unique(blocks):
            b = int(b)
            ranks = self._rank_cache.get(b)
            if ranks is None:
                u = block_rng(self.seed, STREAM_CPU_BURST, b).random(
                    (_BLOCK_WINDOWS, self.demand.n_vms, self._slots)
                )
                ranks = np.argsort(np.argsort(u, axis=2), axis=2).astype(np.int16)
                if len(self._rank_cache) >= 4:
                    self._rank_cache.pop(next(iter(self._rank_cache)))
                self._rank_cache[b] = ranks
            sel = blocks == b
            out[sel] = ranks[window[sel] % _BLOCK_WINDOWS, :, slot[sel]]
        return out

    def _levels(self, cell_start: FloatArray) -> FloatArray:
        """Utilisation (%) of every VM in each cell: ``[cells, vms]``."""
        d = self.demand
        tau = cell_start - self.origin + self.config.trace_offset_s
        window = np.floor(tau / d.window_s + 1e-9).astype(np.int64)
        slot = np.floor((tau - window * d.window_s) / self.config.slot_s + 1e-9).astype(np.int64)
        np.clip(slot, 0, self._slots - 1, out=slot)
        wi = window % d.avg_pct.shape[0]
        avg = d.avg_pct[wi]
        peak = np.maximum(d.max_pct[wi], avg)
        s = self._slots
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(peak > avg, np.minimum(self.config.burst_share, avg / peak), 0.0)
        n_burst = np.rint(share * s)
        with np.errstate(divide="ignore", invalid="ignore"):
            base = np.where(n_burst > 0, (avg * s - peak * n_burst) / (s - n_burst), avg)
        base = np.maximum(base, 0.0)
        burst = self._ranks(window, slot) < n_burst
        out: FloatArray = np.where(burst, peak, base)
        return out

    # -- stepping ----------------------------------------------------------------------
    def sync(self, now: float) -> None:
        # a long gap is integrated in chunks so its arrays stay small (memory bound, not time)
        while now - self.t > _CHUNK_S:
            self._sync_to(self.t + _CHUNK_S)
        self._sync_to(now)

    def _sync_to(self, now: float) -> None:
        if now <= self.t:
            return
        cfg = self.config
        dt = cfg.cell_s
        rel0 = (self.t - self.origin) / dt
        rel1 = (now - self.origin) / dt
        k0 = math.floor(rel0 + 1e-9)
        k1 = math.ceil(rel1 - 1e-9)
        cells = np.arange(k0, k1, dtype=np.float64)
        cstart = self.origin + cells * dt
        pstart = np.maximum(cstart, self.t)
        pend = np.minimum(cstart + dt, now)
        w = pend - pstart
        keep = w > 0
        if not keep.all():
            cstart, pstart, w = cstart[keep], pstart[keep], w[keep]
        self.t = now
        if w.size == 0:
            return
        lv = self._levels(cstart)
        demand = lv @ self._vcpu_share
        util = lv.mean(axis=1)
        cap = float(cfg.cores - self._granted)
        unserved, some = self._shortfall(demand, cap)
        full = np.where(demand > 0, 1.0, 0.0) if cap <= 0 else np.zeros_like(demand)
        served = demand - unserved
        g = float(self._granted)
        h_used = min(g, self._harvest_demand)
        h_some = 1.0 if self._harvest_demand > g else 0.0
        h_full = 1.0 if (g <= 0 and self._harvest_demand > 0) else 0.0
        h_wait = max(0.0, self._harvest_demand - g)
        acc = self._acc
        total_w = float(w.sum())
        acc["primary_demand_core_s"] += float(demand @ w)
        acc["primary_served_core_s"] += float(served @ w)
        acc["primary_unserved_core_s"] += float(unserved @ w)
        bad = unserved > cfg.unserved_threshold * demand
        acc["primary_unserved_windows"] += float(w[bad].sum()) / dt
        acc["windows"] += total_w / dt
        acc["util_pct_s"] += float(util @ w)
        acc["harvest_granted_core_s"] += g * total_w
        acc["harvested_core_s"] += h_used * total_w
        acc["primary_psi_some_s"] += float(some @ w)
        acc["primary_psi_full_s"] += float(full @ w)
        acc["harvest_psi_some_s"] += h_some * total_w
        acc["harvest_psi_full_s"] += h_full * total_w
        acc["harvest_run_delay_s"] += h_wait * total_w
        suffix = total_w - np.cumsum(w)
        for h in _PSI_HORIZONS:
            decay_total = math.exp(-total_w / h)
            weight = (1.0 - np.exp(-w / h)) * np.exp(-suffix / h)
            for grp, kind, share in (
                ("primary", "some", some),
                ("primary", "full", full),
                ("harvest", "some", h_some),
                ("harvest", "full", h_full),
            ):
                key = (grp, kind, h)
                contrib = (
                    float(share @ weight) if isinstance(share, np.ndarray) else share * float(weight.sum())
                )
                self._ema[key] = self._ema[key] * decay_total + contrib
        self._series.add(
            pstart,
            w,
            {
                "primary_demand_cores": demand,
                "primary_served_cores": served,
                "primary_unserved_cores": unserved,
                "harvest_granted_cores": g,
                "harvest_used_cores": h_used,
                "primary_psi_some": some,
            },
        )

    def _shortfall(self, demand: FloatArray, cap: float) -> tuple[FloatArray, FloatArray]:
        """Lognormal sub-cell demand against ``cap`` cores: (E[(X-cap)+], P(X > cap))."""
        if cap <= 0:
            return demand.copy(), np.where(demand > 0, 1.0, 0.0)
        pos = demand > 0
        safe = np.where(pos, demand, 1.0)
        s = self._sigma
        d1 = (np.log(safe / cap) + 0.5 * self._sigma2) / s
        d2 = d1 - s
        some = norm_cdf(d2)
        unserved = safe * norm_cdf(d1) - cap * some
        unserved = np.where(pos, np.maximum(unserved, 0.0), 0.0)
        some = np.where(pos, some, 0.0)
        return unserved, some

    # -- actuation ---------------------------------------------------------------------
    def set_granted(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"harvest cores must be a whole number, got {n!r}")
        if not 0 <= int(n) <= self.config.cores:
            raise ValueError(f"harvest cores must be in [0, {self.config.cores}], got {n}")
        self._granted = int(n)

    # -- reports -----------------------------------------------------------------------
    def cumulative(self, group: str) -> float:
        if group == "primary":
            return self._acc["primary_served_core_s"]
        return self._acc["harvested_core_s"]

    def run_delay_total(self, group: str) -> float:
        if group == "primary":
            return self._acc["primary_unserved_core_s"]
        return self._acc["harvest_run_delay_s"]

    def ground_truth(self) -> dict[str, float]:
        a = self._acc
        span = max(self.t - self.origin, 1e-12)
        return {
            "cpu.cores": float(self.config.cores),
            "cpu.primary_vms": float(self.demand.n_vms),
            "cpu.primary_vcpus": float(self.demand.vcpus.sum()),
            "cpu.primary_demand_core_s": a["primary_demand_core_s"],
            "cpu.primary_served_core_s": a["primary_served_core_s"],
            "cpu.primary_unserved_core_s": a["primary_unserved_core_s"],
            "cpu.primary_unserved_windows": a["primary_unserved_windows"],
            "cpu.windows": a["windows"],
            "cpu.primary_util_mean_pct": a["util_pct_s"] / span,
            "cpu.primary_psi_some_mean": a["primary_psi_some_s"] / span,
            "cpu.primary_run_delay_s": a["primary_unserved_core_s"],
            "cpu.harvest_granted_core_s": a["harvest_granted_core_s"],
            "cpu.harvested_core_s": a["harvested_core_s"],
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        return self._series.arrays("cpu")


def _check_group(group: str) -> str:
    if group not in CPU_GROUPS:
        raise ValueError(f"unknown CPU group {group!r}; known: {', '.join(CPU_GROUPS)}")
    return group


class CpuSensorsSim:
    """``CpuSensors`` of the simulated node."""

    def __init__(self, facility: CpuFacility) -> None:
        self._f = facility

    def total_cores(self) -> int:
        return self._f.config.cores

    def usage(self, group: str) -> CpuUsage:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            total = f.cumulative(group)
            t0, total0, cores0 = f._last_usage[group]
            interval = now - t0
            cores = (total - total0) / interval if interval > 0 else cores0
            f._last_usage[group] = (now, total, cores)
            return CpuUsage(t=now, group=group, cores=cores, interval=interval, total_core_s=total)

    def pressure(self, group: str) -> CpuPressure:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            e = f._ema
            a = f._acc
            return CpuPressure(
                t=now,
                group=group,
                some_avg10=e[(group, "some", 10.0)],
                some_avg60=e[(group, "some", 60.0)],
                some_avg300=e[(group, "some", 300.0)],
                some_total_s=a[f"{group}_psi_some_s"],
                full_avg10=e[(group, "full", 10.0)],
                full_avg60=e[(group, "full", 60.0)],
                full_avg300=e[(group, "full", 300.0)],
                full_total_s=a[f"{group}_psi_full_s"],
            )

    def run_queue_delay(self, group: str) -> RunQueueDelay:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            total = f.run_delay_total(group)
            t0, total0, rate0 = f._last_delay[group]
            interval = now - t0
            rate = (total - total0) / interval if interval > 0 else rate0
            f._last_delay[group] = (now, total, rate)
            return RunQueueDelay(t=now, group=group, total_s=total, rate=rate, interval=interval)


class CpuActuatorsSim:
    """``CpuActuators`` of the simulated node: the harvest group's cpuset."""

    def __init__(self, facility: CpuFacility) -> None:
        self._f = facility

    def set_harvest_cores(self, n: int) -> None:
        f = self._f
        with f._lock:
            f._synced_now()
            f.set_granted(n)

    def harvest_cores(self) -> int:
        return self._f._granted
