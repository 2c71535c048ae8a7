"""The hello agent passes sol's conformance kit, runs on a simulated node and is registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from sol.config import load_config
from sol.registry import Registry
from sol.testing import Check, check_agent, simulate

from sol_agent_hello import HelloAgent


@pytest.mark.parametrize("check", list(check_agent(HelloAgent)), ids=lambda c: c.name)
def test_conforms(check: Check) -> None:
    check()


def test_runs_ten_simulated_minutes_on_its_model() -> None:
    result = simulate(HelloAgent(), duration=600.0, seed=1)
    assert result.state == "stopped" and not result.errors()
    assert any(p.source == "model" for _, p in result.actions)


def test_sol_finds_it_through_its_entry_point() -> None:
    # fails until the package is installed (pip install -e .): the entry point is in its metadata
    assert Registry().get("hello") is HelloAgent


def test_the_sim_config_enables_it() -> None:
    config = load_config(Path(__file__).parents[1] / "sol.toml", agents={"hello": HelloAgent})
    assert [a.name for a in config.enabled_agents] == ["hello"]
