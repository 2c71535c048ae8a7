"""What the runtime needs from a node backend (simulated or Linux).

A backend owns the facilities (CPU, memory, GPU, FaaS, ...). Agents see them only as
``ctx.sensors.<facility>`` and ``ctx.actuators.<facility>``; a facility the node lacks is
``None``. The simulated and Linux implementations of one facility share one interface
(``sol.facilities``), so an agent runs unchanged on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    #: "sim" or "linux"
    name: str
    #: namespace of sensor facilities: ``sensors.cpu``, ``sensors.memory``, ...
    sensors: Any
    #: namespace of actuator facilities: ``actuators.cpu``, ...
    actuators: Any

    def advance(self, now: float) -> None:
        """Bring the node up to clock time ``now`` (simulation steps; Linux: nothing).

        Called by the executors before every event, with non-decreasing ``now``; must
        accept any gap and be cheap when nothing happened.
        """
        ...

    def ground_truth(self) -> Mapping[str, float]:
        """Figures the agents cannot see (simulation only; Linux returns ``{}``)."""
        ...

    def close(self) -> None: ...


class NullBackend:
    """A node with no facilities: for agents that sense and change nothing (and tests)."""

    name = "null"

    def __init__(self) -> None:
        self.sensors = _Facilities()
        self.actuators = _Facilities()

    def advance(self, now: float) -> None:
        return None

    def ground_truth(self) -> Mapping[str, float]:
        return {}

    def close(self) -> None:
        return None


class _Facilities:
    cpu: Any = None
    memory: Any = None
    gpu: Any = None
    faas: Any = None
