"""What the harness needs to know about an agent, and where it finds it.

An agent declares what it can on its class; the harness fills the rest and never needs a
change for a new agent:

========================  ====================================================  ==================
what                      declared on the agent class as                        if not declared
========================  ====================================================  ==================
harm metric               ``harm_metric = "cpu.primary_unserved_windows"``      harm "n/a"
benefit metric            ``benefit_metric = "cpu.harvested_core_s"``           by the harm metric's facility
scenario                  ``fault_scenario = "default"``                        ``"default"``
most aggressive decision  ``def fault_aggressive(self) -> object``              the model's most extreme
                                                                                decision in the clean run
========================  ====================================================  ==================

Metric names are keys of ``SimNode.ground_truth()``. A harm metric is "lower is better", a
benefit metric "higher is better". The built-in agents declare ``harm_metric``; the rest of
their profile is in :data:`BUILTIN_PROFILES` so their modules need nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

from sol.sdk import Agent

__all__ = ["BUILTIN_PROFILES", "AgentProfile", "most_aggressive", "profile_for"]


@dataclass(frozen=True, slots=True)
class AgentProfile:
    scenario: str = "default"
    harm_metric: str | None = None
    benefit_metric: str | None = None
    #: the decision an adversarial model returns, computed from the running agent
    aggressive: Callable[[Agent], Any] | None = None
    #: where each part came from ("class", "builtin table", "fallback"), for the report
    origin: Mapping[str, str] | None = None


#: The benefit an agent of each facility delivers, when the agent does not say.
BENEFIT_BY_FACILITY: dict[str, str] = {
    "cpu": "cpu.harvested_core_s",
    "mem": "mem.far_bytes_mean",
    "gpu": "gpu.throughput_tokens_per_s",
}


def _lend_everything(agent: Agent) -> Any:
    return agent.total  # type: ignore[attr-defined]


#: Profile parts of built-in agents that their class does not carry.
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "example_ewma": {"benefit_metric": "cpu.harvested_core_s", "aggressive": _lend_everything},
}


def profile_for(cls: type[Agent]) -> AgentProfile:
    table = BUILTIN_PROFILES.get(cls.name, {})
    origin: dict[str, str] = {}

    def pick(attr: str, key: str) -> Any:
        value = getattr(cls, attr, None)
        if value is not None:
            origin[key] = "class"
            return value
        if table.get(key) is not None:
            origin[key] = "builtin table"
            return table[key]
        origin[key] = "fallback"
        return None

    scenario = pick("fault_scenario", "scenario") or "default"
    harm = pick("harm_metric", "harm_metric")
    benefit = pick("benefit_metric", "benefit_metric")
    if benefit is None and harm is not None:
        benefit = BENEFIT_BY_FACILITY.get(str(harm).split(".", 1)[0])
    aggressive: Callable[[Agent], Any] | None
    method = getattr(cls, "fault_aggressive", None)
    if callable(method):
        origin["aggressive"] = "class"

        def aggressive(agent: Agent) -> Any:
            return agent.fault_aggressive()  # type: ignore[attr-defined]

    else:
        aggressive = table.get("aggressive")
        origin["aggressive"] = "builtin table" if aggressive is not None else "fallback"
    return AgentProfile(
        scenario=str(scenario),
        harm_metric=None if harm is None else str(harm),
        benefit_metric=None if benefit is None else str(benefit),
        aggressive=aggressive,
        origin=origin,
    )


def _distance(value: Any, ref: Any) -> float | None:
    """How far a decision is from the default one, for payloads made of numbers."""
    if isinstance(value, bool) or isinstance(ref, bool):
        return None
    if isinstance(value, Real) and isinstance(ref, Real):
        return abs(float(value) - float(ref))
    if isinstance(value, Mapping) and isinstance(ref, Mapping):
        parts = [_distance(value[k], ref[k]) for k in value if k in ref]
        if not parts or any(p is None for p in parts):
            return None
        return sum(p for p in parts if p is not None)
    if isinstance(value, (tuple, list)) and isinstance(ref, (tuple, list)) and len(value) == len(ref):
        parts = [_distance(a, b) for a, b in zip(value, ref, strict=True)]
        if not parts or any(p is None for p in parts):
            return None
        return sum(p for p in parts if p is not None)
    return None


def most_aggressive(model_values: list[Any], default_value: Any) -> Any | None:
    """The model decision farthest from the default one (``None`` if payloads aren't numbers).

    >>> most_aggressive([3, 9, 5], 0)
    9
    >>> most_aggressive([{"a": 1}, {"a": -4}], {"a": 0})
    {'a': -4}
    >>> most_aggressive(["x"], "y") is None
    True
    """
    best: Any = None
    best_d = -1.0
    for v in model_values:
        d = _distance(v, default_value)
        if d is None:
            return None
        if d > best_d:
            best, best_d = v, d
    return best
