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

Cost: what a cell contributes depends only on its time and on the cores left to the
primaries, and every cell of a 1 s slot has the same level. So the facility computes, per
300 s block of slots and per core count, the per-slot values, their prefix integrals and the
PSI averages' paths once (vectorised). A sync inside a block only extends a pending segment;
a read adds the segment's integrals (a table row, interpolated) to the committed totals; the
segment is committed, split by series bin, when the grant changes, at the block's end and for
the ground truth. A read every second costs microseconds, not a fresh evaluation of its cells.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sol.facilities import CPU_GROUPS, CpuPressure, CpuUsage, RunQueueDelay
from sol.sim._common import (
    STREAM_CPU_BURST,
    FacilityBase,
    FacilityView,
    FloatArray,
    IntArray,
    Series,
    block_rng,
    norm_cdf,
)

_PSI_HORIZONS = (10.0, 60.0, 300.0)
_BLOCK_WINDOWS = 64
#: simulated seconds of one block of precomputed units (see ``CpuFacility._table``)
_BLOCK_S = 300.0
#: largest exponent of the rescaled sums in ``_ema_paths`` (e^30 ~ 1e13: no overflow, and
#: rounding stays ~1e-16 relative to the averages)
_EMA_SPAN = 30.0
#: columns of a block table: integrated quantities, then the PSI averages (some x 3, full x 3)
_C_DEMAND, _C_UTIL, _C_UNSERVED, _C_SOME, _C_FULL, _C_BAD = range(6)
_NQ = 6
_C_EMA = _NQ
_NCOL = _NQ + 2 * len(_PSI_HORIZONS)
_SERIES = (
    "primary_demand_cores",
    "primary_served_cores",
    "primary_unserved_cores",
    "harvest_granted_cores",
    "harvest_used_cores",
    "primary_psi_some",
)
#: slack (units) under which a read is still "inside" a block or a series bin
_EPS = 1e-6


def _ema_paths(shares: FloatArray, log_decay: FloatArray) -> FloatArray:
    """Exponential averages over units, from 0: ``out[k+1] = out[k] a + shares[k] (1 - a)``
    per column with ``a = exp(log_decay)``; ``out`` has one row more than ``shares``.

    Vectorised by unrolling the recurrence over runs of units short enough that
    ``a^-run`` stays below e^_EMA_SPAN.
    """
    n, ncol = shares.shape
    out = np.empty((n + 1, ncol))
    out[0] = 0.0
    run = max(1, int(_EMA_SPAN / float(np.max(-log_decay))))
    one_minus_a = -np.expm1(log_decay)
    for c0 in range(0, n, run):
        seg = shares[c0 : c0 + run]
        i = np.arange(seg.shape[0], dtype=np.float64)[:, None]
        scaled = np.cumsum(seg * np.exp(-i * log_decay), axis=0)
        out[c0 + 1 : c0 + 1 + seg.shape[0]] = (
            out[c0] * np.exp((i + 1.0) * log_decay) + one_minus_a * np.exp(i * log_decay) * scaled
        )
    return out


def _row(tab: _Table, pos: float, n: int) -> list[float]:
    """The integrals from the block's start (in units) and the PSI averages' paths at ``pos``
    units into the block: a table row, interpolated."""
    k = min(max(int(pos), 0), n - 1)
    f = pos - k
    base = tab.base[k].tolist()
    vals = tab.vals[k].tolist()
    out = [base[j] + f * vals[j] for j in range(_NQ)] + [0.0] * (_NCOL - _NQ)
    nh = len(_PSI_HORIZONS)
    for j in range(nh):
        a = math.exp(f * tab.log_decay[_C_EMA + j])
        for c in (_C_EMA + j, _C_EMA + nh + j):
            out[c] = base[c] * a + vals[c] * (1.0 - a)
    return out


class _Pending:
    """The segment not yet committed: units ``pa .. pb`` of ``block`` (``row_a``: ``_row`` at
    ``pa``)."""

    __slots__ = ("block", "pa", "pb", "row_a", "table")

    def __init__(self, block: int, pa: float, pb: float, table: _Table, row_a: list[float]) -> None:
        self.block = block
        self.pa = pa
        self.pb = pb
        self.table = table
        self.row_a = row_a


@dataclass(frozen=True)
class _Table:
    """One block of units at one core count: ``base[k]`` holds the integrals (in units) from
    the block's start to unit ``k`` and the PSI averages' paths at unit ``k``; ``vals[k]`` the
    values of unit ``k``. Inside unit ``k`` at fraction ``f``: integrals ``base + f vals``,
    averages ``base a^f + vals (1 - a^f)``. A unit is a burst slot (or a cell, see
    ``CpuFacility.__init__``): the cells of one slot share its level, so its values."""

    base: FloatArray
    vals: FloatArray
    log_decay: list[float]


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
        # Tables are kept per *unit*: the burst slot when slots are aligned with the node's
        # cells (every cell of a slot has the same level, so the same values), else the cell.
        offset_slots = config.trace_offset_s / config.slot_s
        aligned = abs(offset_slots - round(offset_slots)) <= 1e-9
        self._unit = config.slot_s if aligned else config.cell_s
        self._cells_per_unit = self._unit / config.cell_s
        self._block_units = max(1, round(_BLOCK_S / self._unit))
        self._bin_units = config.series_period_s / self._unit
        self._demand_cache: dict[int, tuple[FloatArray, FloatArray]] = {}
        self._tables: dict[tuple[int, int], _Table] = {}
        # log of the per-unit decay of every table column (0: integrated, not averaged)
        self._log_decay = np.zeros(_NCOL)
        for j, h in enumerate(_PSI_HORIZONS):
            self._log_decay[_C_EMA + j] = self._log_decay[_C_EMA + 3 + j] = -self._unit / h
        self._ld_horizons = [-self._unit / h for h in _PSI_HORIZONS]
        self.t = origin
        self._granted = int(config.initial_harvest_cores)
        if config.series_period_s <= 0:
            raise ValueError(f"series period must be > 0, got {config.series_period_s}")
        # cumulative ground truth: primary integrals in units (the table columns), the
        # harvest group's in seconds: granted, used, PSI some, PSI full, run delay
        self._q_tot = [0.0] * _NQ
        self._units = 0.0
        self._h_tot = [0.0] * 5
        # PSI averages (some x 3 horizons, then full x 3) of the primaries and the harvest group
        self._ema_primary = [0.0] * (2 * len(_PSI_HORIZONS))
        self._ema_harvest = [0.0] * (2 * len(_PSI_HORIZONS))
        self._pend: _Pending | None = None
        self._last_usage: dict[str, tuple[float, float, float]] = {g: (origin, 0.0, 0.0) for g in CPU_GROUPS}
        self._last_delay: dict[str, tuple[float, float, float]] = {g: (origin, 0.0, 0.0) for g in CPU_GROUPS}
        self._series = Series(origin, config.series_period_s, _SERIES)
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

    # -- block tables ------------------------------------------------------------------
    def _block_demand(self, b: int) -> tuple[FloatArray, FloatArray]:
        """Primary demand (cores) and mean VM utilisation (%) of every unit of block ``b``."""
        got = self._demand_cache.get(b)
        if got is None:
            n = self._block_units
            cstart = self.origin + np.arange(b * n, (b + 1) * n, dtype=np.float64) * self._unit
            lv = self._levels(cstart)
            got = (lv @ self._vcpu_share, lv.mean(axis=1))
            if len(self._demand_cache) >= 2:
                self._demand_cache.pop(next(iter(self._demand_cache)))
            self._demand_cache[b] = got
        return got

    def _table(self, b: int, cap: int) -> _Table:
        """Block ``b`` with ``cap`` cores left to the primaries (computed once, then cached)."""
        key = (b, cap)
        tab = self._tables.get(key)
        if tab is not None:
            return tab
        n = self._block_units
        demand, util = self._block_demand(b)
        unserved, some = self._shortfall(demand, float(cap))
        vals = np.empty((n, _NCOL))
        vals[:, _C_DEMAND] = demand
        vals[:, _C_UTIL] = util
        vals[:, _C_UNSERVED] = unserved
        vals[:, _C_SOME] = some
        vals[:, _C_FULL] = np.where(demand > 0, 1.0, 0.0) if cap <= 0 else 0.0
        vals[:, _C_BAD] = np.where(unserved > self.config.unserved_threshold * demand, 1.0, 0.0)
        k = len(_PSI_HORIZONS)
        vals[:, _C_EMA : _C_EMA + k] = some[:, None]
        vals[:, _C_EMA + k :] = vals[:, _C_FULL, None]
        base = np.empty((n + 1, _NCOL))
        base[0, :_NQ] = 0.0
        np.cumsum(vals[:, :_NQ], axis=0, out=base[1:, :_NQ])
        ld = self._log_decay
        base[:, _C_EMA : _C_EMA + k] = _ema_paths(vals[:, _C_EMA : _C_EMA + k], ld[_C_EMA : _C_EMA + k])
        if cap <= 0:
            base[:, _C_EMA + k :] = _ema_paths(vals[:, _C_EMA + k :], ld[_C_EMA + k :])
        else:  # "full" is 0 while any core is left to the primaries
            base[:, _C_EMA + k :] = 0.0
        tab = _Table(base, vals, ld.tolist())
        if len(self._tables) >= 32:
            self._tables.pop(next(iter(self._tables)))
        self._tables[key] = tab
        return tab

    # -- stepping ----------------------------------------------------------------------
    # Time up to ``self.t`` is either committed (in the totals, averages and series bins) or
    # in the pending segment: units ``pa .. pb`` of block ``b`` at the current grant. A sync
    # inside the block only moves ``pb``; a reader adds the segment's integrals (two table
    # rows) to the committed totals; the segment is committed, split by series bin, when the
    # grant changes, at the block's end, and for the ground truth and the series.

    def sync(self, now: float) -> None:
        if now <= self.t:
            return
        n = self._block_units
        x1 = (now - self.origin) / self._unit
        pend = self._pend
        if pend is not None:
            b = pend.block
            if x1 <= (b + 1) * n + _EPS:
                pend.pb = x1 - b * n
                self.t = now
                return
            self._commit()
        x0 = (self.t - self.origin) / self._unit
        b = max(math.floor(x0 / n), math.ceil(x1 / n - _EPS / n) - 1)
        if b * n > x0:
            self._pieces(x0, float(b * n))
            x0 = float(b * n)
        tab = self._table(b, self.config.cores - self._granted)
        self._pend = _Pending(b, x0 - b * n, x1 - b * n, tab, _row(tab, x0 - b * n, n))
        self.t = now

    def _commit(self) -> None:
        """Move the pending segment into the totals, averages and series bins."""
        pend = self._pend
        if pend is None:
            return
        self._pend = None
        if pend.pb > pend.pa:
            n = self._block_units
            self._pieces(pend.block * n + pend.pa, pend.block * n + pend.pb, pend.row_a)

    def _pending_sum(self, c: int) -> float:
        """Integral (in units) of table column ``c`` over the pending segment."""
        pend = self._pend
        if pend is None:
            return 0.0
        pos = pend.pb
        k = min(max(int(pos), 0), self._block_units - 1)
        tab = pend.table
        return tab.base.item(k, c) + (pos - k) * tab.vals.item(k, c) - pend.row_a[c]

    def _pending_units(self) -> float:
        pend = self._pend
        return 0.0 if pend is None else pend.pb - pend.pa

    def _pieces(self, x0: float, x1: float, row0: list[float] | None = None) -> None:
        """Commit units ``x0 .. x1`` (from the origin) at the current grant: the integrals
        between table rows at the block and series bin edges (``row0``: the row at ``x0``)."""
        n = self._block_units
        per = self._bin_units
        cap = self.config.cores - self._granted
        nh = len(_PSI_HORIZONS)
        for b in range(math.floor(x0 / n), math.ceil(x1 / n)):
            lo = max(x0, float(b * n))
            hi = min(x1, float((b + 1) * n))
            if hi <= lo:
                continue
            tab = self._table(b, cap)
            edges = [lo]
            m = math.floor(lo / per) + 1
            while m * per < hi:
                if m * per > lo:
                    edges.append(m * per)
                m += 1
            edges.append(hi)
            rows = [_row(tab, x - b * n, n) for x in edges]
            if row0 is not None and lo == x0:
                rows[0] = row0
            first, last = rows[0], rows[-1]
            ema = self._ema_primary
            for j, ld in enumerate(self._ld_horizons):
                decay = math.exp((hi - lo) * ld)
                for c in (j, nh + j):
                    ema[c] = (ema[c] - first[_C_EMA + c]) * decay + last[_C_EMA + c]
            bins = []
            q_bins = []
            lengths = []
            for i in range(len(edges) - 1):
                ra, rb = rows[i], rows[i + 1]
                bins.append(math.floor(0.5 * (edges[i] + edges[i + 1]) / per))
                q_bins.append([rb[j] - ra[j] for j in range(_NQ)])
                lengths.append(edges[i + 1] - edges[i])
            self._account([last[j] - first[j] for j in range(_NQ)], hi - lo, bins, q_bins, lengths)

    def _account(
        self,
        q: list[float],
        units: float,
        bins: list[int],
        q_bins: list[list[float]],
        units_bins: list[float],
    ) -> None:
        """Add the primaries' integrals ``q`` over ``units`` units (split by series bin in
        ``q_bins``) and the harvest group's constant rates to the totals."""
        dt = self._unit
        span = units * dt
        g, h_used, h_some, h_full, h_wait = self._harvest_rates()
        tot = self._q_tot
        for j in range(_NQ):
            tot[j] += q[j]
        self._units += units
        h = self._h_tot
        h[0] += g * span
        h[1] += h_used * span
        h[2] += h_some * span
        h[3] += h_full * span
        h[4] += h_wait * span
        ema = self._ema_harvest
        k = len(_PSI_HORIZONS)
        for j, hz in enumerate(_PSI_HORIZONS):
            decay = math.exp(-span / hz)
            ema[j] = h_some + (ema[j] - h_some) * decay
            ema[k + j] = h_full + (ema[k + j] - h_full) * decay
        add = self._series.add_values
        for i, qb, ub in zip(bins, q_bins, units_bins, strict=True):
            w = ub * dt
            add(
                max(i, 0),
                w,
                (
                    qb[_C_DEMAND] * dt,
                    (qb[_C_DEMAND] - qb[_C_UNSERVED]) * dt,
                    qb[_C_UNSERVED] * dt,
                    g * w,
                    h_used * w,
                    qb[_C_SOME] * dt,
                ),
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

    # -- the world changing (fault injection, what-if runs) -----------------------------
    def set_demand(self, demand: VmCpuDemand) -> None:
        """From now on the primaries' demand is ``demand`` (the same VMs, e.g. scaled).

        What was integrated so far stays at the old demand; the blocks precomputed from it are
        dropped. The caller brings the node up to the switch time first (``SimNode.advance``).
        """
        with self._lock:
            old = self.demand
            if demand.window_s != old.window_s or demand.n_vms != old.n_vms:
                raise ValueError(
                    f"set_demand needs the same VMs and window ({old.n_vms} VMs, {old.window_s:g} s), "
                    f"got {demand.n_vms} VMs, {demand.window_s:g} s"
                )
            self._commit()  # the pending segment was at the old demand
            self.demand = demand
            self._vcpu_share = demand.vcpus.astype(np.float64) / 100.0
            self._demand_cache.clear()
            self._tables.clear()

    # -- actuation ---------------------------------------------------------------------
    def set_granted(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"harvest cores must be a whole number, got {n!r}")
        if not 0 <= int(n) <= self.config.cores:
            raise ValueError(f"harvest cores must be in [0, {self.config.cores}], got {n}")
        if int(n) != self._granted:
            self._commit()  # the pending segment was at the old grant
            self._granted = int(n)

    # -- reports -----------------------------------------------------------------------
    def _harvest_rates(self) -> tuple[float, float, float, float, float]:
        """The harvest group's granted, used, PSI some, PSI full and waiting (constant)."""
        g = float(self._granted)
        hd = self._harvest_demand
        return (
            g,
            g if g < hd else hd,
            1.0 if hd > g else 0.0,
            1.0 if (g <= 0 and hd > 0) else 0.0,
            hd - g if hd > g else 0.0,
        )

    def _harvest_total(self, i: int) -> float:
        return self._h_tot[i] + self._harvest_rates()[i] * self._pending_units() * self._unit

    def cumulative(self, group: str) -> float:
        if group == "primary":
            tot = self._q_tot
            demand = tot[_C_DEMAND] + self._pending_sum(_C_DEMAND)
            unserved = tot[_C_UNSERVED] + self._pending_sum(_C_UNSERVED)
            return (demand - unserved) * self._unit
        return self._harvest_total(1)

    def run_delay_total(self, group: str) -> float:
        if group == "primary":
            return (self._q_tot[_C_UNSERVED] + self._pending_sum(_C_UNSERVED)) * self._unit
        return self._harvest_total(4)

    def psi_total(self, group: str, kind: str) -> float:
        if group == "primary":
            c = _C_SOME if kind == "some" else _C_FULL
            return (self._q_tot[c] + self._pending_sum(c)) * self._unit
        return self._harvest_total(2 if kind == "some" else 3)

    def psi_averages(self, group: str) -> list[float]:
        """PSI some avg10/60/300 then full avg10/60/300 of ``group`` at ``self.t``."""
        pend = self._pend
        k = len(_PSI_HORIZONS)
        if group == "harvest":
            out = list(self._ema_harvest)
            if pend is not None:
                span = (pend.pb - pend.pa) * self._unit
                _, _, h_some, h_full, _ = self._harvest_rates()
                for j, hz in enumerate(_PSI_HORIZONS):
                    decay = math.exp(-span / hz)
                    out[j] = h_some + (out[j] - h_some) * decay
                    out[k + j] = h_full + (out[k + j] - h_full) * decay
            return out
        out = list(self._ema_primary)
        if pend is not None:
            za = pend.row_a
            zb = _row(pend.table, pend.pb, self._block_units)
            for j, ld in enumerate(self._ld_horizons):
                decay = math.exp((pend.pb - pend.pa) * ld)
                for c in (j, k + j):
                    out[c] = (out[c] - za[_C_EMA + c]) * decay + zb[_C_EMA + c]
        return out

    def ground_truth(self) -> dict[str, float]:
        self._commit()
        q = self._q_tot
        dt = self._unit
        span = max(self.t - self.origin, 1e-12)
        demand = q[_C_DEMAND] * dt
        unserved = q[_C_UNSERVED] * dt
        return {
            "cpu.cores": float(self.config.cores),
            "cpu.primary_vms": float(self.demand.n_vms),
            "cpu.primary_vcpus": float(self.demand.vcpus.sum()),
            "cpu.primary_demand_core_s": demand,
            "cpu.primary_served_core_s": demand - unserved,
            "cpu.primary_unserved_core_s": unserved,
            "cpu.primary_unserved_windows": q[_C_BAD] * self._cells_per_unit,
            "cpu.windows": self._units * self._cells_per_unit,
            "cpu.primary_util_mean_pct": q[_C_UTIL] * dt / span,
            "cpu.primary_psi_some_mean": q[_C_SOME] * dt / span,
            "cpu.primary_run_delay_s": unserved,
            "cpu.harvest_granted_core_s": self._h_tot[0],
            "cpu.harvested_core_s": self._h_tot[1],
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        self._commit()
        return self._series.arrays("cpu")


def _check_group(group: str) -> str:
    if group not in CPU_GROUPS:
        raise ValueError(f"unknown CPU group {group!r}; known: {', '.join(CPU_GROUPS)}")
    return group


class CpuSensorsSim(FacilityView["CpuFacility"]):
    """``CpuSensors`` of the simulated node."""

    def total_cores(self) -> int:
        return self._f.config.cores

    def usage(self, group: str) -> CpuUsage:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            t0, total0, cores0 = f._last_usage[group]
            # cumulative counters never go back (the kernel's don't); the model's running sums
            # can dip by float round-off (~1e-14 s), which a validator rightly rejects
            total = max(f.cumulative(group), total0)
            interval = now - t0
            cores = (total - total0) / interval if interval > 0 else cores0
            f._last_usage[group] = (now, total, cores)
            return CpuUsage(t=now, group=group, cores=cores, interval=interval, total_core_s=total)

    def pressure(self, group: str) -> CpuPressure:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            e = f.psi_averages(group)
            return CpuPressure(
                t=now,
                group=group,
                some_avg10=e[0],
                some_avg60=e[1],
                some_avg300=e[2],
                some_total_s=f.psi_total(group, "some"),
                full_avg10=e[3],
                full_avg60=e[4],
                full_avg300=e[5],
                full_total_s=f.psi_total(group, "full"),
            )

    def run_queue_delay(self, group: str) -> RunQueueDelay:
        _check_group(group)
        f = self._f
        with f._lock:
            now = f._synced_now()
            t0, total0, rate0 = f._last_delay[group]
            total = max(f.run_delay_total(group), total0)
            interval = now - t0
            rate = (total - total0) / interval if interval > 0 else rate0
            f._last_delay[group] = (now, total, rate)
            return RunQueueDelay(t=now, group=group, total_s=total, rate=rate, interval=interval)


class CpuActuatorsSim(FacilityView["CpuFacility"]):
    """``CpuActuators`` of the simulated node: the harvest group's cpuset."""

    def set_harvest_cores(self, n: int) -> None:
        self._at_now(lambda now: self._f.set_granted(n))

    def harvest_cores(self) -> int:
        return self._f._granted
