"""The simulated GPU's serving-engine metrics and locked clocks (what gpu_power acts through)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run

from sol.sim import SimNode
from sol.sim.gpu import GpuConfig, GpuFacility, LlmRequests


def _node(arrivals: list[float], prompts: list[int], outputs: list[int], **cfg: float) -> SimNode:
    req = LlmRequests(
        arrival_s=np.array(arrivals, dtype=float),
        prompt_tokens=np.array(prompts, dtype=np.int64),
        output_tokens=np.array(outputs, dtype=np.int64),
        span_s=1e7,
    )
    node = SimNode()
    config = GpuConfig(count=1, **cfg)  # type: ignore[arg-type]
    node.attach(GpuFacility(config, req, seed=1, lock=node.lock, now=node.now, origin=0.0))
    return node


def test_serving_counters_count_prompt_and_generated_tokens_and_the_queue() -> None:
    # ten 4,000-token prompts at once: two prefilled a second at 8,000 tokens/s, 20 tokens each
    node = _node([0.0] * 10, [4000] * 10, [20] * 10)
    run(node, 1.0)
    s = node.sensors.gpu.serving(0)
    assert s.prompt_tokens_total == pytest.approx(8000.0)
    assert (s.waiting, s.running, s.generation_tokens_total) == (8, 2, 2.0)  # a first token each
    run(node, 60.0)
    s = node.sensors.gpu.serving(0)
    gt = node.ground_truth()
    assert s.prompt_tokens_total == pytest.approx(40_000.0)
    assert s.generation_tokens_total == pytest.approx(gt["gpu.tokens_generated"]) == pytest.approx(200.0)
    assert s.waiting == 0 and s.running == 0


def test_a_locked_clock_applies_at_the_next_step_and_slows_prefill_at_a_lower_draw() -> None:
    # a power limit waits for the enforcement delay (1 s); a locked clock does not
    arrivals, prompts, outputs = [0.0, 1.0], [16_000, 16_000], [1, 1]
    free = _node(arrivals, prompts, outputs)
    locked = _node(arrivals, prompts, outputs)
    capped = _node(arrivals, prompts, outputs)
    lo, hi = locked.sensors.gpu.clock_range_mhz(0)
    assert (lo, hi) == (212, 1410)
    locked.actuators.gpu.lock_clocks(0, lo, 1000)
    capped.actuators.gpu.set_power_limit(0, 250_000)
    for n in (free, locked, capped):
        run(n, 1.0)
    assert free.sensors.gpu.power_usage_mw(0) == 400_000
    assert capped.sensors.gpu.power_usage_mw(0) == 400_000  # not enforced yet
    drawn = locked.sensors.gpu.power_usage_mw(0)
    assert 80_000 + 320_000 * (1000 / 1410) ** 1.8 * 0.99 < drawn < 300_000  # within the first step
    for n in (free, locked, capped):
        run(n, 30.0)
    assert locked.ground_truth()["gpu.ttft_mean_s"] > free.ground_truth()["gpu.ttft_mean_s"] * 1.3
    locked.actuators.gpu.reset_clocks(0)
    with pytest.raises(ValueError, match="below its lowest"):
        locked.actuators.gpu.lock_clocks(0, 100, 100)
    with pytest.raises(ValueError, match="0 < min <= max"):
        locked.actuators.gpu.lock_clocks(0, 900, 800)
