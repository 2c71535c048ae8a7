"""Primaries whose sub-second demand comes from real request arrivals.

The VM traces give 5-minute means and peaks; below that the CPU facility invents the shape
(burst slots, a lognormal inside each 100 ms cell). A request-serving primary has a shape of
its own: requests arrive in bursts (the Azure LLM 2023 code trace has a coefficient of
variation of 2.3 in its per-second counts, up to 67 requests in one second and none in
others), and each keeps a core busy for its CPU time. This module turns arrivals into the
facility's demand at cell resolution, so every policy sees the same real sub-second structure:

* A **service** replays the LLM trace (arrival times to the 100 ns, prompt and output tokens)
  from a seeded offset, compressed in time by a seeded factor (so the services of a node are
  neither in step nor all of one rate). A request's CPU time is
  ``base + per_prompt_token x prompt + per_output_token x output`` on one core: the model of
  a CPU-side serving front end (tokenising the prompt, detokenising and streaming each output
  token, scheduling). The coefficients are assumptions, stated in :class:`ServiceCost` and in
  docs/simulator.md; the timing is the trace's.
* A **functions host** replays Azure Functions per-invocation records (2021: start, duration)
  with each invocation busy on one core for ``cpu_share`` of its duration (the records give
  wall time; how much of it is CPU is not in the trace).
* Each service has ``vcpus`` cores of its own at most: work beyond them waits and runs in the
  next cells (a fluid queue), so a burst is spread, not lost.

The result is a :class:`~sol.sim.cpu.VmCpuDemand` with one "VM" per service and 100 ms
windows (``max_pct == avg_pct``: the facility adds no burst slots of its own; its lognormal
inside the cell stays). Fault injection that scales a VM demand scales it the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sol.sim._common import STREAM_CPU_SYNTH, FloatArray, block_rng
from sol.sim.cpu import VmCpuDemand
from sol.sim.faas import InvocationList
from sol.sim.gpu import LlmRequests

__all__ = ["ServiceCost", "busy_cores", "queued", "request_cpu_demand"]

#: block of STREAM_CPU_SYNTH the service offsets and compressions are drawn from
_ARRIVALS_BLOCK = 1000


@dataclass(frozen=True)
class ServiceCost:
    """CPU seconds a request costs its service's front end (assumptions, docs/simulator.md).

    The defaults make a request of the trace's median size (1,469 prompt tokens, 13 output
    tokens) cost 0.18 s and the mean request 0.26 s of one core: tokenising at ~10k tokens/s
    per core, 2 ms per streamed token. A service replaying the trace at 1x then needs 0.68
    cores on average and up to ~17 in its busiest second.
    """

    base_s: float = 0.002
    per_prompt_token_s: float = 1.0e-4
    per_output_token_s: float = 2.0e-3

    def cpu_s(self, prompt: np.ndarray, output: np.ndarray) -> FloatArray:
        out: FloatArray = (
            self.base_s
            + self.per_prompt_token_s * prompt.astype(np.float64)
            + self.per_output_token_s * output.astype(np.float64)
        )
        return out


def busy_cores(start_s: FloatArray, cpu_s: FloatArray, span_s: float, cell_s: float) -> FloatArray:
    """Mean busy cores in each cell of ``[0, span_s)`` when every request runs on a core of
    its own from its start for ``cpu_s``; work past ``span_s`` wraps to the start (a replay
    loops). Exact (piecewise-linear integrals), O(n log n)."""
    n_cells = math.ceil(span_s / cell_s - 1e-9)
    if n_cells <= 0:
        raise ValueError(f"span {span_s} s holds no {cell_s} s cell")
    if start_s.size == 0:
        return np.zeros(n_cells)
    s = np.mod(start_s, span_s)
    d = np.minimum(np.maximum(cpu_s, 0.0), span_s)  # a request longer than the loop is one loop
    e = s + d
    grid = np.arange(n_cells + 1, dtype=np.float64) * cell_s
    # busy integral up to t over all requests: sum clip(t - s, 0, d); the part of a request
    # past span_s is the same shape shifted back by span_s
    starts = np.concatenate([s, s - span_s])
    ends = np.concatenate([e, e - span_s])
    order_s = np.sort(starts)
    order_e = np.sort(ends)
    cs = np.concatenate([[0.0], np.cumsum(order_s)])
    ce = np.concatenate([[0.0], np.cumsum(order_e)])
    ks = np.searchsorted(order_s, grid, side="right")
    ke = np.searchsorted(order_e, grid, side="right")
    integral = (grid * ks - cs[ks]) - (grid * ke - ce[ke])
    out: FloatArray = np.maximum(np.diff(integral) / cell_s, 0.0)
    return out


def queued(busy: FloatArray, cores: float) -> FloatArray:
    """``busy`` (cores per cell) run on at most ``cores``: what does not fit waits and runs
    in the next cells (a fluid queue); what is left at the end wraps to the start."""
    out = np.empty_like(busy)
    backlog = 0.0
    for _ in range(2):  # a second pass carries the end's backlog into the start
        for i, b in enumerate(busy.tolist()):
            want = b + backlog
            run = want if want < cores else cores
            out[i] = run
            backlog = want - run
        if backlog <= 1e-9:
            break
    return out


def request_cpu_demand(
    llm: LlmRequests,
    *,
    seed: int,
    services: int,
    vcpus: int = 8,
    compression: tuple[float, float] = (1.0, 3.0),
    cost: ServiceCost | None = None,
    functions: InvocationList | None = None,
    functions_vcpus: int = 8,
    functions_cpu_share: float = 0.5,
    cell_s: float = 0.1,
) -> VmCpuDemand:
    """``services`` replays of the LLM trace (and a functions host when ``functions`` is
    given) as per-cell demand of one "VM" each.

    Service ``i`` starts at a seeded offset into the trace and runs it ``c_i`` times faster,
    ``c_i`` log-uniform in ``compression``; the node's demand repeats every
    ``span / min(c)`` at most, so the replay's period is the trace's span (``window_s`` x
    cells). Every service's cell series is computed over one trace span of node time.
    """
    if services < 1:
        raise ValueError(f"need >= 1 service, got {services}")
    lo, hi = compression
    if not 0 < lo <= hi:
        raise ValueError(f"compression must be 0 < low <= high, got {compression}")
    if not 0 < functions_cpu_share <= 1:
        raise ValueError(f"functions_cpu_share must be in (0, 1], got {functions_cpu_share}")
    cost = cost or ServiceCost()
    rng = block_rng(seed, STREAM_CPU_SYNTH, _ARRIVALS_BLOCK)
    span = llm.span_s
    n_cells = math.ceil(span / cell_s - 1e-9)
    span_cells = n_cells * cell_s
    per_req = cost.cpu_s(llm.prompt_tokens, llm.output_tokens)
    cols: list[FloatArray] = []
    caps: list[int] = []
    names: list[str] = []
    for i in range(services):
        c = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        offset = float(rng.uniform(0.0, span))
        # c passes of the trace fit in one node span: the service's arrivals in node time
        reps = math.ceil(c) + 1
        t = np.concatenate([(llm.arrival_s + k * span - offset) / c for k in range(reps)])
        w = np.tile(per_req, reps)
        keep = (t >= 0.0) & (t < span_cells)
        busy = busy_cores(t[keep], w[keep], span_cells, cell_s)
        cols.append(queued(busy, float(vcpus)) / vcpus * 100.0)
        caps.append(vcpus)
        names.append(f"llm{i}@{c:.2f}x")
    if functions is not None:
        reps = math.ceil(span_cells / functions.span_s)
        t = np.concatenate([functions.start_s + k * functions.span_s for k in range(reps)])
        w = np.tile(functions.duration_s * functions_cpu_share, reps)
        keep = t < span_cells
        busy = busy_cores(t[keep], w[keep], span_cells, cell_s)
        cols.append(queued(busy, float(functions_vcpus)) / functions_vcpus * 100.0)
        caps.append(functions_vcpus)
        names.append("functions")
    pct = np.clip(np.stack(cols, axis=1), 0.0, 100.0)
    return VmCpuDemand(
        avg_pct=pct,
        max_pct=pct.copy(),
        window_s=cell_s,
        vcpus=np.array(caps, dtype=np.int64),
        names=tuple(names),
        source=f"{llm.source} (+ {functions.source})" if functions is not None else llm.source,
    )
