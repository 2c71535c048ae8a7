"""An agent on a node without the facility it needs is "not applicable", not "failed".

``setup`` raising ``FacilityMissing`` (what ``ctx.sensors.require`` raises) is a fact about
the node; any other exception out of ``setup`` is the agent failing. Both leave the agent
out and the others running; only the second is an error.
"""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from sol import Agent, Prediction, Schedule
from sol.facilities import FacilityMissing
from sol.log import get_logger
from sol.runtime.base import AgentSpec
from sol.runtime.live import LiveExecutor
from sol.runtime.virtual import VirtualExecutor
from sol.sim import get_scenario

FAST = Schedule(collect_every=0.05, act_every=0.05, prediction_ttl=0.5, assess_every=1.0)


class Steady(Agent):
    name = "steady"
    schedule = FAST

    def collect(self) -> object:
        return 1

    def predict(self) -> object:
        return 1

    def default_predict(self) -> object:
        return 0

    def act(self, prediction: Prediction) -> None:
        pass


class NeedsCpu(Steady):
    name = "needs_cpu"

    def setup(self, ctx: Any) -> None:
        ctx.sensors.require("cpu")


class NeedsGpuSaysWhy(Steady):
    name = "needs_gpu"

    def setup(self, ctx: Any) -> None:
        raise FacilityMissing("gpu", "actuators", "power capping needs NVML")


class Broken(Steady):
    name = "broken"

    def setup(self, ctx: Any) -> None:
        raise RuntimeError("no such cgroup")


def _virtual(agents: list[Agent], scenario: str) -> dict[str, Any]:
    ex = VirtualExecutor(
        [AgentSpec(a) for a in agents], backend=get_scenario(scenario).build(1), log=get_logger()
    )
    ex.run(5.0)
    return {r.name: r for r in ex.runners}


def _live(agents: list[Agent], scenario: str) -> dict[str, Any]:
    ex = LiveExecutor(
        [AgentSpec(a) for a in agents], backend=get_scenario(scenario).build(1), log=get_logger()
    )
    ex.run(0.3)
    return {r.name: r for r in ex.runners}


@pytest.mark.parametrize("execute", [_virtual, _live], ids=["virtual", "live"])
@pytest.mark.parametrize(
    ("agent", "scenario", "state", "reason", "event"),
    [
        (NeedsCpu, "mem-stress", "not-applicable", "this node has no cpu sensors", "agent.not_applicable"),
        (NeedsGpuSaysWhy, "default", "not-applicable", "power capping needs NVML", "agent.not_applicable"),
        (Broken, "default", "failed", "no such cgroup", "agent.setup_failed"),
        (NeedsCpu, "default", "stopped", None, "agent.started"),
    ],
    ids=["facility-missing", "facility-missing-with-why", "setup-error-still-failed", "facility-present"],
)
def test_a_missing_facility_makes_an_agent_not_applicable_and_an_error_still_fails_it(
    execute: Any, agent: type[Agent], scenario: str, state: str, reason: str | None, event: str
) -> None:
    with capture_logs() as logs:
        runners = execute([agent(), Steady()], scenario)
    r = runners[agent.name]
    assert r.state == state
    if reason is not None:
        assert reason in str(r.state_reason)
    mine = [e["event"] for e in logs if e.get("agent") == agent.name]
    assert event in mine
    if state == "not-applicable":
        assert "agent.setup_failed" not in mine  # not reported as an error
        assert r.metrics.counter_value(r.metrics.errors, agent.name) == 0
    assert runners["steady"].state == "stopped" and runners["steady"].applied_counts  # the other ran


def test_a_not_applicable_agent_is_not_quarantined_or_stopped_again() -> None:
    runners = _virtual([NeedsCpu()], "mem-stress")
    r = runners["needs_cpu"]
    r.quarantine("late")
    r.stop(restore=True)
    assert r.state == "not-applicable"
