from __future__ import annotations

import pytest
from helpers import MiB, faas_node, run

from sol.facilities import FaasActuators, FaasSensors


@pytest.mark.parametrize(
    ("starts", "keepalive", "cold"),
    [
        pytest.param([10.0, 100.0], 600.0, 1, id="second-call-within-keepalive-is-warm"),
        pytest.param([10.0, 1000.0], 600.0, 2, id="second-call-after-keepalive-is-cold"),
    ],
)
def test_keepalive_decides_cold_starts(starts: list[float], keepalive: float, cold: int) -> None:
    node = faas_node(starts, [1.0] * len(starts), keepalive=keepalive)
    assert isinstance(node.sensors.faas, FaasSensors) and isinstance(node.actuators.faas, FaasActuators)
    run(node, 2000.0, step=5.0)
    assert node.ground_truth()["faas.cold_starts"] == cold


def test_warm_cache_avoids_the_cold_start() -> None:
    cold = faas_node([100.0], [1.0])
    warm = faas_node([100.0], [1.0])
    warm.advance(50.0)
    pre = warm.actuators.faas.prewarm("app")
    assert pre.bytes_queued == 100 * MiB and pre.ready_at < 100.0
    warm.advance(99.0)
    r = warm.sensors.faas.residency("app")
    assert r.warm and r.resident_bytes == 100 * MiB
    run(cold, 200.0)
    run(warm, 200.0, start=99.0)
    assert cold.ground_truth()["faas.cold_starts"] == 1
    assert warm.ground_truth()["faas.cold_starts"] == 0
    # the prewarm paid memory-time while idle: waste is about 49 s x 100 MiB more
    assert warm.ground_truth()["faas.wasted_memory_gb_s"] > cold.ground_truth()["faas.wasted_memory_gb_s"]


def test_evict_drops_the_object_and_the_next_call_is_cold() -> None:
    node = faas_node([10.0, 60.0], [1.0, 1.0])
    node.advance(30.0)
    assert node.sensors.faas.residency("app").warm
    assert node.actuators.faas.evict("app") == 100 * MiB
    assert node.sensors.faas.residency("app").resident_bytes == 0
    run(node, 100.0, start=30.0)
    gt = node.ground_truth()
    assert gt["faas.cold_starts"] == 2 and gt["faas.evictions"] == 1
    # resident 10 -> 30 (evicted) and 60 -> 100: 60 s x 100 MiB
    assert gt["faas.memory_gb_s"] == pytest.approx(60 * 100 * MiB / 1e9, rel=1e-6)


def test_invocation_log_and_partial_residency_while_loading() -> None:
    node = faas_node([10.0, 20.0, 30.0], [0.5] * 3)
    node.advance(10.1)
    r = node.sensors.faas.residency("app")
    assert 0 < r.resident_bytes < r.size_bytes
    node.advance(40.0)
    inv = node.sensors.faas.invocations(15.0)
    assert [i.t for i in inv] == [20.0, 30.0] and inv[0].object == "app"
    with pytest.raises(KeyError, match="unknown cache object"):
        node.sensors.faas.residency("nope")
