from __future__ import annotations

import pytest
from helpers import cpu_node, run

from sol.facilities import CpuActuators, CpuSensors


def test_sensors_and_actuators_implement_the_protocols() -> None:
    node = cpu_node([[50.0]], [4], 8)
    assert isinstance(node.sensors.cpu, CpuSensors)
    assert isinstance(node.actuators.cpu, CpuActuators)
    assert node.sensors.cpu.total_cores() == 8


@pytest.mark.parametrize(
    ("grant", "expect_harvest", "expect_short"),
    [
        pytest.param(0, 0.0, False, id="no-grant-no-shortfall"),
        pytest.param(2, 2.0, False, id="grant-idle-cores-harvests-them"),
        pytest.param(7, 7.0, True, id="grant-into-primary-demand-starves-primaries"),
    ],
)
def test_harvest_grant_trades_against_primary_shortfall(
    grant: int, expect_harvest: float, expect_short: bool
) -> None:
    # 2 VMs x 2 vCPUs at 100 % = 4 cores of demand on 8 cores
    node = cpu_node([[100.0, 100.0]], [2, 2], 8)
    node.actuators.cpu.set_harvest_cores(grant)
    run(node, 100.0)
    gt = node.ground_truth()
    assert gt["cpu.harvested_core_s"] == pytest.approx(expect_harvest * 100.0)
    assert gt["cpu.primary_demand_core_s"] == pytest.approx(400.0)
    if expect_short:
        # 1 core left for 4 cores of demand: about 3 cores unserved, every window short
        assert gt["cpu.primary_unserved_core_s"] > 250.0
        assert gt["cpu.primary_unserved_windows"] == pytest.approx(gt["cpu.windows"])
    else:
        # only the lognormal tail of sub-window bursts waits: under 1 % of the demand
        assert gt["cpu.primary_unserved_core_s"] < 0.01 * gt["cpu.primary_demand_core_s"]
        assert gt["cpu.primary_unserved_windows"] == 0.0


def test_primary_spike_turns_a_safe_grant_into_shortfall() -> None:
    # window 0: 25 % of 8 vCPUs = 2 cores; window 1: 100 % = 8 cores; grant 4 of 10 cores
    node = cpu_node([[25.0], [100.0]], [8], 10)
    node.actuators.cpu.set_harvest_cores(4)
    run(node, 300.0)
    calm = node.ground_truth()
    assert calm["cpu.primary_unserved_core_s"] < 0.5
    run(node, 600.0)
    spiked = node.ground_truth()
    # 8 cores wanted, 6 left: about 2 cores x 300 s not served
    assert spiked["cpu.primary_unserved_core_s"] - calm["cpu.primary_unserved_core_s"] == pytest.approx(
        600.0, rel=0.1
    )
    p = node.sensors.cpu.pressure("primary")
    assert p.some_avg10 > 0.8 and p.t == 600.0  # P(demand > 6 cores) with mean 8, CV 0.25


def test_usage_is_mean_cores_since_last_read() -> None:
    node = cpu_node([[50.0]], [4], 8)
    node.advance(10.0)
    u = node.sensors.cpu.usage("primary")
    assert (u.t, u.interval) == (10.0, 10.0)
    assert u.cores == pytest.approx(2.0, rel=1e-3)
    node.actuators.cpu.set_harvest_cores(3)
    node.advance(12.5)
    h = node.sensors.cpu.usage("harvest")
    assert h.cores == pytest.approx(3.0 * 2.5 / 12.5)
    h2 = node.sensors.cpu.usage("harvest")
    assert h2.interval == 0.0 and h2.cores == h.cores
    d = node.sensors.cpu.run_queue_delay("primary")
    assert d.rate >= 0.0


@pytest.mark.parametrize("bad", [-1, 9, 2.5, True], ids=["negative", "above-cores", "fraction", "bool"])
def test_invalid_grant_is_refused_and_changes_nothing(bad: object) -> None:
    node = cpu_node([[50.0]], [4], 8)
    node.actuators.cpu.set_harvest_cores(2)
    with pytest.raises((ValueError, TypeError)):
        node.actuators.cpu.set_harvest_cores(bad)  # type: ignore[arg-type]
    assert node.actuators.cpu.harvest_cores() == 2


def test_unknown_group_names_the_known_ones() -> None:
    node = cpu_node([[50.0]], [4], 8)
    with pytest.raises(ValueError, match="primary, harvest"):
        node.sensors.cpu.usage("batch")


def test_bursts_keep_window_mean_and_reach_window_peak() -> None:
    import numpy as np

    from sol.sim.cpu import CpuConfig, CpuFacility, VmCpuDemand
    from sol.sim.node import SimNode

    avg = np.array([[20.0], [40.0]])
    mx = np.array([[80.0], [90.0]])
    demand = VmCpuDemand(avg_pct=avg, max_pct=mx, window_s=300.0, vcpus=np.array([4]), names=("vm",))
    node = SimNode()
    node.attach(CpuFacility(CpuConfig(cores=4), demand, seed=7, lock=node.lock, now=node.now, origin=0.0))
    run(node, 600.0, step=10.0)
    gt = node.ground_truth()
    assert gt["cpu.primary_util_mean_pct"] == pytest.approx(30.0, rel=1e-9)
    _t, v = node.series()["cpu.primary_demand_cores"]
    assert v.max() > 4 * 0.3  # 10 s bins catch some bursts above the mean
