"""The simulated memory facility's pressure() sensor: the workload's exact extra time."""

from __future__ import annotations

import numpy as np
import pytest

from sol.sim.memory import MemoryConfig, MemoryFacility, MemoryWorkload
from sol.sim.node import SimNode

MiB = 1 << 20


def node(local_share: float) -> tuple[SimNode, MemoryFacility]:
    n = 4
    w = MemoryWorkload(
        start=(1 << 40) + 64 * MiB * np.arange(n, dtype=np.int64),
        size=np.full(n, 64 * MiB, dtype=np.int64),
        phase_t=np.array([0.0]),
        freq=np.full((1, n), 0.5),
        span_s=100.0,
    )
    sim = SimNode(clock_start=0.0)
    cfg = MemoryConfig(local_bytes=int(w.footprint * local_share), far_bytes=w.footprint, memory_stall=0.5)
    f = MemoryFacility(cfg, w, seed=1, lock=sim.lock, now=sim.now, origin=0.0)
    sim.attach(f)
    return sim, f


def test_pressure_is_the_ground_truths_extra_time_and_its_recent_share() -> None:
    sim, _ = node(0.5)  # half the regions, half the accesses, on the far tier
    sim.advance(60.0)
    pr = sim.sensors.memory.pressure()
    g = sim.ground_truth()
    assert pr.t == 60.0 and pr.scope == "workload"
    assert pr.stall_total_s == pytest.approx(g["mem.extra_time_s"])
    # memory_stall x share of the (hidden) accesses on the far tier x extra / local latency
    slow = 0.5 * g["mem.far_access_share"] * 80.0 / 100.0
    assert 0.2 < g["mem.far_access_share"] < 0.8
    assert pr.stall_total_s == pytest.approx(60.0 * slow, rel=1e-6)
    assert pr.some_avg10 == pytest.approx(slow / (1 + slow), rel=0.01)  # 60 s of it: settled


def test_all_local_has_no_pressure() -> None:
    sim, _ = node(1.0)
    sim.advance(30.0)
    pr = sim.sensors.memory.pressure()
    assert pr.stall_total_s == 0.0 and pr.some_avg10 == 0.0
