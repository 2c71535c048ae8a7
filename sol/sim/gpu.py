"""Simulated GPU facility: LLM serving on GPUs with power, power capping and heat.

* Each GPU serves its share of a request stream (round robin) with continuous batching:
  prompts are prefilled first-come first-served at ``prefill_tokens_per_s`` (compute bound),
  then every active request gains one token per decode iteration of
  ``decode_iter_s + decode_iter_per_req_s * batch`` seconds (memory bound), as in Splitwise
  (ISCA'24), which splits inference into a prompt and a token phase.
* Power: idle draw ``idle_share`` of TDP (POLCA, ASPLOS'24: an idle inference GPU draws about
  20 % of TDP); the prompt phase draws up to TDP, the token phase well below it (Splitwise's
  observation that token generation is not power bound), growing with the batch.
* Power capping: when a step's power demand exceeds the enforced limit, the board holds the
  limit and runs at ``perf_ratio(limit / demand)``: the median throughput-vs-limit curve
  measured by Zeus (NSDI'23) over 218 training configurations on 4 GPU types
  (``ZEUS_PERF_VS_CAP``; ``sol.sim.calibration`` recomputes it from the data). A new limit is
  enforced after ``enforce_delay_s`` (at the next step boundary after it).
* Thermal: first-order, ``T' = (ambient + R * P - T) / tau``, solved exactly per step; over
  ``slowdown_c`` the board throttles to the power that holds it there.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sol.facilities import GpuUtilization
from sol.sim._common import FacilityBase, FloatArray, IntArray, Series, looped_slices

#: (limit / uncapped mean power, throughput / uncapped throughput): medians over the Zeus
#: NSDI'23 traces (V100, A40, P100, RTX6000; 218 configurations, 1,609 measurements), in
#: 0.1-wide bins of the ratio. Below the first point throughput falls linearly to 0.
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


def perf_ratio(limit_over_demand: float) -> float:
    """Throughput share left when the limit is ``limit_over_demand`` of the uncapped power."""
    if limit_over_demand >= _CAP_X[-1]:
        return 1.0
    return float(np.interp(limit_over_demand, _CAP_X, _CAP_Y))


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
    decode_share_min: float = 0.45
    decode_share_max: float = 0.65
    prefill_tokens_per_s: float = 8000.0
    decode_iter_s: float = 0.025
    decode_iter_per_req_s: float = 0.0002
    max_batch: int = 64
    enforce_delay_s: float = 1.0
    step_s: float = 1.0
    ambient_c: float = 30.0
    full_load_c: float = 75.0
    thermal_tau_s: float = 60.0
    slowdown_c: float = 87.0
    other_power_w: float = 0.0
    budget_w: float | None = None
    series_period_s: float = 10.0


_LAT_BINS = 240  # 1 ms .. 10^4 s, 30 bins per decade


def _lat_bin(x: float) -> int:
    if x <= 1e-3:
        return 0
    return min(_LAT_BINS - 1, int((math.log10(x) + 3.0) * 30.0))


def _lat_quantile(hist: list[int], q: float) -> float:
    total = sum(hist)
    if total == 0:
        return 0.0
    target = q * total
    run = 0
    for i, c in enumerate(hist):
        run += c
        if run >= target:
            return float(10 ** ((i + 0.5) / 30.0 - 3.0))
    return float(10 ** ((_LAT_BINS - 0.5) / 30.0 - 3.0))


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
        self._idle_w = config.idle_share * config.tdp_w
        self._r_th = (config.full_load_c - config.ambient_c) / config.tdp_w
        self._decay = math.exp(-config.step_s / config.thermal_tau_s)
        self._limit_w = [config.tdp_w] * g
        self._enforced_w = [config.tdp_w] * g
        self._changes: list[deque[tuple[float, float]]] = [deque() for _ in range(g)]
        self._temp = [config.ambient_c + self._r_th * self._idle_w] * g
        self._power = [self._idle_w] * g
        self._util = [0.0] * g
        self._mem_util = [0.0] * g
        self._energy_j = [0.0] * g
        self._pend: list[deque[tuple[float, int, int]]] = [deque() for _ in range(g)]
        self._pre: list[deque[list[float]]] = [deque() for _ in range(g)]
        self._heap: list[list[tuple[float, int, float, int]]] = [[] for _ in range(g)]
        self._iters = [0.0] * g
        self._seq = 0
        self._tie = 0
        self._ttft = [0] * _LAT_BINS
        self._e2e = [0] * _LAT_BINS
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
        tdp = cfg.tdp_w
        pref_dyn = cfg.prefill_share * tdp - idle
        dec_lo = cfg.decode_share_min * tdp - idle
        dec_span = (cfg.decode_share_max - cfg.decode_share_min) * tdp
        max_b = cfg.max_batch
        tps_full = cfg.prefill_tokens_per_s
        it_a, it_b = cfg.decode_iter_s, cfg.decode_iter_per_req_s
        r_th, decay, amb = self._r_th, self._decay, cfg.ambient_c
        th_limit = (cfg.slowdown_c - amb) / r_th
        budget = cfg.budget_w
        other = cfg.other_power_w
        ttft_h, e2e_h = self._ttft, self._e2e
        # series: this sync's steps summed per bin here, one add per bin
        ser = self._series
        s_origin, s_period = ser.origin, ser.period
        s_bin = -1
        s_cover = s_power = s_limit = s_util = s_temp = s_queue = s_tok = 0.0
        pend_l, pre_l, heap_l = self._pend, self._pre, self._heap
        iters_l, enforced, changes = self._iters, self._enforced_w, self._changes
        temp_l, power_l, util_l, mem_l, energy_l = (
            self._temp,
            self._power,
            self._util,
            self._mem_util,
            self._energy_j,
        )
        slow_c = cfg.slowdown_c
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
                pend, pre, heap = pend_l[i], pre_l[i], heap_l[i]
                while pend and len(heap) + len(pre) < max_b:
                    a, p, o = pend.popleft()
                    pre.append([a, float(p), float(o)])
                queued += len(pend)
                cap = enforced[i]
                temp = temp_l[i]
                if temp >= slow_c and th_limit < cap:
                    cap = th_limit
                    throttle_s += dt
                lim_sum += enforced[i]
                if not pre and not heap:
                    p_w = idle if idle < cap else cap
                    busy = 0.0
                    mem_b = 0.0
                else:
                    # Prefill is FIFO at the prompt rate and never starts a request before it
                    # arrives: the requests of this step arrive inside it. Decoding fills the
                    # time prefill leaves, once a batch exists. A dry pass at full speed gives
                    # the step's prefill and decode times for the power demand.
                    t_pre1 = 0.0
                    dec_wait: float | None = 0.0 if heap else None  # decode time before a batch
                    cur = ts
                    for item in pre:
                        if item[0] > cur:
                            cur = item[0]
                        if cur >= te:
                            break
                        need = item[1] / tps_full
                        if cur + need >= te:
                            t_pre1 += te - cur
                            break
                        cur += need
                        t_pre1 += need
                        if dec_wait is None and item[2] > 1:
                            dec_wait = cur - ts - t_pre1
                    t_pre1 = min(t_pre1, dt)  # a sum of pieces may pass dt by a rounding error
                    n0 = len(heap) if heap else 1
                    t_dec1 = 0.0 if dec_wait is None else max(0.0, dt - t_pre1 - dec_wait)
                    dec_dyn = dec_lo + dec_span * min(1.0, n0 / max_b)
                    demand = idle + (pref_dyn * t_pre1 + dec_dyn * t_dec1) / dt
                    if demand > cap * (1.0 + 1e-9):  # not by a rounding error of the sums
                        s = perf_ratio(cap / demand)
                        p_w = cap
                        capped_s += dt
                    else:
                        s = 1.0
                        p_w = demand if demand < cap else cap
                    tps = tps_full * s
                    iters = iters_l[i]
                    decoding = bool(heap)
                    t_pre = 0.0
                    spans: list[tuple[float, float]] = []  # prefill intervals of the step
                    joined: list[tuple[float, float, int]] = []  # (decode time before, arrival, out)
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
                            joined.append((end - ts - t_pre, a, o))
                    t_pre = min(t_pre, dt)
                    t_dec = dt - t_pre if (heap or joined) else 0.0
                    t_dec_busy = 0.0
                    if t_dec > 0:
                        batch = len(heap) + len(joined)
                        it = (it_a + it_b * batch) / s
                        for before, a, o in joined:
                            self._tie += 1
                            heapq.heappush(heap, (iters + before / it + o - 1.0, self._tie, a, o))
                            tokens_step -= before / it  # no tokens before it joined
                        n_it = t_dec / it
                        new = iters + n_it
                        tokens_step += n_it * batch
                        while heap and heap[0][0] <= new:
                            fin, _, a, o = heapq.heappop(heap)
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
                        iters_l[i] = new
                        # a batch decodes from its first member's start (to the step's end)
                        t_dec_busy = t_dec - (0.0 if decoding else joined[0][0])
                    else:
                        for _before, a, o in joined:  # no decode time left: from the next step
                            self._tie += 1
                            heapq.heappush(heap, (iters + o - 1.0, self._tie, a, o))
                    busy = t_pre + t_dec_busy
                    mem_b = 0.3 * t_pre + 0.8 * t_dec_busy
                    loss_s += busy * (1.0 - s)
                    busy_s += busy
                power_l[i] = p_w
                util_l[i] = busy / dt
                mem_l[i] = mem_b / dt
                energy_l[i] += p_w * dt
                t_ss = amb + r_th * p_w
                temp = t_ss + (temp - t_ss) * decay
                temp_l[i] = temp
                node_p += p_w
            acc["tokens"] += tokens_step
            acc["energy_j"] += (node_p - other) * dt
            if node_p > acc["node_power_peak_w"]:
                acc["node_power_peak_w"] = node_p
            if budget is not None and node_p > budget:
                acc["budget_violation_s"] += dt
                acc["budget_excess_j"] += (node_p - budget) * dt
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
            "gpu.energy_j": a["energy_j"],
            "gpu.power_mean_w": a["energy_j"] / span,
            "gpu.node_power_peak_w": a["node_power_peak_w"],
            "gpu.budget_w": float(cfg.budget_w) if cfg.budget_w is not None else float("inf"),
            "gpu.budget_violation_s": a["budget_violation_s"],
            "gpu.budget_excess_j": a["budget_excess_j"],
            "gpu.capped_gpu_s": a["capped_gpu_s"],
            "gpu.perf_loss_gpu_s": a["perf_loss_gpu_s"],
            "gpu.util_mean_pct": 100.0 * a["busy_gpu_s"] / (span * cfg.count),
            "gpu.temperature_max_c": a["temperature_max_c"],
            "gpu.thermal_throttle_s": a["thermal_throttle_s"],
        }

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        return self._series.arrays("gpu")


class GpuSensorsSim:
    """``GpuSensors`` of the simulated node: what NVML reports after the last step."""

    def __init__(self, facility: GpuFacility) -> None:
        self._f = facility

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
            i = f.check_index(index)
            return GpuUtilization(t=now, gpu=round(100 * f._util[i]), memory=round(100 * f._mem_util[i]))

    def total_energy_mj(self, index: int) -> int:
        return self._get(index, lambda i: self._f._energy_j[i] * 1000.0)

    def power_budget_mw(self) -> int | None:
        b = self._f.config.budget_w
        return None if b is None else round(b * 1000)


class GpuActuatorsSim:
    """``GpuActuators`` of the simulated node: NVML's power management limit."""

    def __init__(self, facility: GpuFacility) -> None:
        self._f = facility

    def set_power_limit(self, index: int, mw: int) -> None:
        f = self._f
        with f._lock:
            now = f._synced_now()
            f.set_limit(now, index, mw)
