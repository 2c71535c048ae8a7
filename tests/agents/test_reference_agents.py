"""The reference agents pass the public conformance kit, like any third-party agent must."""

from __future__ import annotations

import pytest

from sol.agents.example_ewma import ExampleEwmaAgent
from sol.agents.noop import NoopAgent
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
