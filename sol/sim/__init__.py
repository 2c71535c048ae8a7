"""The simulated node: facilities, workloads, trace replay and scenarios (DESIGN §5)."""

from sol.sim.node import SimNode
from sol.sim.scenarios import (
    Scenario,
    ScenarioError,
    ScenarioInfo,
    get_scenario,
    list_scenarios,
    scenario_from_trace,
)
from sol.sim.traces import TraceError

__all__ = [
    "Scenario",
    "ScenarioError",
    "ScenarioInfo",
    "SimNode",
    "TraceError",
    "get_scenario",
    "list_scenarios",
    "scenario_from_trace",
]
