"""Request-serving primaries on real arrivals (sol.sim.arrivals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sol.sim.arrivals import ServiceCost, busy_cores, queued, request_cpu_demand
from sol.sim.cpu import CpuConfig, CpuFacility
from sol.sim.gpu import LlmRequests
from sol.sim.node import SimNode
from sol.sim.traces import load_functions_2021, load_llm_2023


def brute_busy(start: np.ndarray, cpu: np.ndarray, span: float, cell: float) -> np.ndarray:
    """Busy cores per cell by fine sampling (every request on a core of its own, wrapping)."""
    step = cell / 200
    t = (np.arange(round(span / step)) + 0.5) * step
    busy = np.zeros_like(t)
    for s, d in zip(start, cpu, strict=True):
        for shift in (0.0, -span):  # the part past the span wraps to the start
            busy += (t >= s + shift) & (t < s + d + shift)
    out: np.ndarray = busy.reshape(-1, 200).mean(axis=1)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_busy_cores_is_the_exact_integral_of_requests_in_flight(seed: int) -> None:
    rng = np.random.default_rng(seed)
    span, cell = 5.0, 0.1
    start = np.sort(rng.uniform(0, span, 40))
    cpu = rng.exponential(0.15, 40)
    cpu[0] = 0.8  # one request over many cells
    start[-1], cpu[-1] = 4.95, 0.3  # one past the end: wraps to the start
    got = busy_cores(start, cpu, span, cell)
    want = brute_busy(start, cpu, span, cell)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, want, atol=0.01)
    # every CPU second is somewhere
    assert got.sum() * cell == pytest.approx(cpu.sum())


def test_queued_runs_what_does_not_fit_later_and_loses_nothing() -> None:
    busy = np.array([0.0, 10.0, 0.0, 0.0, 1.0, 0.0])
    out = queued(busy, 4.0)
    np.testing.assert_allclose(out, [0.0, 4.0, 4.0, 2.0, 1.0, 0.0])
    assert out.max() <= 4.0
    # a backlog left at the end runs at the start of the next loop
    wrapped = queued(np.array([0.0, 0.0, 9.0]), 4.0)
    np.testing.assert_allclose(wrapped, [4.0, 1.0, 4.0])
    assert wrapped.sum() == pytest.approx(9.0)


def tiny_trace() -> LlmRequests:
    t = np.array([0.0, 0.05, 0.06, 1.0, 2.5, 2.51, 2.52, 2.53])
    return LlmRequests(
        arrival_s=t,
        prompt_tokens=np.full(t.size, 1000, dtype=np.int64),
        output_tokens=np.full(t.size, 50, dtype=np.int64),
        span_s=4.0,
    )


def test_services_replay_the_trace_from_their_own_offsets_and_rates() -> None:
    cost = ServiceCost()
    d = request_cpu_demand(tiny_trace(), seed=1, services=3, vcpus=4, compression=(1.0, 3.0))
    assert d.window_s == 0.1 and d.avg_pct.shape == (40, 3) and list(d.vcpus) == [4, 4, 4]
    np.testing.assert_array_equal(d.avg_pct, d.max_pct)  # no invented burst slots
    cores = d.avg_pct / 100 * d.vcpus
    rates = [float(n.split("@")[1].rstrip("x")) for n in d.names]
    assert all(1.0 <= r <= 3.0 for r in rates) and len(set(rates)) == 3
    for j, rate in enumerate(rates):
        # a service at c x the trace's rate does c x its CPU seconds per loop (within the
        # rounding of the names' two decimals and the part of the last pass past the span)
        per_loop = cost.cpu_s(np.array([1000]), np.array([50]))[0] * 8 * rate
        assert cores[:, j].sum() * 0.1 == pytest.approx(per_loop, rel=0.3)
    # not in step: the services' busiest cells differ
    assert len({int(np.argmax(cores[:, j])) for j in range(3)}) > 1
    again = request_cpu_demand(tiny_trace(), seed=1, services=3, vcpus=4, compression=(1.0, 3.0))
    np.testing.assert_array_equal(again.avg_pct, d.avg_pct)
    other = request_cpu_demand(tiny_trace(), seed=2, services=3, vcpus=4, compression=(1.0, 3.0))
    assert not np.array_equal(other.avg_pct, d.avg_pct)


def test_a_service_never_uses_more_than_its_vcpus() -> None:
    burst = LlmRequests(
        arrival_s=np.zeros(20),
        prompt_tokens=np.full(20, 5000, dtype=np.int64),
        output_tokens=np.zeros(20, dtype=np.int64),
        span_s=10.0,
    )
    d = request_cpu_demand(burst, seed=1, services=1, vcpus=2, compression=(1.0, 1.0))
    assert d.avg_pct.max() == pytest.approx(100.0)
    # 20 requests x 0.502 s on 2 cores: 5.02 s of both cores busy, nothing lost
    assert (d.avg_pct[:, 0] / 100 * 2).sum() * 0.1 == pytest.approx(20 * 0.502)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        pytest.param({"services": 0}, "service", id="no-services"),
        pytest.param({"compression": (2.0, 1.0)}, "compression", id="compression-reversed"),
        pytest.param({"functions_cpu_share": 0.0}, "functions_cpu_share", id="cpu-share-zero"),
    ],
)
def test_bad_arguments_are_named(kw: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"seed": 1, "services": 2, **kw}
    with pytest.raises(ValueError, match=match):
        request_cpu_demand(tiny_trace(), **args)  # type: ignore[arg-type]


def test_the_real_traces_make_bursty_node_demand_the_facility_replays(data_dir: Path) -> None:
    llm = load_llm_2023(data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv")
    fn = load_functions_2021(data_dir / "azure-functions" / "azure2021_invocations_sample199.csv")
    d = request_cpu_demand(llm, seed=1, services=11, functions=fn)
    assert d.n_vms == 12 and d.names[-1] == "functions"
    node_cores = (d.avg_pct / 100 * d.vcpus).sum(axis=1)
    per_s = node_cores[: node_cores.size // 10 * 10].reshape(-1, 10)
    # sub-second structure of its own: within a second the peak is well above the mean
    assert (per_s.max(axis=1) - per_s.mean(axis=1)).mean() > 1.0
    assert 5.0 < node_cores.mean() < 0.5 * d.vcpus.sum()
    # the CPU facility replays it cell by cell
    node = SimNode(clock_start=0.0, label="arrivals")
    cfg = CpuConfig(cores=int(d.vcpus.sum()), slot_s=0.1, series_period_s=0.1)
    node.attach(CpuFacility(cfg, d, seed=1, lock=node.lock, now=node.now, origin=0.0))
    node.advance(60.0)
    served = node.series()["cpu.primary_demand_cores"][1][:600]
    np.testing.assert_allclose(served, node_cores[:600], rtol=1e-6, atol=1e-9)
