"""Seeded synthetic workloads whose parameters are figures from public traces and papers.

Where a figure comes from the samples in ``../shared/data`` it was computed from them once
and is quoted here next to the sample it comes from (the LLM stream's are recomputed by
``tests/sim/test_gpu_synthetic.py``); the other figures cite their paper. Parameters marked
"assumption" have no public figure behind them and are documented as such in docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sol.sim._common import (
    STREAM_CPU_SYNTH,
    STREAM_FAAS_INVOCATIONS,
    STREAM_FAAS_SETUP,
    STREAM_GPU_REQUESTS,
    STREAM_MEM_PHASES,
    FloatArray,
    IntArray,
    block_rng,
)
from sol.sim.cpu import VmCpuDemand
from sol.sim.memory import MemoryWorkload

# --- CPU: Azure VM trace V1 (Cortez et al., "Resource Central", SOSP'17) -----------------
#: per-VM mean CPU % over the 100-VM sample of azure-vm-cpu-2017: median 7.39 %, p90 20.4 %
VM_MEAN_UTIL_MEDIAN_PCT = 7.39
VM_MEAN_UTIL_LOG_SIGMA = math.log(20.38 / 7.39) / 1.2816
#: median relative half-amplitude of the daily cycle of the sample's VMs (folded by day)
VM_DIURNAL_AMPLITUDE = 0.38
#: std of log(avg_w / avg_{w-1}) between 5-minute windows in the sample
VM_WINDOW_LOG_STEP_STD = 0.39
#: max/avg of a 5-minute window in the sample: median 1.93, p75 2.51
VM_PEAK_RATIO_MEDIAN = 1.93
VM_PEAK_RATIO_LOG_SIGMA = math.log(2.51 / 1.93) / 0.6745
#: vCPUs of a primary VM (assumption: the public sample carries no core counts)
VM_VCPU_CHOICES = (1, 2, 4, 8)
VM_VCPU_WEIGHTS = (0.30, 0.45, 0.15, 0.10)


def synthetic_vm_cpu(
    seed: int,
    n_vms: int,
    duration_s: float,
    *,
    util_scale: float = 1.0,
    peak_scale: float = 1.0,
    window_s: float = 300.0,
    vcpus: IntArray | None = None,
) -> VmCpuDemand:
    """VM CPU demand shaped like the Azure 2017 sample (mean, spread, daily cycle, peaks)."""
    rng = block_rng(seed, STREAM_CPU_SYNTH, 0)
    n_win = max(1, math.ceil(duration_s / window_s))
    if vcpus is None:
        vcpus = rng.choice(np.array(VM_VCPU_CHOICES), size=n_vms, p=np.array(VM_VCPU_WEIGHTS)).astype(
            np.int64
        )
    means = VM_MEAN_UTIL_MEDIAN_PCT * np.exp(rng.normal(0.0, VM_MEAN_UTIL_LOG_SIGMA, n_vms)) * util_scale
    phase = rng.uniform(0, 2 * math.pi, n_vms)
    t = (np.arange(n_win) + 0.5) * window_s
    diurnal = 1.0 + VM_DIURNAL_AMPLITUDE * np.sin(2 * math.pi * t[:, None] / 86400.0 + phase[None, :])
    # AR(1) log noise: stationary std s, step std sqrt(2(1-rho)) s = VM_WINDOW_LOG_STEP_STD
    s = 0.5
    rho = 1.0 - VM_WINDOW_LOG_STEP_STD**2 / (2 * s * s)
    eps = rng.normal(0.0, 1.0, (n_win, n_vms))
    noise = np.empty((n_win, n_vms))
    noise[0] = s * eps[0]
    c = math.sqrt(1 - rho * rho) * s
    for w in range(1, n_win):
        noise[w] = rho * noise[w - 1] + c * eps[w]
    avg = np.clip(means[None, :] * diurnal * np.exp(noise - 0.5 * s * s), 0.1, 100.0)
    ratio = np.exp(
        rng.normal(math.log(VM_PEAK_RATIO_MEDIAN * peak_scale), VM_PEAK_RATIO_LOG_SIGMA, (n_win, n_vms))
    )
    peak = np.clip(avg * np.maximum(ratio, 1.0), avg, 100.0)
    return VmCpuDemand(
        avg_pct=avg,
        max_pct=peak,
        window_s=window_s,
        vcpus=vcpus,
        names=tuple(f"vm{i}" for i in range(n_vms)),
        source="synthetic",
    )


# --- GPU: Azure LLM inference trace 2023, code service (Patel et al., Splitwise, ISCA'24) --
#: mean arrival rate of the code trace sample: 8,819 requests in 57.3 min
LLM_CODE_RATE_PER_S = 2.57
#: lognormal fits (mean, std of ln) of the sample's token counts; medians 1469 and 13
LLM_PROMPT_LOG_MU, LLM_PROMPT_LOG_SIGMA = 7.00, 1.36
LLM_OUTPUT_LOG_MU, LLM_OUTPUT_LOG_SIGMA = 2.79, 0.85
LLM_PROMPT_MAX, LLM_OUTPUT_MAX = 7437, 1899


@dataclass
class PoissonLlmRequests:
    """A Poisson request stream, modulated per minute by a lognormal factor (``burstiness``
    is its log-std; 0 = plain Poisson), generated lazily in seeded one-hour blocks."""

    seed: int
    rate_per_s: float = LLM_CODE_RATE_PER_S
    burstiness: float = 0.0
    prompt_scale: float = 1.0
    source: str = "synthetic"
    block_s: float = 3600.0
    _cache: dict[int, tuple[FloatArray, IntArray, IntArray]] = field(default_factory=dict, repr=False)

    def _block(self, b: int) -> tuple[FloatArray, IntArray, IntArray]:
        got = self._cache.get(b)
        if got is not None:
            return got
        rng = block_rng(self.seed, STREAM_GPU_REQUESTS, b)
        slots = int(self.block_s // 60)
        mult = (
            np.exp(rng.normal(-0.5 * self.burstiness**2, self.burstiness, slots))
            if self.burstiness
            else np.ones(slots)
        )
        counts = rng.poisson(self.rate_per_s * 60.0 * mult)
        t = np.repeat(np.arange(slots) * 60.0, counts) + rng.uniform(0, 60.0, int(counts.sum()))
        t.sort()
        n = t.size
        prompt = np.clip(
            np.rint(np.exp(rng.normal(LLM_PROMPT_LOG_MU, LLM_PROMPT_LOG_SIGMA, n)) * self.prompt_scale),
            1,
            LLM_PROMPT_MAX,
        ).astype(np.int64)
        out = np.clip(
            np.rint(np.exp(rng.normal(LLM_OUTPUT_LOG_MU, LLM_OUTPUT_LOG_SIGMA, n))), 1, LLM_OUTPUT_MAX
        ).astype(np.int64)
        got = (t + b * self.block_s, prompt, out)
        if len(self._cache) > 4:
            self._cache.pop(next(iter(self._cache)))
        self._cache[b] = got
        return got

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, IntArray]:
        ts: list[FloatArray] = []
        ps: list[IntArray] = []
        os_: list[IntArray] = []
        for b in range(math.floor(t0 / self.block_s), math.floor(t1 / self.block_s) + 1):
            t, p, o = self._block(b)
            lo, hi = np.searchsorted(t, (t0, t1), side="left").tolist()  # t is sorted
            ts.append(t[lo:hi])
            ps.append(p[lo:hi])
            os_.append(o[lo:hi])
        if len(ts) == 1:
            return ts[0], ps[0], os_[0]
        return np.concatenate(ts), np.concatenate(ps), np.concatenate(os_)


# --- FaaS: Azure Functions 2019 (Shahrad et al., "Serverless in the Wild", ATC'20) ---------
#: ATC'20 §3: 45 % of apps are invoked at most once per hour on average, 81 % at most once per
#: minute. A lognormal over log10(invocations per minute) through both points:
FAAS_LOG10_RATE_MU = -1.555
FAAS_LOG10_RATE_SIGMA = 1.772
#: trigger mix of the 1,000-function sample (azure2019_sample1000fn): timer 414, http 254,
#: queue 133, orchestration 72, others 64, event 37, storage 26
FAAS_TRIGGERS = ("timer", "http", "queue", "orchestration", "others", "event", "storage")
FAAS_TRIGGER_WEIGHTS = (0.414, 0.254, 0.133, 0.072, 0.064, 0.037, 0.026)
#: ATC'20 §3: 50 % of functions run for less than 1 s on average, 96 % under 60 s
FAAS_DURATION_LOG_MU = 0.0
FAAS_DURATION_LOG_SIGMA = math.log(60.0) / 1.7507
#: ATC'20 §3: 50 % of apps allocate at most 170 MB, 90 % never more than 400 MB
FAAS_MEMORY_MEDIAN_MB = 170.0
FAAS_MEMORY_LOG_SIGMA = math.log(400.0 / 170.0) / 1.2816


def faas_rate_share(lo_per_min: float, hi_per_min: float) -> float:
    """Share of ATC'20's apps whose mean rate lies in ``[lo, hi)`` invocations per minute.

    >>> round(faas_rate_share(0.0, 1 / 60), 2), round(faas_rate_share(0.0, 1.0), 2)
    (0.45, 0.81)
    """

    def cdf(r: float) -> float:
        if r <= 0:
            return 0.0
        if math.isinf(r):
            return 1.0
        z = (math.log10(r) - FAAS_LOG10_RATE_MU) / FAAS_LOG10_RATE_SIGMA
        return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))

    return max(0.0, cdf(hi_per_min) - cdf(lo_per_min))


def faas_rates(
    rng: np.random.Generator, n: int, lo_per_min: float = 0.0, hi_per_min: float = math.inf
) -> FloatArray:
    """``n`` mean rates (invocations per minute) from ATC'20's distribution, within ``[lo, hi)``."""
    if faas_rate_share(lo_per_min, hi_per_min) <= 1e-6:
        raise ValueError(f"almost no app has a rate in [{lo_per_min}, {hi_per_min}) per minute")
    out = np.empty(0)
    while out.size < n:
        r = 10 ** rng.normal(FAAS_LOG10_RATE_MU, FAAS_LOG10_RATE_SIGMA, max(16, 2 * (n - out.size)))
        out = np.concatenate([out, r[(r >= lo_per_min) & (r < hi_per_min)]])
    got: FloatArray = out[:n]
    return got


def faas_object_sizes(rng: np.random.Generator, n: int) -> IntArray:
    mb = FAAS_MEMORY_MEDIAN_MB * np.exp(rng.normal(0.0, FAAS_MEMORY_LOG_SIGMA, n))
    out: IntArray = np.rint(mb * 1e6).astype(np.int64)
    return out


@dataclass
class SyntheticFunctions:
    """Functions with ATC'20-shaped rates, triggers, durations and memory, generated lazily
    in seeded one-hour blocks. Each function has its own cache object (its app).

    ``rate_range_per_min`` draws the rates from the part of ATC'20's distribution in that
    range (``(0, 10 / 60)``: the rare apps the 2019 sample leaves out). A timer fires at its
    function's rate, every ``1 / rate`` from a random phase; the other triggers are Poisson.
    ``name_prefix`` prefixes the function and app names, and ``stream_block`` offsets the
    random blocks, so two generators with one seed can share a node.
    """

    seed: int
    n_functions: int = 100
    rate_scale: float = 1.0
    max_rate_per_min: float = 60.0
    rate_range_per_min: tuple[float, float] | None = None
    name_prefix: str = ""
    stream_block: int = 0
    source: str = "synthetic"
    block_s: float = 3600.0
    functions: tuple[str, ...] = field(init=False)
    function_object: IntArray = field(init=False)
    objects: tuple[str, ...] = field(init=False)
    object_bytes: IntArray = field(init=False)
    _cache: dict[int, tuple[FloatArray, IntArray, FloatArray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        rng = block_rng(self.seed, STREAM_FAAS_SETUP, self.stream_block)
        n = self.n_functions
        self.trigger = rng.choice(len(FAAS_TRIGGERS), size=n, p=np.array(FAAS_TRIGGER_WEIGHTS))
        lo, hi = self.rate_range_per_min or (0.0, math.inf)
        self.rate_per_min = np.minimum(faas_rates(rng, n, lo, hi) * self.rate_scale, self.max_rate_per_min)
        self.period_s = 60.0 / self.rate_per_min
        self.phase_s = rng.uniform(0, 1, n) * self.period_s
        self.mean_duration_s = np.minimum(
            np.exp(rng.normal(FAAS_DURATION_LOG_MU, FAAS_DURATION_LOG_SIGMA, n)), 600.0
        )
        p = self.name_prefix
        self.functions = tuple(f"{p}fn{i}" for i in range(n))
        self.function_object = np.arange(n, dtype=np.int64)
        self.objects = tuple(f"{p}app{i}" for i in range(n))
        self.object_bytes = faas_object_sizes(rng, n)

    def _block(self, b: int) -> tuple[FloatArray, IntArray, FloatArray]:
        got = self._cache.get(b)
        if got is not None:
            return got
        rng = block_rng(self.seed, STREAM_FAAS_INVOCATIONS, self.stream_block + b)
        t0 = b * self.block_s
        ts: list[FloatArray] = []
        fs: list[IntArray] = []
        timer = self.trigger == 0
        for f in np.nonzero(timer)[0].tolist():
            per = float(self.period_s[f])
            first = math.ceil((t0 - self.phase_s[f]) / per)
            times = self.phase_s[f] + per * np.arange(first, first + int(self.block_s // per) + 2)
            times = times[(times >= t0) & (times < t0 + self.block_s)]
            ts.append(times)
            fs.append(np.full(times.size, f, np.int64))
        other = np.nonzero(~timer)[0]
        counts = rng.poisson(self.rate_per_min[other] * self.block_s / 60.0)
        ts.append(t0 + rng.uniform(0, self.block_s, int(counts.sum())))
        fs.append(np.repeat(other, counts).astype(np.int64))
        t = np.concatenate(ts)
        f_all = np.concatenate(fs)
        order = np.argsort(t, kind="stable")
        t, f_all = t[order], f_all[order]
        dur = self.mean_duration_s[f_all] * np.exp(rng.normal(-0.125, 0.5, t.size))
        got = (t, f_all, dur)
        if len(self._cache) > 4:
            self._cache.pop(next(iter(self._cache)))
        self._cache[b] = got
        return got

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]:
        ts: list[FloatArray] = []
        fs: list[IntArray] = []
        ds: list[FloatArray] = []
        for b in range(math.floor(t0 / self.block_s), math.floor(t1 / self.block_s) + 1):
            t, f, d = self._block(b)
            lo, hi = np.searchsorted(t, (t0, t1), side="left").tolist()  # t is sorted
            ts.append(t[lo:hi])
            fs.append(f[lo:hi])
            ds.append(d[lo:hi])
        if len(ts) == 1:
            return ts[0], fs[0], ds[0]
        return np.concatenate(ts), np.concatenate(fs), np.concatenate(ds)


# --- Memory: DAMON recording (damo tests, recA) and Pond (ASPLOS'23) ----------------------
#: share of monitored bytes with nr_accesses > 0 per snapshot in damon_recA: 47-51 %
MEM_HOT_SHARE = 0.49
#: of the region records with nr_accesses > 0 in damon_recA, 61 % are at the maximum (20-21)
MEM_SATURATED_SHARE = 0.61


def synthetic_memory(
    seed: int,
    *,
    footprint_bytes: int,
    region_bytes: int,
    duration_s: float,
    phase_s: float = 120.0,
    churn: float = 0.25,
    hot_share: float = MEM_HOT_SHARE,
    base_addr: int = 0x7F0000000000,
) -> MemoryWorkload:
    """Regions whose hot set shifts every ``phase_s`` on average (exponential, assumption):
    ``churn`` of the hot regions turn cold and as many cold ones turn hot."""
    rng = block_rng(seed, STREAM_MEM_PHASES, 0)
    n = max(1, footprint_bytes // region_bytes)
    start = base_addr + region_bytes * np.arange(n, dtype=np.int64)
    size = np.full(n, region_bytes, dtype=np.int64)
    gaps = rng.exponential(phase_s, max(2, int(3 * duration_s / phase_s) + 2))
    phase_t = np.concatenate([[0.0], np.cumsum(gaps)])
    phase_t = phase_t[phase_t < duration_s]
    n_ph = phase_t.size
    n_hot = max(1, round(hot_share * n))
    freq = np.zeros((n_ph, n))
    hot = rng.permutation(n)[:n_hot]
    level = np.where(rng.random(n) < MEM_SATURATED_SHARE, 1.0, rng.uniform(0.05, 0.95, n))
    for i in range(n_ph):
        if i > 0:
            k = max(1, round(churn * n_hot))
            cold = np.setdiff1d(np.arange(n), hot)
            if cold.size:
                out_idx = rng.choice(n_hot, size=min(k, cold.size), replace=False)
                hot = hot.copy()
                hot[out_idx] = rng.choice(cold, size=out_idx.size, replace=False)
        freq[i, hot] = level[hot]
    return MemoryWorkload(
        start=start,
        size=size,
        phase_t=phase_t,
        freq=freq,
        span_s=max(duration_s, float(phase_t[-1]) + 1.0),
        aggregation_s=0.1,
        max_nr_accesses=20,
        source="synthetic",
    )
