from __future__ import annotations

import pytest

from sol import Agent
from sol.registry import AgentImportError, Registry, UnknownAgent


def test_builtins_are_known_and_load() -> None:
    reg = Registry(plugins=False)
    assert {"noop", "example_ewma"} <= set(reg.names())
    for name in reg.names():
        cls = reg.get(name)
        assert issubclass(cls, Agent) and cls.name == name


def test_unknown_name_lists_the_known_names() -> None:
    reg = Registry({"noop": "sol.agents.noop:NoopAgent"}, plugins=False)
    with pytest.raises(UnknownAgent, match=r"unknown agent 'nope'; known agents: noop"):
        reg.get("nope")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Agent", "failed to import: ModuleNotFoundError"),
        ("sol.agents.noop:Missing", "failed to import: AttributeError"),
        ("sol.sdk:Verdict", "is not a sol.Agent subclass"),
        ("sol.agents.noop:NoopAgent", "declares name 'noop'"),
    ],
    ids=["missing-module", "missing-attribute", "not-an-agent", "name-mismatch"],
)
def test_plugin_problems_are_reported_not_swallowed(target: str, message: str) -> None:
    reg = Registry({"thing": target}, plugins=False)
    with pytest.raises(AgentImportError, match=message):
        reg.get("thing")
    assert reg.classes() == {}
    assert len(reg.problems) == 1 and message.split(":")[0] in reg.problems[0]
