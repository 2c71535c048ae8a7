from __future__ import annotations

import pytest
from helpers import MiB, mem_node, run

from sol.facilities import MemoryActuators, MemorySensors

HOT = [1.0, 1.0, 0.0, 0.0]


def test_protocols_and_first_touch_placement() -> None:
    node = mem_node(HOT, local_regions=2)
    assert isinstance(node.sensors.memory, MemorySensors)
    assert isinstance(node.actuators.memory, MemoryActuators)
    local, far = node.sensors.memory.nodes()
    assert (local.tier, far.tier) == ("local", "far")
    assert local.used_bytes == 128 * MiB and far.used_bytes == 128 * MiB


@pytest.mark.parametrize(
    ("demote", "far_share_above"),
    [pytest.param(None, -1.0, id="hot-local-no-far-accesses"), pytest.param(0, 0.4, id="hot-region-demoted")],
)
def test_far_accesses_rise_when_hot_regions_are_demoted(demote: int | None, far_share_above: float) -> None:
    node = mem_node(HOT, local_regions=3)
    if demote is not None:
        start = 0x10000000 + demote * 64 * MiB
        m = node.actuators.memory.migrate(start, start + 64 * MiB, 1)
        assert m.bytes_moved == 64 * MiB and m.bytes_failed == 0
    run(node, 60.0)
    gt = node.ground_truth()
    if demote is None:
        assert gt["mem.far_accesses"] == 0.0
        assert gt["mem.slowdown_mean"] == pytest.approx(1.0)
    else:
        assert gt["mem.far_access_share"] > far_share_above
        assert gt["mem.slowdown_mean"] > 1.05
        assert gt["mem.bytes_migrated"] == 64 * MiB


def test_migration_costs_bandwidth_time_and_fails_when_full() -> None:
    node = mem_node(HOT, local_regions=2, bw=64 * MiB)  # 1 s per region
    far_start = 0x10000000 + 2 * 64 * MiB
    m = node.actuators.memory.migrate(far_start, far_start + 128 * MiB, 0)  # local is full
    assert m.bytes_moved == 0 and m.bytes_failed == 128 * MiB
    m = node.actuators.memory.migrate(0x10000000, 0x10000000 + 64 * MiB, 1)
    assert m.done_at == pytest.approx(1.0)
    node.advance(0.5)
    assert node.sensors.memory.placement(0x10000000, 0x10000000 + 64 * MiB) == {0: 64 * MiB}
    node.advance(1.5)
    assert node.sensors.memory.placement(0x10000000, 0x10000000 + 64 * MiB) == {1: 64 * MiB}
    assert node.ground_truth()["mem.migration_busy_s"] == pytest.approx(1.0)


def test_damon_snapshot_is_noisy_sampling_of_the_true_frequency() -> None:
    node = mem_node([1.0, 0.5, 0.0, 0.5], local_regions=4)
    counts = []
    for k in range(1, 60):
        node.advance(k * 0.1 + 0.05)
        snap = node.sensors.memory.regions()
        assert snap.max_nr_accesses == 20 and len(snap.regions) == 4
        counts.append([r.nr_accesses for r in snap.regions])
    hot, half, cold, _ = zip(*counts, strict=True)
    assert set(cold) == {0} and min(hot) >= 19
    assert 7 < sum(half) / len(half) < 13 and len(set(half)) > 2  # binomial noise around 10
    assert snap.regions[0].age > 0


def test_migrate_to_unknown_node_is_an_error() -> None:
    node = mem_node(HOT, local_regions=2)
    with pytest.raises(ValueError, match="unknown NUMA node 5"):
        node.actuators.memory.migrate(0x10000000, 0x10001000, 5)
