"""The reference agents pass the public conformance kit, like any third-party agent must."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sol.agents.example_ewma import ExampleEwmaAgent, Params
from sol.agents.noop import NoopAgent
from sol.facilities import Actuators, CpuPressure, RunQueueDelay, Sensors
from sol.sdk import Context
from sol.testing import check_agent, simulate


@pytest.mark.parametrize("check", list(check_agent(NoopAgent)), ids=lambda c: c.name)
def test_noop_conforms(check) -> None:  # type: ignore[no-untyped-def]
    check()


@pytest.mark.parametrize("check", list(check_agent(ExampleEwmaAgent)), ids=lambda c: c.name)
def test_example_ewma_conforms(check) -> None:  # type: ignore[no-untyped-def]
    check()


def test_example_ewma_lends_what_primaries_leave_idle() -> None:
    r = simulate(ExampleEwmaAgent(), duration=1800.0, seed=3)
    truth = r.ground_truth
    harvested = [v for k, v in truth.items() if "harvest" in k and "core" in k]
    assert harvested and max(harvested) > 0, truth
    assert r.state == "stopped"


@pytest.mark.parametrize(
    ("scope", "waiting", "harm"),
    [
        pytest.param("group", 0.0, True, id="the-primaries-own-pressure"),
        pytest.param("host", 0.0, False, id="host-pressure-primaries-not-waiting"),
        pytest.param("host", 0.5, True, id="host-pressure-primaries-waiting"),
    ],
)
def test_example_ewma_judges_the_primaries_by_readings_that_are_theirs(
    scope: str, waiting: float, harm: bool
) -> None:
    # On a cgroup v1 host the only CPU pressure is the whole host's: it counts the harvest
    # group's own waiting, so the example falls back to the primaries' run-queue delay.
    cpu = SimpleNamespace(
        total_cores=lambda: 8,
        pressure=lambda g: CpuPressure(1.0, g, 0.9, 0.9, 0.9, 9.0, 0.0, 0.0, 0.0, 0.0, scope),
        run_queue_delay=lambda g: RunQueueDelay(1.0, g, 5.0, waiting, 1.0),
    )
    agent = ExampleEwmaAgent()
    clock = SimpleNamespace(now=lambda: 1.0, consume=lambda s: None)
    harvest = SimpleNamespace(harvest_cores=lambda: 2, set_harvest_cores=lambda n: None)
    actuators = Actuators(cpu=harvest)  # type: ignore[arg-type]
    agent.setup(Context(clock, None, Sensors(cpu=cpu), actuators, Params()))  # type: ignore[arg-type]
    assert bool(agent.assess_performance()) is not harm
