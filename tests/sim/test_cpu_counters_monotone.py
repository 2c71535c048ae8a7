"""The simulated CPU counters never go back, as the kernel's cumulative counters never do.

The model keeps running float sums; on lightly loaded nodes their difference could dip by
~1e-14 s, which cpu_harvest's validator rightly took for a counter that went backwards (a
held-out trace locked it out of lending for most of a run). The sensors clamp it.
"""

from __future__ import annotations

from typing import Any

import pytest

from sol.sim.scenarios import get_scenario


@pytest.mark.parametrize("reading", ["usage", "run_queue_delay"])
def test_a_model_sum_that_dips_by_round_off_never_reads_backwards(reading: str, monkeypatch: Any) -> None:
    node = get_scenario("default").build(1, clock_start=0.0)
    try:
        facility = node.facilities["cpu"]
        model = {"usage": "cumulative", "run_queue_delay": "run_delay_total"}[reading]
        exact = getattr(facility, model)
        calls = [0]

        def dipping(group: str) -> float:
            calls[0] += 1
            return exact(group) - (1e-14 if calls[0] % 2 == 0 else 0.0)

        monkeypatch.setattr(facility, model, dipping)
        sensor = getattr(node.sensors.cpu, reading)
        last, t = -1.0, 0.0
        for _ in range(400):
            node.advance(t)  # mostly no time passes: the dip alone would show
            total = sensor("primary").total_core_s if reading == "usage" else sensor("primary").total_s
            assert total >= last
            last = total
            t += 0.001
    finally:
        node.close()
