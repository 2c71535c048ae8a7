from __future__ import annotations

import pytest
from helpers import gpu_node, run

from sol.facilities import GpuActuators, GpuSensors
from sol.sim.gpu import perf_ratio


def test_nvml_like_sensors_and_idle_power_near_a_fifth_of_tdp() -> None:
    node = gpu_node(0.0, 10.0)
    assert isinstance(node.sensors.gpu, GpuSensors) and isinstance(node.actuators.gpu, GpuActuators)
    run(node, 10.0)
    s = node.sensors.gpu
    assert s.count() == 1
    assert s.power_limit_constraints_mw(0) == (100_000, 400_000)
    assert s.power_usage_mw(0) == pytest.approx(80_000, rel=0.01)  # POLCA: idle ~20 % of TDP
    assert s.utilization(0).gpu == 0
    assert s.total_energy_mj(0) == pytest.approx(80 * 10 * 1000, rel=0.01)


@pytest.mark.parametrize("limit_w", [150, 200, 300], ids=["150W", "200W", "300W"])
def test_power_never_exceeds_the_cap_after_the_enforcement_delay(limit_w: int) -> None:
    node = gpu_node(4.0, 120.0, enforce_delay_s=1.0)
    run(node, 20.0, step=1.0)
    node.actuators.gpu.set_power_limit(0, limit_w * 1000)
    s = node.sensors.gpu
    assert s.power_limit_mw(0) == limit_w * 1000
    seen_over = False
    for k in range(1, 200):
        t = 20.0 + 0.1 * k
        node.advance(t)
        p = s.power_usage_mw(0)
        if t >= 20.0 + 1.0 + 1.0 + 1e-9:  # delay + one step
            assert p <= limit_w * 1000
            assert s.enforced_power_limit_mw(0) == limit_w * 1000
        elif p > limit_w * 1000:
            seen_over = True
    assert seen_over or limit_w >= 300


def test_capping_costs_throughput_and_is_counted() -> None:
    free = gpu_node(4.0, 300.0)
    capped = gpu_node(4.0, 300.0)
    capped.actuators.gpu.set_power_limit(0, 150_000)
    run(free, 300.0)
    run(capped, 300.0)
    f, c = free.ground_truth(), capped.ground_truth()
    assert f["gpu.capped_gpu_s"] == 0 and c["gpu.capped_gpu_s"] > 100
    assert c["gpu.perf_loss_gpu_s"] > 0
    assert c["gpu.ttft_mean_s"] > f["gpu.ttft_mean_s"]
    assert c["gpu.energy_j"] < f["gpu.energy_j"]


def test_budget_violations_and_heating() -> None:
    node = gpu_node(8.0, 300.0, count=2, budget_w=500.0)
    t0 = node.sensors.gpu.temperature_c(0)
    run(node, 300.0)
    gt = node.ground_truth()
    assert gt["gpu.budget_violation_s"] > 0 and gt["gpu.budget_excess_j"] > 0
    assert node.sensors.gpu.temperature_c(0) > t0 + 10
    assert node.sensors.gpu.power_budget_mw() == 500_000


@pytest.mark.parametrize("mw", [50_000, 500_000, 200.5], ids=["below-min", "above-max", "not-int"])
def test_limit_outside_constraints_is_refused(mw: object) -> None:
    node = gpu_node(0.0, 1.0)
    with pytest.raises(ValueError, match="constraints"):
        node.actuators.gpu.set_power_limit(0, mw)  # type: ignore[arg-type]
    assert node.sensors.gpu.power_limit_mw(0) == 400_000


def test_bad_index_is_an_index_error() -> None:
    node = gpu_node(0.0, 1.0)
    with pytest.raises(IndexError, match="1 GPUs"):
        node.sensors.gpu.power_usage_mw(3)


@pytest.mark.parametrize(("x", "lo", "hi"), [(0.5, 0.5, 0.6), (1.0, 0.97, 0.99), (2.0, 1.0, 1.0)])
def test_perf_vs_cap_curve_has_the_zeus_shape(x: float, lo: float, hi: float) -> None:
    assert lo <= perf_ratio(x) <= hi
