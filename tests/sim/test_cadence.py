"""How often the node is read or advanced changes the cost, never the ground truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from helpers import cpu_node

from sol.sim import SimNode, get_scenario
from sol.sim.cpu import CpuConfig, CpuFacility, VmCpuDemand

#: actuator writes at fixed clock times, the same whatever the read cadence
WRITES: dict[float, Callable[[SimNode], object]] = {
    50.0: lambda n: n.actuators.cpu.set_harvest_cores(9),
    120.0: lambda n: n.actuators.gpu.set_power_limit(0, 180_000),
    150.5: lambda n: n.actuators.cpu.set_harvest_cores(13),
    200.0: lambda n: n.actuators.memory.migrate(
        n.sensors.memory.regions().regions[3].start, n.sensors.memory.regions().regions[5].end, 1
    ),
    233.3: lambda n: n.actuators.faas.prewarm("app3"),
    299.9: lambda n: n.actuators.cpu.set_harvest_cores(2),
    310.0: lambda n: n.actuators.cpu.set_harvest_cores(15),
    355.0: lambda n: n.actuators.cpu.set_harvest_cores(0),
}


def _read_all(node: SimNode) -> None:
    s = node.sensors
    for group in ("primary", "harvest"):
        s.cpu.usage(group)
        s.cpu.pressure(group)
        s.cpu.run_queue_delay(group)
    s.memory.regions()
    s.memory.nodes()
    s.gpu.power_usage_mw(1)
    s.gpu.utilization(0)
    s.faas.residency("app1")


def _drive(node: SimNode, until: float, step: float, read: bool) -> None:
    points = sorted({*np.arange(step, until, step).round(9).tolist(), *WRITES, until})
    for t in points:
        node.advance(t)
        if read:
            _read_all(node)
        if t in WRITES:
            WRITES[t](node)


@pytest.mark.parametrize(
    ("step", "read"),
    [
        pytest.param(1.0, True, id="read-every-second"),
        pytest.param(0.2, True, id="read-every-200ms"),
        pytest.param(7.3, True, id="read-every-7.3s"),
        pytest.param(60.0, False, id="no-reads"),
    ],
)
def test_read_cadence_does_not_change_the_ground_truth(step: float, read: bool) -> None:
    ref = get_scenario("default").build(seed=4)
    _drive(ref, 400.0, 2.0, read=False)
    node = get_scenario("default").build(seed=4)
    _drive(node, 400.0, step, read)
    a, b = ref.ground_truth(), node.ground_truth()
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-9, abs=1e-9), k
    sa, sb = ref.series(), node.series()
    for k in ("cpu.primary_unserved_cores", "cpu.harvest_used_cores", "mem.slowdown", "gpu.node_power_w"):
        np.testing.assert_allclose(sb[k][1], sa[k][1], rtol=1e-9, atol=1e-9, err_msg=k)


def test_usage_reads_add_up_to_the_served_core_seconds() -> None:
    node = get_scenario("cpu-stress").build(seed=2)
    rng = np.random.default_rng(0)
    t = 0.0
    served = 0.0
    for _ in range(400):
        t += float(rng.choice([0.05, 0.3, 1.0, 4.0, 37.0]))
        node.advance(t)
        u = node.sensors.cpu.usage("primary")
        served += u.cores * u.interval
        if rng.random() < 0.1:
            node.actuators.cpu.set_harvest_cores(int(rng.integers(0, 20)))
    assert served == pytest.approx(node.ground_truth()["cpu.primary_served_core_s"], rel=1e-9)


def test_one_second_reads_reuse_the_precomputed_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    node = get_scenario("cpu-stress").build(seed=2)
    cpu = node.facilities["cpu"]
    built: list[float] = []
    shortfall = cpu._shortfall
    monkeypatch.setattr(cpu, "_shortfall", lambda d, cap: built.append(cap) or shortfall(d, cap))
    for k in range(1, 3601):
        node.advance(float(k))
        node.sensors.cpu.usage("primary")
        node.sensors.cpu.pressure("primary")
        if k % 100 == 0:  # two grants, alternating: each block is computed once per grant
            node.actuators.cpu.set_harvest_cores(1 + (k // 100) % 2)
    assert len(built) <= 2 * (3600 // 300 + 1)


def test_slots_misaligned_with_the_trace_evaluate_cell_by_cell() -> None:
    """A trace offset that is not a whole number of slots makes the facility integrate per
    100 ms cell; it must agree with an aligned node read 0.3 s later."""
    avg = np.array([[30.0, 80.0], [90.0, 20.0], [50.0, 50.0]])
    peak = np.minimum(avg * 2.5, 100.0)

    def build(offset: float) -> SimNode:
        demand = VmCpuDemand(
            avg_pct=avg, max_pct=peak, window_s=300.0, vcpus=np.array([4, 2]), names=("a", "b")
        )
        node = SimNode()
        node.attach(
            CpuFacility(
                CpuConfig(cores=5, trace_offset_s=offset),
                demand,
                seed=9,
                lock=node.lock,
                now=node.now,
                origin=0.0,
            )
        )
        return node

    shifted = build(0.3)
    aligned = build(0.0)
    assert shifted.facilities["cpu"]._unit == pytest.approx(0.1)
    assert aligned.facilities["cpu"]._unit == 1.0
    for k in range(1, 800):
        shifted.advance(k * 1.1)
    aligned.advance(0.3)
    before = dict(aligned.ground_truth())
    for k in range(1, 800):
        aligned.advance(0.3 + k * 1.1)
    after = aligned.ground_truth()
    got = shifted.ground_truth()
    for key in ("cpu.primary_demand_core_s", "cpu.primary_unserved_core_s", "cpu.primary_unserved_windows"):
        assert got[key] == pytest.approx(after[key] - before[key], rel=1e-9), key
    assert got["cpu.primary_unserved_core_s"] > 1.0


def test_pending_reads_match_a_committed_node() -> None:
    """Sensors read mid-block (pending segment) agree with a node synced in one go."""
    a = cpu_node([[60.0, 90.0]], [4, 4], 8)
    b = cpu_node([[60.0, 90.0]], [4, 4], 8)
    for k in range(1, 1000):
        a.advance(k * 0.37)
        a.sensors.cpu.usage("primary")
    b.advance(999 * 0.37)
    pa, pb = a.sensors.cpu.pressure("primary"), b.sensors.cpu.pressure("primary")
    assert pa.some_avg10 == pytest.approx(pb.some_avg10, rel=1e-9)
    assert pa.some_avg300 == pytest.approx(pb.some_avg300, rel=1e-9)
    assert pa.some_total_s == pytest.approx(pb.some_total_s, rel=1e-9)
    assert a.sensors.cpu.run_queue_delay("primary").total_s == pytest.approx(
        b.sensors.cpu.run_queue_delay("primary").total_s, rel=1e-9
    )
