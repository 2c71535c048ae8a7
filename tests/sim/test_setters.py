"""The simulated facilities' public setters: the world changes at an exact virtual time.

What the fault harness's environment faults (and any what-if run) use instead of reaching
into the simulator: the demand, workload, request stream and power budget from "now" on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import cpu_node, faas_node, gpu_node, mem_node, run


def test_cpu_set_demand_applies_from_the_switch_on() -> None:
    def demand_after(switch: bool) -> tuple[float, float]:
        node = cpu_node([[40.0, 20.0]], [4, 8], cores=16)
        f = node.facilities["cpu"]
        run(node, 100.0)
        before = f.ground_truth()["cpu.primary_demand_core_s"]
        if switch:
            d = f.demand
            f.set_demand(dataclasses.replace(d, avg_pct=d.avg_pct / 2, max_pct=d.max_pct / 2))
        run(node, 200.0)
        return before, f.ground_truth()["cpu.primary_demand_core_s"]

    (b0, a0), (b1, a1) = demand_after(False), demand_after(True)
    assert b1 == pytest.approx(b0)  # what was integrated before the switch stays
    assert a1 - b1 == pytest.approx((a0 - b0) / 2, rel=1e-9)  # after it: the new demand


def test_cpu_set_demand_refuses_other_vms() -> None:
    f = cpu_node([[40.0, 20.0]], [4, 8], cores=16).facilities["cpu"]
    other = cpu_node([[40.0]], [4], cores=16).facilities["cpu"].demand
    with pytest.raises(ValueError, match="same VMs"):
        f.set_demand(other)


def test_memory_set_workload_changes_the_access_rates_from_the_switch_on() -> None:
    def far_accesses(switch: bool) -> tuple[float, float]:
        node = mem_node([0.2, 0.2, 0.2, 0.2], local_regions=2)
        f = node.facilities["memory"]

        def step_to(until: float) -> None:  # a sync per second: the per-piece path, its caches
            while node.now() < until:
                node.advance(node.now() + 1.0)
                node.sync()

        step_to(50.0)
        before = f.ground_truth()["mem.far_accesses"]
        if switch:
            f.set_workload(dataclasses.replace(f.w, freq=1.0 - np.power(1.0 - f.w.freq, 3.0)))
        step_to(100.0)
        return before, f.ground_truth()["mem.far_accesses"]

    (b0, a0), (b1, a1) = far_accesses(False), far_accesses(True)
    assert b1 == pytest.approx(b0)
    # access rates x3 (DAMON frequency p -> 1 - (1 - p)^3): the far node sees 3x the accesses
    assert a1 - b1 == pytest.approx(3.0 * (a0 - b0), rel=1e-6)


def test_memory_set_workload_refuses_other_regions() -> None:
    f = mem_node([0.2, 0.2], local_regions=1).facilities["memory"]
    other = mem_node([0.2, 0.2, 0.2], local_regions=1).facilities["memory"].w
    with pytest.raises(ValueError, match="same regions"):
        f.set_workload(other)


def test_gpu_setters() -> None:
    node = gpu_node(2.0, 60.0, budget_w=500.0)
    f = node.facilities["gpu"]
    f.set_budget_w(250.0)
    assert f.config.budget_w == 250.0
    with pytest.raises(ValueError, match="budget_w"):
        f.set_budget_w(-1.0)
    with pytest.raises(ValueError, match="without a power budget"):
        gpu_node(2.0, 60.0).facilities["gpu"].set_budget_w(100.0)
    quiet = gpu_node(0.0, 60.0).facilities["gpu"].requests
    run(node, 10.0)
    f.set_requests(quiet)
    done = f.ground_truth()["gpu.requests"]
    run(node, 60.0)
    assert f.ground_truth()["gpu.requests"] == done  # no arrivals after the switch


def test_faas_set_stream_refuses_other_objects() -> None:
    f = faas_node([1.0, 2.0], [0.5, 0.5]).facilities["faas"]
    f.set_stream(faas_node([3.0], [0.5]).facilities["faas"].stream)  # same objects: fine
    other = dataclasses.replace(f.stream, objects=("other",))
    with pytest.raises(ValueError, match="same objects"):
        f.set_stream(other)
