"""Simulated GPU facility: LLM serving on GPUs with power, power capping and heat.

* Each GPU serves its share of a request stream (round robin) with continuous batching:
  prompts are prefilled first-come first-served at ``prefill_tokens_per_s`` (compute bound),
  then every active request gains one token per decode iteration of
  ``decode_iter_s + decode_iter_per_req_s * batch`` seconds (memory bound), as in Splitwise
  (ISCA'24), which splits inference into a prompt and a token phase.
* Power, per phase: idle draw ``idle_share`` of TDP (POLCA, ASPLOS'24: an idle inference GPU
  draws about 20 % of TDP); prefill draws ``prefill_share`` of TDP; decode draws a share that
  is concave in the batch, log-linear from ``decode_share_batch1`` at batch 1 to
  ``decode_share_batch128`` at batch 128 (ML.ENERGY's H100 figures: about 43 % and 86 %).
  A step's board power is the time-weighted mean of its idle, prefill and decode intervals.
* Power capping is priced on each phase's own draw, never on a second's mean: a phase that
  draws more than the enforced limit runs at the clock that holds the limit
  (``phase_under_cap``). The part of its draw above idle (and, for decode, above the memory
  traffic's ``decode_memory_share`` of TDP) falls as clock ** ``dvfs_exponent``; prefill is
  all clock bound, decode only ``decode_compute_share`` of its time. The exponent is
  calibrated so that a limit at 70 % of TDP makes prefill 1.3x slower, and the decode shares
  so that it leaves decode within 1 % (SplitwiseSim's power-capped H100 profile,
  ``../shared/data/splitwise-perf-power``). A new limit is enforced after
  ``enforce_delay_s`` (at the next step boundary after it).
* Thermal: two nodes in series (a HotSpot-style compact model reduced to die and heat sink,
  Skadron et al., ISCA'03): the die rises ``die_share`` of the way over the sink with
  ``die_tau_s`` (seconds), the sink over the inlet with ``sink_tau_s``; both solved exactly
  per step. At ``slowdown_c`` the board holds the power that keeps the die there.
* NVML's utilisation is what the driver samples: the share of ``util_samples`` samples per
  period in which a kernel ran, so it is coarse and saturates while serving; the memory figure
  is phase-blind and noisy (seeded per GPU and step). The phase mix is not on this sensor.

The Zeus (NSDI'23) training curve ``ZEUS_PERF_VS_CAP`` is kept as the reference the prefill
model is compared with in docs/simulator.md; ``tests/sim/test_node.py`` recomputes it from
``../shared/data/gpu-power-zeus`` and ``tests/sim/test_gpu_audit.py`` the Splitwise figures.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sol.facilities import GpuUtilization, ServingStats
from sol.sim._common import FacilityBase, FacilityView, FloatArray, IntArray, Series, looped_slices

#: (limit / uncapped mean power, throughput / uncapped throughput): medians over the Zeus
#: NSDI'23 traces (V100, A40, P100, RTX6000; 218 configurations, 1,609 measurements), in
#: 0.1-wide bins of the ratio. Below the first point throughput falls linearly to 0.
#: Measured on training, which mixes compute- and memory-bound work: a reference for the
#: per-phase model, not what drives it.
ZEUS_PERF_VS_CAP: tuple[tuple[float, float], ...] = (
    (0.35, 0.250),
    (0.45, 0.426),
    (0.55, 0.660),
    (0.65, 0.822),
    (0.75, 0.892),
    (0.85, 0.937),
    (0.95, 0.969),
    (1.05, 0.988),
    (1.15, 0.997),
    (1.25, 1.000),
)
_CAP_X = np.array([0.0] + [x for x, _ in ZEUS_PERF_VS_CAP])
_CAP_Y = np.array([0.0] + [y for _, y in ZEUS_PERF_VS_CAP])

#: SplitwiseSim's power-capped H100 (its DGX-H100 SKU at 7,140 of 10,200 W): every prompt
#: time of ``perf_model.csv`` is 1.3x the uncapped one, every per-token time 1.0x.
SPLITWISE_CAP_SHARE = 0.70
SPLITWISE_PREFILL_SLOWDOWN = 1.30

# a phase never stops outright, whatever the limit (a limit below idle is not settable; the
# thermal limit gets there only from an inlet no board is specified for)
_MIN_SPEED = 1e-3


def perf_ratio(limit_over_demand: float) -> float:
    """Zeus's training throughput share left when the limit is ``limit_over_demand`` of the
    uncapped power (the reference curve, not the model)."""
    if limit_over_demand >= _CAP_X[-1]:
        return 1.0
    return float(np.interp(limit_over_demand, _CAP_X, _CAP_Y))


def dvfs_exponent(idle_share: float, prefill_share: float) -> float:
    """The exponent of clock in the clock-bound draw that reproduces Splitwise's capped
    prefill: ``((cap - idle) / (prefill - idle)) ** (1 / x) = 1 / 1.3`` at a 70 % cap.

    >>> round(dvfs_exponent(0.20, 1.0), 3)
    1.791
    """
    room = (SPLITWISE_CAP_SHARE - idle_share) / (prefill_share - idle_share)
    if not 0.0 < room < 1.0:
        raise ValueError(
            f"idle_share {idle_share} and prefill_share {prefill_share} must bracket "
            f"{SPLITWISE_CAP_SHARE} of TDP to calibrate the clock model on Splitwise's capped H100"
        )
    return math.log(room) / math.log(1.0 / SPLITWISE_PREFILL_SLOWDOWN)


def phase_under_cap(
    cap_w: float,
    demand_w: float,
    fixed_w: float,
    compute_share: float,
    *,
    idle_w: float,
    exponent: float,
    min_clock: float,
) -> tuple[float, float]:
    """(speed, draw in W) of a phase that draws ``demand_w`` at full clock, under ``cap_w``.

    The board lowers the SM clock ``f`` (1 = full) until the draw fits: the part above
    ``fixed_w`` (idle, plus memory traffic for decode) scales as ``f ** exponent``, and the
    ``compute_share`` of the phase's time that is clock bound stretches by ``1 / f``. At the
    lowest clock the board also stalls, drawing idle, for the share of time the cap needs.

    >>> kw = dict(idle_w=80.0, exponent=1.791, min_clock=0.15)
    >>> [round(x, 3) for x in phase_under_cap(280.0, 400.0, 80.0, 1.0, **kw)]  # prefill
    [0.769, 280.0]
    >>> [round(x, 3) for x in phase_under_cap(280.0, 320.0, 128.0, 0.05, **kw)]  # decode
    [0.993, 280.0]
    """
    if cap_w >= demand_w:
        return 1.0, demand_w
    c = compute_share
    var = demand_w - fixed_w
    room = cap_w - fixed_w
    floor_var = var * min_clock**exponent
    if var > 0.0 and room >= floor_var:
        f = (room / var) ** (1.0 / exponent)
        return 1.0 / ((1.0 - c) + c / f), cap_w
    p_min = fixed_w + max(floor_var, 0.0)
    s_min = 1.0 / ((1.0 - c) + c / min_clock)
    if p_min <= idle_w or cap_w <= idle_w:
        return _MIN_SPEED, max(cap_w, idle_w)
    duty = (cap_w - idle_w) / (p_min - idle_w)
    return max(s_min * duty, _MIN_SPEED), cap_w


def phase_at_clock(
    clock: float, demand_w: float, fixed_w: float, compute_share: float, *, exponent: float
) -> tuple[float, float]:
    """(speed, draw in W) of a phase whose SM clock is locked at ``clock`` of the highest:
    the same clock model as :func:`phase_under_cap`, entered from the clock side.

    >>> [round(x, 1) for x in phase_at_clock(0.769, 400.0, 80.0, 1.0, exponent=1.791)]
    [0.8, 279.9]
    """
    if clock >= 1.0:
        return 1.0, demand_w
    c = compute_share
    draw = fixed_w + max(demand_w - fixed_w, 0.0) * clock**exponent
    return 1.0 / ((1.0 - c) + c / clock), draw


_M64 = (1 << 64) - 1
_UTIL_SALT = 0x5EED_6A1D_0C0F_FEE5  # keys the utilisation noise apart from any other draw


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _unit(key: int, j: int) -> float:
    """The ``j``-th uniform draw in [0, 1) of ``key`` (53 bits, like numpy's doubles)."""
    return (_mix(key + j) >> 11) * (1.0 / (1 << 53))


class RequestStream(Protocol):
    """LLM requests in trace time: arrival (s), prompt tokens, generated tokens."""

    @property
    def source(self) -> str: ...

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, IntArray]: ...


@dataclass(frozen=True)
class LlmRequests:
    """A fixed list of requests (a trace); it repeats every ``span_s``."""

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    span_s: float
    source: str = "trace"

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, IntArray]:
        parts = looped_slices(self.arrival_s, self.span_s, t0, t1)
        outs_t = [self.arrival_s[lo:hi] + off for lo, hi, off in parts]
        outs_p = [self.prompt_tokens[lo:hi] for lo, hi, _ in parts]
        outs_o = [self.output_tokens[lo:hi] for lo, hi, _ in parts]
        if not outs_t:
            return np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(outs_t), np.concatenate(outs_p), np.concatenate(outs_o)


@dataclass(frozen=True)
class GpuConfig:
    count: int = 4
    #: board power of an A100-SXM4 (NVIDIA data sheet: 400 W); NVML's minimum limit 100 W
    tdp_w: float = 400.0
    min_limit_w: float = 100.0
    idle_share: float = 0.20
    prefill_share: float = 1.0
    #: ML.ENERGY (H100): decode draws ~43 % of TDP at batch 1, ~86 % at batch 128
    decode_share_batch1: float = 0.43
    decode_share_batch128: float = 0.86
    #: decode's HBM traffic, which does not fall with the SM clock (assumption)
    decode_memory_share: float = 0.12
    #: share of a decode iteration's time that is clock bound (assumption; with the memory
    #: share it leaves decode within 1 % under Splitwise's 70 % cap)
    decode_compute_share: float = 0.05
    #: lowest SM clock over the highest (A100: 210 of 1,410 MHz)
    min_clock_ratio: float = 0.15
    prefill_tokens_per_s: float = 8000.0
    decode_iter_s: float = 0.025
    decode_iter_per_req_s: float = 0.0002
    max_batch: int = 64
    enforce_delay_s: float = 1.0
    #: highest SM clock (A100: 1,410 MHz); locked clocks apply at the next step boundary
    #: (``clock_lock_delay_s``, assumption: the driver switches clocks within milliseconds,
    #: where the board's power controller settles on a new limit over ``enforce_delay_s``)
    max_clock_mhz: float = 1410.0
    clock_lock_delay_s: float = 0.0
    step_s: float = 1.0
    #: inlet air; the die sits ``full_load_rise_c`` over it at a sustained TDP (75 C at 30 C)
    ambient_c: float = 30.0
    full_load_rise_c: float = 45.0
    #: share of the die's rise over the inlet (at a steady draw) that is across die -> sink
    die_share: float = 0.5
    die_tau_s: float = 3.0
    sink_tau_s: float = 60.0
    slowdown_c: float = 87.0
    #: driver samples per step behind NVML's utilisation (assumption; NVML documents a
    #: sample period of 1/6 s to 1 s by product)
    util_samples: int = 6
    other_power_w: float = 0.0
    budget_w: float | None = None
    series_period_s: float = 10.0


_PER_DECADE = 100.0  # 2.3 % wide bins: a 5 % change of a percentile shows
_LAT_BINS = 700  # 1 ms .. 10^4 s


def _lat_bin(x: float) -> int:
    if x <= 1e-3:
        return 0
    return min(_LAT_BINS - 1, int((math.log10(x) + 3.0) * _PER_DECADE))


def _lat_quantile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if total == 0:
        return 0.0
    target = q * total
    run = 0
    for i, c in enumerate(hist):
        run += c
        if run >= target:
            return float(10 ** ((i + 0.5) / _PER_DECADE - 3.0))
    return float(10 ** ((_LAT_BINS - 0.5) / _PER_DECADE - 3.0))


class GpuFacility(FacilityBase):
    name = "gpu"

    def __init__(
        self,
        config: GpuConfig,
        requests: RequestStream,
        *,
        seed: int,
        lock: threading.RLock,
        now: Callable[[], float],
        origin: float,
    ) -> None:
        super().__init__(lock, now, origin)
        if config.count < 1:
            raise ValueError("a GPU facility needs >= 1 GPU")
        self.config = config
        self.requests = requests
        self.seed = seed
        g = config.count
        self._step = 0  # steps done
        self.t = origin
        tdp = config.tdp_w
        self._idle_w = idle = config.idle_share * tdp
        self._prefill_w = config.prefill_share * tdp
        self._exponent = dvfs_exponent(config.idle_share, config.prefill_share)
        # decode draw per batch size, log-linear in the batch (ML.ENERGY), at most prefill's
        lo, hi = config.decode_share_batch1, config.decode_share_batch128
        self._decode_w = [idle] + [
            min(self._prefill_w, tdp * (lo + (hi - lo) * math.log(b) / math.log(128.0)))
            for b in range(1, config.max_batch + 1)
        ]
        self._decode_fixed_w = idle + config.decode_memory_share * tdp
        if config.max_batch < 1 or not idle <= self._decode_fixed_w < self._decode_w[1]:
            raise ValueError(
                "max_batch must be >= 1 and decode's memory share must leave decode at batch 1 "
                "above idle plus its memory traffic"
            )
        r_th = config.full_load_rise_c / tdp
        self._r_die = config.die_share * r_th
        self._r_sink = r_th - self._r_die
        self._d_die = math.exp(-config.step_s / config.die_tau_s)
        self._d_sink = math.exp(-config.step_s / config.sink_tau_s)
        self._limit_w = [tdp] * g
        self._enforced_w = [tdp] * g
        self._changes: list[deque[tuple[float, float]]] = [deque() for _ in range(g)]
        # locked clock (share of the highest) set, and enforced with its changes pending
        self._clock_set = [1.0] * g
        self._clock = [1.0] * g
        self._clock_changes: list[deque[tuple[float, float]]] = [deque() for _ in range(g)]
        # the serving engine's counters per GPU (prompt tokens prefilled, tokens generated)
        self._prompt_done = [0.0] * g
        self._generated = [0.0] * g
        # rises over the inlet (sink) and over the sink (die), steady at idle to begin with
        self._sink_k = [self._r_sink * idle] * g
        self._die_k = [self._r_die * idle] * g
        self._temp = [config.ambient_c + r_th * idle] * g
        self._power = [idle] * g
        self._util = [0.0] * g
        self._energy_j = [0.0] * g
        self._pend: list[deque[tuple[float, int, int]]] = [deque() for _ in range(g)]
        self._pre: list[deque[list[float]]] = [deque() for _ in range(g)]
        self._heap: list[list[tuple[float, int, float, int, float]]] = [[] for _ in range(g)]
        self._iters = [0.0] * g
        self._seq = 0
        self._tie = 0
        self._ttft = [0] * _LAT_BINS
        self._e2e = [0] * _LAT_BINS
        self._tbt = [0] * _LAT_BINS
        self._over_run_s = 0.0  # the current run of steps over the budget
        self._acc = dict.fromkeys(
            (
                "requests",
                "prompt_tokens",
                "output_tokens",
                "first_tokens",
                "completed",
                "tokens",
                "ttft_s",
                "e2e_s",
                "energy_j",
                "budget_violation_s",
                "budget_excess_j",
                "capped_gpu_s",
                "perf_loss_gpu_s",
                "busy_gpu_s",
                "thermal_throttle_s",
                "node_power_peak_w",
                "temperature_max_c",
                "tbt_s",
                "tbt_n",
                "budget_longest_s",
            ),
            0.0,
        )
        self._acc["temperature_max_c"] = max(self._temp)
        self._series = Series(
            origin,
            config.series_period_s,
            (
                "node_power_w",
                *(("budget_w",) if config.budget_w is not None else ()),
                "enforced_limit_w_mean",
                "util_pct",
                "temperature_c_max",
                "queued",
                "tokens_per_s",
            ),
        )
        self.sensors = GpuSensorsSim(self)
        self.actuators = GpuActuatorsSim(self)

    # -- stepping ----------------------------------------------------------------------
    def set_requests(self, requests: RequestStream) -> None:
        """From now on requests arrive from ``requests`` (e.g. a surge); the caller brings the
        node up to the switch time first (``SimNode.advance``)."""
        with self._lock:
            self.requests = requests

    def set_budget_w(self, budget_w: float) -> None:
        """The node's GPU power budget (W) from now on, e.g. a power emergency. Only a node
        built with a budget has one to change (its series carry the budget)."""
        if not (isinstance(budget_w, (int, float)) and math.isfinite(budget_w) and budget_w > 0):
            raise ValueError(f"budget_w must be a number of watts > 0, got {budget_w!r}")
        with self._lock:
            if self.config.budget_w is None:
                raise ValueError("this GPU node was built without a power budget: there is none to change")
            self.config = dataclasses.replace(self.config, budget_w=float(budget_w))

    def sync(self, now: float) -> None:
        cfg = self.config
        dt = cfg.step_s
        target = math.floor((now - self.origin) / dt + 1e-9)
        if target <= self._step:
            return
        k0 = self._step
        t_from = self.origin + k0 * dt
        t_to = self.origin + target * dt
        arr, pro, out = self.requests.between(t_from - self.origin, t_to - self.origin)
        arr = arr + self.origin
        arr_l = arr.tolist()
        pro_l = pro.tolist()
        out_l = out.tolist()
        acc = self._acc
        if arr.size:
            acc["requests"] += arr.size
            acc["prompt_tokens"] += float(pro.sum())
            acc["output_tokens"] += float(out.sum())
        n_arr = len(arr_l)
        ai = 0
        g_n = cfg.count
        idle = self._idle_w
        pre_w = self._prefill_w
        dec_w_l = self._decode_w
        dec_fixed = self._decode_fixed_w
        dec_c = cfg.decode_compute_share
        expo, min_clock = self._exponent, cfg.min_clock_ratio
        max_b = cfg.max_batch
        tps_full = cfg.prefill_tokens_per_s
        it_a, it_b = cfg.decode_iter_s, cfg.decode_iter_per_req_s
        amb, slow_c = cfg.ambient_c, cfg.slowdown_c
        r_die, r_sink, d_die, d_sink = self._r_die, self._r_sink, self._d_die, self._d_sink
        # the step's mean draw that lands the die exactly at slowdown_c is linear in it
        th_gain = r_sink * (1.0 - d_sink) + r_die * (1.0 - d_die)
        budget = cfg.budget_w
        other = cfg.other_power_w
        ttft_h, e2e_h, tbt_h = self._ttft, self._e2e, self._tbt
        tbt_sum = 0.0
        tbt_n = 0
        # series: this sync's steps summed per bin here, one add per bin
        ser = self._series
        s_origin, s_period = ser.origin, ser.period
        s_bin = -1
        s_cover = s_power = s_limit = s_util = s_temp = s_queue = s_tok = 0.0
        pend_l, pre_l, heap_l = self._pend, self._pre, self._heap
        iters_l, enforced, changes = self._iters, self._enforced_w, self._changes
        clock_l, clock_ch = self._clock, self._clock_changes
        prompt_l, gen_l = self._prompt_done, self._generated
        temp_l, power_l, util_l, energy_l = self._temp, self._power, self._util, self._energy_j
        sink_l, die_l = self._sink_k, self._die_k
        capped_s = loss_s = busy_s = throttle_s = 0.0
        first_n = done_n = 0
        ttft_sum = e2e_sum = 0.0
        for k in range(k0, target):
            ts = self.origin + k * dt
            te = ts + dt
            while ai < n_arr and arr_l[ai] < te:
                g = self._seq % g_n
                self._seq += 1
                pend_l[g].append((arr_l[ai], pro_l[ai], out_l[ai]))
                ai += 1
            node_p = other
            tokens_step = 0.0
            queued = 0
            lim_sum = 0.0
            for i in range(g_n):
                ch = changes[i]
                while ch and ch[0][0] <= ts:
                    enforced[i] = ch.popleft()[1]
                cch = clock_ch[i]
                while cch and cch[0][0] <= ts:
                    clock_l[i] = cch.popleft()[1]
                lock = clock_l[i]
                tokens_gpu = tokens_step
                pend, pre, heap = pend_l[i], pre_l[i], heap_l[i]
                while pend and len(heap) + len(pre) < max_b:
                    a, p, o = pend.popleft()
                    pre.append([a, float(p), float(o)])
                queued += len(pend)
                cap = enforced[i]
                lim_sum += cap
                sink_k, die_k = sink_l[i], die_l[i]
                # hardware slowdown: no phase may draw more than what keeps the die at
                # slowdown_c by the step's end (non-binding while the die is cool)
                th_w = (slow_c - amb - sink_k * d_sink - die_k * d_die) / th_gain
                hot = th_w < cap
                if hot:
                    cap = th_w
                if not pre and not heap:
                    p_w = idle
                    busy = 0.0
                else:
                    # each phase is priced on its own draw: prefill at prefill power, decode
                    # at the batch's; a short burst is slowed by a cap the second's mean is under
                    s_pre, w_pre = (
                        (1.0, pre_w)
                        if cap >= pre_w
                        else phase_under_cap(
                            cap, pre_w, idle, 1.0, idle_w=idle, exponent=expo, min_clock=min_clock
                        )
                    )
                    if lock < 1.0:  # a locked clock binds where it draws less than the cap lets
                        s_l, w_l = phase_at_clock(lock, pre_w, idle, 1.0, exponent=expo)
                        if w_l < w_pre:
                            s_pre, w_pre = s_l, w_l
                    s_dec, w_dec = 1.0, idle
                    tps = tps_full * s_pre
                    iters = iters_l[i]
                    decoding = bool(heap)
                    t_pre = 0.0
                    spans: list[tuple[float, float]] = []  # prefill intervals of the step
                    # (decode time before, arrival, out, first token)
                    joined: list[tuple[float, float, int, float]] = []
                    # Prefill is FIFO at the prompt rate and never starts a request before it
                    # arrives: the requests of this step arrive inside it. Decoding fills the
                    # time prefill leaves, once a batch exists.
                    cur = ts
                    while pre:
                        item = pre[0]
                        a = item[0]
                        start = a if a > cur else cur
                        if start >= te:
                            break
                        end = start + item[1] / tps
                        if end > te:
                            item[1] -= (te - start) * tps
                            t_pre += te - start
                            spans.append((start, te))
                            break
                        pre.popleft()
                        t_pre += end - start
                        spans.append((start, end))
                        cur = end
                        lat = end - a
                        first_n += 1
                        ttft_sum += lat
                        ttft_h[_lat_bin(lat)] += 1
                        tokens_step += 1.0
                        o = int(item[2])
                        if o <= 1:
                            done_n += 1
                            e2e_sum += lat
                            e2e_h[_lat_bin(lat)] += 1
                        else:
                            # decoding fills the time the prefill engine leaves: this request
                            # joins the batch after the decode time elapsed before its end
                            joined.append((end - ts - t_pre, a, o, end))
                    t_pre = min(t_pre, dt)  # a sum of pieces may pass dt by a rounding error
                    t_dec = dt - t_pre if (heap or joined) else 0.0
                    t_dec_busy = 0.0
                    if t_dec > 0:
                        batch = len(heap) + len(joined)
                        d_w = dec_w_l[batch if batch <= max_b else max_b]
                        if cap < d_w:
                            s_dec, w_dec = phase_under_cap(
                                cap, d_w, dec_fixed, dec_c, idle_w=idle, exponent=expo, min_clock=min_clock
                            )
                        else:
                            w_dec = d_w
                        if lock < 1.0:
                            s_l, w_l = phase_at_clock(lock, d_w, dec_fixed, dec_c, exponent=expo)
                            if w_l < w_dec:
                                s_dec, w_dec = s_l, w_l
                        it = (it_a + it_b * batch) / s_dec
                        for before, a, o, first in joined:
                            self._tie += 1
                            heapq.heappush(heap, (iters + before / it + o - 1.0, self._tie, a, o, first))
                            tokens_step -= before / it  # no tokens before it joined
                        n_it = t_dec / it
                        new = iters + n_it
                        tokens_step += n_it * batch
                        last = iters
                        while heap and heap[0][0] <= new:
                            fin, _, a, o, first = heapq.heappop(heap)
                            last = fin
                            tokens_step -= new - fin  # no tokens after its last one
                            # decode time -> clock time: skip the prefill intervals before it
                            done = ts + (fin - iters) * it
                            for s0, e0 in spans:
                                if s0 > done:
                                    break
                                done += e0 - s0
                            lat = done - a
                            done_n += 1
                            e2e_sum += lat
                            e2e_h[_lat_bin(lat)] += 1
                            tbt = (done - first) / (o - 1)  # time between tokens after the first
                            tbt_sum += tbt
                            tbt_n += 1
                            tbt_h[_lat_bin(tbt)] += 1
                        iters_l[i] = new
                        # a batch decodes from its first member's start, to the step's end or
                        # to its last member's last token
                        dec_end = t_dec if heap else min(t_dec, (last - iters) * it)
                        t_dec_busy = max(0.0, dec_end - (0.0 if decoding else joined[0][0]))
                    else:
                        for _before, a, o, first in joined:  # no decode time left: from the next step
                            self._tie += 1
                            heapq.heappush(heap, (iters + o - 1.0, self._tie, a, o, first))
                    busy = t_pre + t_dec_busy
                    prompt_l[i] += t_pre * tps
                    p_w = idle + ((w_pre - idle) * t_pre + (w_dec - idle) * t_dec_busy) / dt
                    held = (t_pre if s_pre < 1.0 else 0.0) + (t_dec_busy if s_dec < 1.0 else 0.0)
                    if held > 0.0:
                        capped_s += held
                        loss_s += t_pre * (1.0 - s_pre) + t_dec_busy * (1.0 - s_dec)
                        if hot:
                            throttle_s += dt
                    busy_s += busy
                gen_l[i] += tokens_step - tokens_gpu
                power_l[i] = p_w
                util_l[i] = busy / dt
                energy_l[i] += p_w * dt
                sink_ss, die_ss = r_sink * p_w, r_die * p_w
                sink_k = sink_ss + (sink_k - sink_ss) * d_sink
                die_k = die_ss + (die_k - die_ss) * d_die
                sink_l[i], die_l[i] = sink_k, die_k
                temp_l[i] = amb + sink_k + die_k
                node_p += p_w
            acc["tokens"] += tokens_step
            acc["energy_j"] += (node_p - other) * dt
            if node_p > acc["node_power_peak_w"]:
                acc["node_power_peak_w"] = node_p
            if budget is not None and node_p > budget:
                acc["budget_violation_s"] += dt
                acc["budget_excess_j"] += (node_p - budget) * dt
                self._over_run_s += dt
                if self._over_run_s > acc["budget_longest_s"]:
                    acc["budget_longest_s"] = self._over_run_s
            else:
                self._over_run_s = 0.0
            tmax = max(temp_l)
            if tmax > acc["temperature_max_c"]:
                acc["temperature_max_c"] = tmax
            b = math.floor((ts - s_origin) / s_period + 1e-9)
            if b != s_bin:
                if s_bin >= 0:
                    self._series_add(s_bin, s_cover, s_power, s_limit, s_util, s_temp, s_queue, s_tok)
                s_bin = max(b, 0)
                s_cover = s_power = s_limit = s_util = s_temp = s_queue = s_tok = 0.0
            s_cover += dt
            s_power += dt * node_p
            s_limit += dt * (lim_sum / g_n)
            s_util += dt * (100.0 * sum(util_l) / g_n)
            s_temp += dt * tmax
            s_queue += dt * float(queued)
            s_tok += dt * (tokens_step / dt)
        if s_bin >= 0:
            self._series_add(s_bin, s_cover, s_power, s_limit, s_util, s_temp, s_queue, s_tok)
        acc["first_tokens"] += first_n
        acc["ttft_s"] += ttft_sum
        acc["completed"] += done_n
        acc["e2e_s"] += e2e_sum
        acc["tbt_s"] += tbt_sum
        acc["tbt_n"] += tbt_n
        acc["capped_gpu_s"] += capped_s
        acc["perf_loss_gpu_s"] += loss_s
        acc["busy_gpu_s"] += busy_s
        acc["thermal_throttle_s"] += throttle_s
        self._step = target
        self.t = t_to

    def _series_add(
        self,
        i: int,
        cover: float,
        power: float,
        limit: float,
        util: float,
        temp: float,
        queue: float,
        tok: float,
    ) -> None:
        budget = self.config.budget_w
        if budget is None:
            self._series.add_values(i, cover, (power, limit, util, temp, queue, tok))
        else:
            self._series.add_values(i, cover, (power, cover * budget, limit, util, temp, queue, tok))

    def nvml_utilization(self, i: int) -> tuple[int, int]:
        """What ``nvmlDeviceGetUtilizationRates`` reports for GPU ``i`` over the last step.

        The driver samples ``util_samples`` times a period whether a kernel runs: the GPU
        figure is the share of samples that saw one (coarse, and 100 % while serving, whatever
        the phase). The memory figure is those samples' share times a memory-activity level
        drawn per reading from U(0.35, 0.65) (assumption: about half, for prefill and decode
        alike). Draws are keyed by (seed, step, GPU): any read of the same step returns the
        same values, however often the node is read.
        """
        busy = self._util[i]
        step = self._step - 1
        if busy <= 0.0 or step < 0:
            return 0, 0
        n = self.config.util_samples
        key = _mix(_mix(_mix(self.seed ^ _UTIL_SALT) ^ step) ^ i)
        share = sum(1 for j in range(n) if _unit(key, j) < busy) / n
        memory_level = 0.35 + 0.30 * _unit(key, n)
        return round(100.0 * share), round(100.0 * share * memory_level)

    #: what a step changes: saved and put back around a peek
    _STEP_STATE = (
        "_step",
        "t",
        "_pend",
        "_pre",
        "_heap",
        "_iters",
        "_seq",
        "_tie",
        "_ttft",
        "_e2e",
        "_tbt",
        "_over_run_s",
        "_acc",
        "_series",
        "_enforced_w",
        "_changes",
        "_clock",
        "_clock_changes",
        "_sink_k",
        "_die_k",
        "_temp",
        "_power",
        "_util",
        "_energy_j",
        "_prompt_done",
        "_generated",
    )

    def peek_uncapped_power_w(self, now: float, steps: int = 1) -> list[list[float]]:
        """Each GPU's draw in each of the next ``steps`` steps from ``now`` if every limit and
        locked clock were lifted at once: an oracle's knowledge of demand (benchmarks only).
        The facility is left exactly as it was."""
        saved = {k: copy.deepcopy(getattr(self, k)) for k in self._STEP_STATE}
        try:
            g = self.config.count
            self._enforced_w = [self.config.tdp_w] * g
            self._changes = [deque() for _ in range(g)]
            self._clock = [1.0] * g
            self._clock_changes = [deque() for _ in range(g)]
            out = []
            for k in range(1, steps + 1):
                self.sync(now + k * self.config.step_s)
                out.append(list(self._power))
            return out
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    # -- actuation ---------------------------------------------------------------------
    def check_index(self, index: int) -> int:
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < self.config.count
        ):
            raise IndexError(f"GPU index {index!r} out of range; the node has {self.config.count} GPUs")
        return int(index)

    def set_limit(self, now: float, index: int, mw: int) -> None:
        i = self.check_index(index)
        lo, hi = int(self.config.min_limit_w * 1000), int(self.config.tdp_w * 1000)
        if isinstance(mw, bool) or not isinstance(mw, (int, np.integer)) or not lo <= mw <= hi:
            raise ValueError(f"power limit {mw!r} mW outside the constraints [{lo}, {hi}] mW of GPU {i}")
        w = mw / 1000.0
        self._limit_w[i] = w
        self._changes[i].append((now + self.config.enforce_delay_s, w))

    def clock_range_mhz(self, index: int) -> tuple[int, int]:
        c = self.config
        return round(c.min_clock_ratio * c.max_clock_mhz), round(c.max_clock_mhz)

    def lock_clock(self, now: float, index: int, max_mhz: int | None) -> None:
        """Lock GPU ``index``'s SM clock at most ``max_mhz`` (None: reset to the driver's)."""
        i = self.check_index(index)
        if max_mhz is None:
            share = 1.0
        else:
            lo, _ = self.clock_range_mhz(i)
            if isinstance(max_mhz, bool) or not isinstance(max_mhz, (int, np.integer)) or not lo <= max_mhz:
                raise ValueError(f"locked clock {max_mhz!r} MHz of GPU {i} below its lowest, {lo} MHz")
            share = min(1.0, max_mhz / self.config.max_clock_mhz)
        self._clock_set[i] = share
        self._clock_changes[i].append((now + self.config.clock_lock_delay_s, share))

    def serving_stats(self, now: float, i: int) -> ServingStats:
        """The inference server's view of GPU ``i`` after the last step (vLLM's
        ``num_requests_running``/``waiting``, ``prompt_tokens_total``/``generation_tokens_total``)."""
        return ServingStats(
            t=now,
            running=len(self._heap[i]),
            waiting=len(self._pend[i]) + len(self._pre[i]),
            prompt_tokens_total=self._prompt_done[i],
            generation_tokens_total=self._generated[i],
        )

    # -- reports -----------------------------------------------------------------------
    def ground_truth(self) -> dict[str, float]:
        a = self._acc
        span = max(self.t - self.origin, 1e-12)
        completed = a["completed"]
        req = a["requests"]
        cfg = self.config
        return {
            "gpu.count": float(cfg.count),
            "gpu.requests": req,
            "gpu.arrival_rate_per_s": req / span,
            "gpu.prompt_tokens_mean": a["prompt_tokens"] / req if req else 0.0,
            "gpu.output_tokens_mean": a["output_tokens"] / req if req else 0.0,
            "gpu.requests_completed": completed,
            "gpu.tokens_generated": a["tokens"],
            "gpu.throughput_tokens_per_s": a["tokens"] / span,
            "gpu.ttft_mean_s": a["ttft_s"] / a["first_tokens"] if a["first_tokens"] else 0.0,
            "gpu.ttft_p50_s": _lat_quantile(self._ttft, 0.5),
            "gpu.ttft_p99_s": _lat_quantile(self._ttft, 0.99),
            "gpu.e2e_mean_s": a["e2e_s"] / completed if completed else 0.0,
            "gpu.e2e_p99_s": _lat_quantile(self._e2e, 0.99),
            "gpu.tbt_mean_s": a["tbt_s"] / a["tbt_n"] if a["tbt_n"] else 0.0,
            "gpu.tbt_p50_s": _lat_quantile(self._tbt, 0.5),
            "gpu.tbt_p99_s": _lat_quantile(self._tbt, 0.99),
            "gpu.energy_j": a["energy_j"],
            "gpu.power_mean_w": a["energy_j"] / span,
            "gpu.node_power_peak_w": a["node_power_peak_w"],
            "gpu.budget_w": float(cfg.budget_w) if cfg.budget_w is not None else float("inf"),
            "gpu.budget_violation_s": a["budget_violation_s"],
            "gpu.budget_excess_j": a["budget_excess_j"],
            "gpu.budget_longest_excursion_s": a["budget_longest_s"],
            "gpu.capped_gpu_s": a["capped_gpu_s"],
            "gpu.perf_loss_gpu_s": a["perf_loss_gpu_s"],
            "gpu.util_mean_pct": 100.0 * a["busy_gpu_s"] / (span * cfg.count),
            "gpu.temperature_max_c": a["temperature_max_c"],
            "gpu.thermal_throttle_s": a["thermal_throttle_s"],
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        return self._series.arrays("gpu")


class GpuSensorsSim(FacilityView["GpuFacility"]):
    """``GpuSensors`` of the simulated node: what NVML reports after the last step."""

    def count(self) -> int:
        return self._f.config.count

    def _get(self, index: int, what: Callable[[int], float]) -> int:
        f = self._f
        with f._lock:
            f._synced_now()
            return round(what(f.check_index(index)))

    def power_usage_mw(self, index: int) -> int:
        return self._get(index, lambda i: self._f._power[i] * 1000.0)

    def power_limit_mw(self, index: int) -> int:
        return self._get(index, lambda i: self._f._limit_w[i] * 1000.0)

    def power_limit_constraints_mw(self, index: int) -> tuple[int, int]:
        self._f.check_index(index)
        c = self._f.config
        return int(c.min_limit_w * 1000), int(c.tdp_w * 1000)

    def enforced_power_limit_mw(self, index: int) -> int:
        return self._get(index, lambda i: self._f._enforced_w[i] * 1000.0)

    def temperature_c(self, index: int) -> int:
        return self._get(index, lambda i: self._f._temp[i])

    def utilization(self, index: int) -> GpuUtilization:
        f = self._f
        with f._lock:
            now = f._synced_now()
            gpu, memory = f.nvml_utilization(f.check_index(index))
            return GpuUtilization(t=now, gpu=gpu, memory=memory)

    def total_energy_mj(self, index: int) -> int:
        return self._get(index, lambda i: self._f._energy_j[i] * 1000.0)

    def power_budget_mw(self) -> int | None:
        b = self._f.config.budget_w
        return None if b is None else round(b * 1000)

    def serving(self, index: int) -> ServingStats:
        """The serving engine's metrics of GPU ``index`` (on Linux: ``sol.linux.serving``)."""
        f = self._f
        with f._lock:
            now = f._synced_now()
            return f.serving_stats(now, f.check_index(index))

    def clock_range_mhz(self, index: int) -> tuple[int, int]:
        """(lowest, highest) SM clock the board can be locked between."""
        return self._f.clock_range_mhz(self._f.check_index(index))


class GpuActuatorsSim(FacilityView["GpuFacility"]):
    """``GpuActuators`` of the simulated node: NVML's power management limit."""

    def set_power_limit(self, index: int, mw: int) -> None:
        self._at_now(self._f.set_limit, index, mw)

    def lock_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        """Lock the SM clock into [min_mhz, max_mhz] (the simulator models the upper bound)."""
        if not 0 < min_mhz <= max_mhz:
            raise ValueError(f"locked clocks need 0 < min <= max MHz, got {min_mhz}, {max_mhz}")
        self._at_now(self._f.lock_clock, index, max_mhz)

    def reset_clocks(self, index: int) -> None:
        self._at_now(self._f.lock_clock, index, None)
