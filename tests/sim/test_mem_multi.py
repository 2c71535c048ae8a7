"""A simulated node with several memory workloads (``MultiMemoryFacility``, scenario mem-multi):
each its own regions, sensitivity and slowdown, one local tier and one migration engine."""

from __future__ import annotations

import numpy as np
import pytest

from sol.facilities import MemoryActuators, MemorySensors
from sol.sim.memory import MemoryConfig, MemoryFacility, MemoryWorkload, MultiMemoryFacility
from sol.sim.node import SimNode
from sol.sim.scenarios import get_scenario

MiB = 1 << 20
REGION = 64 * MiB
BASE = 0x7F0000000000


def _workload(freq: list[float]) -> MemoryWorkload:
    n = len(freq)
    return MemoryWorkload(
        start=BASE + REGION * np.arange(n, dtype=np.int64),
        size=np.full(n, REGION, dtype=np.int64),
        phase_t=np.array([0.0]),
        freq=np.array([freq]),
        span_s=3600.0,
    )


def _node(stalls: dict[str, float], local_regions: int) -> tuple[SimNode, MultiMemoryFacility]:
    node = SimNode(clock_start=0.0, label="multi")
    members = [
        (
            name,
            MemoryConfig(local_bytes=0, far_bytes=0, memory_stall=stall),
            _workload([0.8, 0.8, 0.0, 0.0]),
            k,
        )
        for k, (name, stall) in enumerate(stalls.items())
    ]
    f = MultiMemoryFacility(
        members,
        local_bytes=local_regions * REGION,
        far_bytes=4 * REGION * len(stalls),
        lock=node.lock,
        now=node.now,
        origin=0.0,
    )
    node.attach(f)
    return node, f


def test_targets_are_named_and_an_unknown_one_is_a_clear_error() -> None:
    node, _ = _node({"a": 0.1, "b": 0.5}, local_regions=8)
    s, act = node.sensors.memory, node.actuators.memory
    assert isinstance(s, MemorySensors) and isinstance(act, MemoryActuators)
    assert s.targets() == ("a", "b")
    assert len(s.regions(target="b").regions) == 4
    # left out: the first workload
    assert s.regions().regions == s.regions(target="a").regions
    with pytest.raises(ValueError, match="unknown memory target 'c'; targets: a, b"):
        s.placement(BASE, BASE + REGION, target="c")
    with pytest.raises(ValueError, match="unknown memory target"):
        act.migrate(BASE, BASE + REGION, 1, target="c")


def test_a_single_workload_node_names_its_one_target() -> None:
    node = SimNode(clock_start=0.0, label="one")
    w = _workload([0.5, 0.0])
    node.attach(
        MemoryFacility(
            MemoryConfig(local_bytes=w.footprint, far_bytes=w.footprint, memory_stall=0.2),
            w,
            seed=1,
            lock=node.lock,
            now=node.now,
            origin=0.0,
            target="vm-a",
        )
    )
    s = node.sensors.memory
    assert s.targets() == ("vm-a",)
    assert s.placement(BASE, BASE + REGION, target="vm-a") == s.placement(BASE, BASE + REGION)
    with pytest.raises(ValueError, match="unknown memory target 'vm-b'"):
        s.regions(target="vm-b")


def test_first_touch_shares_the_local_tier_and_a_full_tier_refuses_every_workload() -> None:
    node, _ = _node({"a": 0.1, "b": 0.5}, local_regions=4)
    s, act = node.sensors.memory, node.actuators.memory
    local, far = s.nodes()
    assert local.total_bytes == 4 * REGION and local.used_bytes == 4 * REGION
    assert far.used_bytes == 4 * REGION
    # in proportion to the footprints: half of each workload local
    for t in ("a", "b"):
        assert s.placement(BASE, BASE + 4 * REGION, target=t) == {0: 2 * REGION, 1: 2 * REGION}
    # the local tier is full: b cannot promote ...
    m = act.migrate(BASE + 2 * REGION, BASE + 3 * REGION, 0, target="b")
    assert m.bytes_moved == 0 and m.bytes_failed == REGION
    # ... until a demotes; its copy is queued, so the room is taken once
    assert act.migrate(BASE, BASE + REGION, 1, target="a").bytes_moved == REGION
    node.advance(10.0)
    m = act.migrate(BASE + 2 * REGION, BASE + 3 * REGION, 0, target="b")
    assert m.bytes_moved == REGION
    m2 = act.migrate(BASE + 3 * REGION, BASE + 4 * REGION, 0, target="a")
    assert m2.bytes_moved == 0 and m2.bytes_failed == REGION


def test_one_engine_copies_for_every_workload_in_turn() -> None:
    node, _ = _node({"a": 0.1, "b": 0.5}, local_regions=8)
    act = node.actuators.memory
    first = act.migrate(BASE, BASE + REGION, 1, target="a")
    second = act.migrate(BASE, BASE + REGION, 1, target="b")
    assert second.done_at >= first.done_at + (first.done_at - first.t) * 0.99


def test_slowdown_is_per_workload() -> None:
    node, _ = _node({"insensitive": 0.01, "sensitive": 0.6}, local_regions=8)
    act = node.actuators.memory
    # the same hot region of each far: the sensitive one slows down ~60x more
    for t in ("insensitive", "sensitive"):
        act.migrate(BASE, BASE + REGION, 1, target=t)
    node.advance(600.0)
    g = node.ground_truth()
    lo = g["mem.insensitive.slowdown_mean"] - 1.0
    hi = g["mem.sensitive.slowdown_mean"] - 1.0
    assert lo > 0.0 and hi > 20 * lo
    assert g["mem.far_bytes"] == g["mem.insensitive.far_bytes"] + g["mem.sensitive.far_bytes"] == 2 * REGION
    # the node's extra time is the mean workload's
    assert g["mem.extra_time_s"] == pytest.approx(
        (g["mem.insensitive.extra_time_s"] + g["mem.sensitive.extra_time_s"]) / 2
    )
    pr = node.sensors.memory.pressure(target="sensitive")
    assert pr.stall_total_s == pytest.approx(g["mem.sensitive.extra_time_s"])


def test_mem_multi_draws_a_sensitivity_per_workload_from_ponds_distribution() -> None:
    for seed in (1, 2, 3):
        node = get_scenario("mem-multi").build(seed, 0.0)
        g = node.ground_truth()
        assert node.sensors.memory.targets() == ("batch-a", "batch-b", "web", "db")
        sens = {t: g[f"mem.{t}.far_sensitivity"] for t in ("batch-a", "batch-b", "web", "db")}
        assert sens["batch-a"] <= 0.01 and sens["batch-b"] <= 0.01
        assert 0.01 <= sens["web"] <= 0.05 and sens["db"] >= 0.25
        local, _ = node.sensors.memory.nodes()
        assert local.total_bytes == g["mem.footprint_bytes"] // 2
