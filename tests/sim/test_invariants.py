"""Physical invariants of the ground truth and series of every scenario.

Nothing negative or NaN, no share above 1, no more cores, bytes, tokens or energy than the
node and its workload have, and every total consistent with the means it is reported with.
Each scenario runs briefly with a scripted agent that writes to every facility it has.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import pytest

from sol.sim import ScenarioError, SimNode, get_scenario, list_scenarios

DURATION_S = 900.0
REL = 1e-9


def _drive(node: SimNode, seed: int) -> None:
    rng = random.Random(seed)
    s, a = node.sensors, node.actuators
    t = 0.0
    while t < DURATION_S:
        t = min(DURATION_S, t + rng.choice([0.5, 1.0, 13.0, 60.0]))
        node.advance(t)
        if rng.random() > 0.15:
            continue
        if s.cpu is not None:
            a.cpu.set_harvest_cores(rng.randint(0, s.cpu.total_cores()))
        if s.gpu is not None:
            a.gpu.set_power_limit(rng.randrange(s.gpu.count()), rng.randint(100, 400) * 1000)
        if s.memory is not None:
            regions = s.memory.regions().regions
            j = rng.randrange(len(regions))
            end = regions[min(len(regions) - 1, j + 3)].end
            a.memory.migrate(regions[j].start, end, rng.randint(0, 1))
        if s.faas is not None:
            name = rng.choice(s.faas.objects()).name
            (a.faas.prewarm if rng.random() < 0.5 else a.faas.evict)(name)


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _violations(node: SimNode, gt: Mapping[str, float]) -> list[str]:
    bad: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            bad.append(what)

    t = gt["sim.duration_s"]
    for k, v in gt.items():
        if k != "gpu.budget_w":  # "unbounded" (inf) when the node has no budget
            need(math.isfinite(v), f"{k} = {v} is not finite")
        need(v >= 0.0, f"{k} = {v} < 0")

    if "cpu.cores" in gt:
        cores = gt["cpu.cores"]
        demand = gt["cpu.primary_demand_core_s"]
        served = gt["cpu.primary_served_core_s"]
        need(_close(served + gt["cpu.primary_unserved_core_s"], demand), "served + unserved != demand")
        need(gt["cpu.primary_run_delay_s"] == gt["cpu.primary_unserved_core_s"], "run delay != unserved")
        need(demand <= gt["cpu.primary_vcpus"] * t * (1 + REL), "primaries use more than their vCPUs")
        need(served + gt["cpu.harvested_core_s"] <= cores * t * (1 + REL), "more core-s than the node has")
        need(
            gt["cpu.harvested_core_s"] <= gt["cpu.harvest_granted_core_s"] * (1 + REL), "harvested > granted"
        )
        need(gt["cpu.harvest_granted_core_s"] <= cores * t * (1 + REL), "granted > cores")
        need(_close(gt["cpu.windows"], t / 0.1), "windows != duration / 100 ms")
        need(
            gt["cpu.primary_unserved_windows"] <= gt["cpu.windows"] * (1 + REL), "unserved windows > windows"
        )
        need(gt["cpu.primary_util_mean_pct"] <= 100.0 * (1 + REL), "utilisation > 100 %")
        need(gt["cpu.primary_psi_some_mean"] <= 1.0 + REL, "PSI share > 1")

    if "mem.accesses" in gt:
        foot = gt["mem.footprint_bytes"]
        need(gt["mem.far_accesses"] <= gt["mem.accesses"] * (1 + REL), "far accesses > accesses")
        need(gt["mem.far_access_share"] <= 1.0 + REL, "far share > 1")
        need(gt["mem.slowdown_mean"] >= 1.0 - REL, "slowdown < 1")
        need(
            _close(gt["mem.extra_time_s"], (gt["mem.slowdown_mean"] - 1.0) * t),
            "extra time != slowdown x time",
        )
        need(abs(gt["mem.local_bytes"] + gt["mem.far_bytes"] - foot) <= 2, "local + far != footprint")
        need(gt["mem.local_bytes"] <= gt["mem.local_capacity_bytes"] + 1, "local tier over capacity")
        need(_close(gt["mem.local_bytes_mean"] + gt["mem.far_bytes_mean"], foot), "mean bytes != footprint")
        need(
            gt["mem.local_bytes_mean"] <= gt["mem.local_capacity_bytes"] * (1 + REL), "local mean > capacity"
        )
        need(gt["mem.hot_bytes_mean"] <= foot * (1 + REL), "hot bytes > footprint")
        need(gt["mem.access_weighted_bytes_mean"] <= gt["mem.hot_bytes_mean"] * (1 + REL), "weighted > hot")
        need(gt["mem.migration_busy_s"] <= t * (1 + REL), "migration engine busy > time")

    if "gpu.count" in gt:
        cfg = node.facilities["gpu"].config
        n = gt["gpu.count"]
        need(gt["gpu.requests_completed"] <= gt["gpu.requests"], "completed > requests")
        requested = gt["gpu.requests"] * gt["gpu.output_tokens_mean"]
        need(gt["gpu.tokens_generated"] <= requested * (1 + REL) + 1e-6, "more tokens than requested")
        need(_close(gt["gpu.throughput_tokens_per_s"] * t, gt["gpu.tokens_generated"]), "throughput x time")
        need(gt["gpu.ttft_p50_s"] <= gt["gpu.ttft_p99_s"], "TTFT p50 > p99")
        need(_close(gt["gpu.power_mean_w"] * t, gt["gpu.energy_j"]), "energy != mean power x time")
        need(gt["gpu.power_mean_w"] <= n * cfg.tdp_w * (1 + REL), "mean power > TDP")
        floor_w = n * min(cfg.idle_share * cfg.tdp_w, cfg.min_limit_w)
        need(gt["gpu.power_mean_w"] >= floor_w * (1 - REL), "mean power below idle / minimum limit")
        need(gt["gpu.node_power_peak_w"] <= n * cfg.tdp_w + cfg.other_power_w + 1e-6, "peak > TDP")
        need(gt["gpu.budget_violation_s"] <= t, "budget violated longer than the run")
        if gt["gpu.budget_violation_s"] > 0:
            most = (gt["gpu.node_power_peak_w"] - gt["gpu.budget_w"]) * gt["gpu.budget_violation_s"]
            need(gt["gpu.budget_excess_j"] <= most * (1 + REL), "excess > (peak - budget) x time")
        need(gt["gpu.capped_gpu_s"] <= n * t, "capped longer than the run")
        need(gt["gpu.perf_loss_gpu_s"] <= gt["gpu.capped_gpu_s"] * (1 + REL), "perf loss > capped time")
        need(gt["gpu.thermal_throttle_s"] <= n * t, "throttled longer than the run")
        need(gt["gpu.util_mean_pct"] <= 100.0 * (1 + REL), "GPU utilisation > 100 %")
        need(gt["gpu.temperature_max_c"] >= cfg.ambient_c, "colder than the inlet")

    if "faas.invocations" in gt:
        inv = gt["faas.invocations"]
        need(gt["faas.cold_starts"] <= inv, "cold starts > invocations")
        need(gt["faas.cold_start_share"] <= 1.0 + REL, "cold-start share > 1")
        need(_close(gt["faas.invocation_rate_per_s"] * t, inv), "rate x time != invocations")
        need(gt["faas.wasted_memory_gb_s"] <= gt["faas.memory_gb_s"] * (1 + REL) + 1e-9, "wasted > memory")
        all_objects_gb = sum(o.size_bytes for o in node.sensors.faas.objects()) / 1e9
        need(gt["faas.memory_gb_s"] <= all_objects_gb * t * (1 + REL), "more memory than all objects")
    return bad


def _series_violations(node: SimNode) -> list[str]:
    bad: list[str] = []
    for name, (t, v) in node.series().items():
        if t.size != v.size or (t.size > 1 and not (t[1:] > t[:-1]).all()):
            bad.append(f"{name}: times not increasing")
        if not all(math.isfinite(x) for x in v.tolist()):
            bad.append(f"{name}: not finite")
        if v.size and v.min() < -1e-9:
            bad.append(f"{name}: min {v.min()} < 0")
        if name.endswith(("_share", "psi_some")) and v.size and v.max() > 1.0 + 1e-9:
            bad.append(f"{name}: max {v.max()} > 1")
        if name.endswith("util_pct") and v.size and v.max() > 100.0 + 1e-9:
            bad.append(f"{name}: max {v.max()} > 100")
    return bad


def _sensor_violations(node: SimNode) -> list[str]:
    bad: list[str] = []
    s = node.sensors
    if s.cpu is not None:
        for group in ("primary", "harvest"):
            p = s.cpu.pressure(group)
            for v in (p.some_avg10, p.some_avg60, p.some_avg300, p.full_avg10, p.full_avg60, p.full_avg300):
                if not -1e-12 <= v <= 1.0 + 1e-12:
                    bad.append(f"cpu {group} PSI average {v} outside [0, 1]")
            u = s.cpu.usage(group)
            if not -1e-9 <= u.cores <= s.cpu.total_cores() + 1e-9:
                bad.append(f"cpu {group} usage {u.cores} outside [0, cores]")
    if s.gpu is not None:
        for i in range(s.gpu.count()):
            if s.gpu.power_usage_mw(i) > s.gpu.enforced_power_limit_mw(i) + 1:
                bad.append(f"gpu {i} draws more than its enforced limit")
            if not 0 <= s.gpu.utilization(i).gpu <= 100:
                bad.append(f"gpu {i} utilisation outside [0, 100]")
    if s.memory is not None:
        snap = s.memory.regions()
        if any(not 0 <= r.nr_accesses <= snap.max_nr_accesses or r.age < 0 for r in snap.regions):
            bad.append("DAMON counters outside [0, max_nr_accesses]")
        for nd in s.memory.nodes():
            if not 0 <= nd.used_bytes <= nd.total_bytes:
                bad.append(f"NUMA node {nd.node} uses {nd.used_bytes} of {nd.total_bytes}")
    return bad


@pytest.mark.parametrize("seed", [1, 29])
@pytest.mark.parametrize("scenario", [s.name for s in list_scenarios()])
def test_ground_truth_series_and_sensors_are_physical(scenario: str, seed: int) -> None:
    try:
        node = get_scenario(scenario).build(seed)
    except ScenarioError as e:
        pytest.skip(str(e))
    _drive(node, seed)
    gt = node.ground_truth()
    assert gt["sim.duration_s"] == DURATION_S
    problems = _violations(node, gt) + _series_violations(node) + _sensor_violations(node)
    assert not problems, "\n".join(problems)
