"""What the runtime needs from a node backend (simulated or Linux): one typed contract.

A backend owns the facilities (``sol.facilities.FACILITIES``: cpu, memory, gpu, faas). Agents
see them only as ``ctx.sensors.<facility>`` and ``ctx.actuators.<facility>``, typed
(:class:`~sol.facilities.Sensors`, :class:`~sol.facilities.Actuators`); a facility the node
lacks is ``None``. The simulated and Linux implementations of one facility share one
interface, so an agent runs unchanged on both.

Every capability the runtime uses is part of :class:`Backend`, none is looked up with
``getattr``. Those only a real host needs (binding actuators per agent, refusing an agent's
writes while its records are restored, forgetting cached host state after a restore) have a
do-nothing implementation in :class:`BackendBase`, which the simulator and :class:`NullBackend`
inherit. :func:`sol.testing.check_backend` checks a backend against this contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sol.facilities import Actuators, Sensors

__all__ = ["Backend", "BackendBase", "Feature", "NullBackend"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One capability a backend found (or did not) on its node, with what it saw."""

    name: str
    supported: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {'yes' if self.supported else 'unsupported'} ({self.detail})"


@runtime_checkable
class Backend(Protocol):
    #: "sim", "linux" or "null"
    name: str
    #: the node's sensors, shared by every agent
    sensors: Sensors
    #: actuators for code that ignores :meth:`actuators_for`: can change nothing on a real host
    actuators: Actuators
    #: what the backend found on its node (facilities, their reasons when missing)
    features: list[Feature]
    #: whether its writes land on a real host, so :meth:`revoke` must fence an agent's writes
    #: before its records are restored (a simulator's writes need no fence)
    revocable: bool

    def actuators_for(self, owner: str, *, dry_run: bool) -> Actuators:
        """The actuators agent ``owner`` may use: its writes are journaled under its name and,
        with ``dry_run``, only logged."""
        ...

    def revoke(self, owner: str) -> None:
        """Refuse every later write of ``owner`` (its records are about to be restored)."""
        ...

    def unrevoke(self, owner: str) -> None:
        """Let ``owner`` write again (it is restarting)."""
        ...

    def restored(self, owner: str) -> None:
        """``owner``'s knobs were written back behind the facilities' backs: drop caches."""
        ...

    def advance(self, now: float) -> None:
        """Bring the node up to clock time ``now`` (simulation steps; Linux: nothing).

        Called by the executors before every event, with non-decreasing ``now``; must
        accept any gap and be cheap when nothing happened.
        """
        ...

    def ground_truth(self) -> Mapping[str, float]:
        """Figures the agents cannot see (simulation only; Linux returns ``{}``)."""
        ...

    def actuation_counts(self) -> Mapping[str, Mapping[str, int]]:
        """Host writes so far per agent, by outcome (``applied``, ``failed``, ...), for the
        metrics; sums over every writer the agent was given, so they never go backwards."""
        ...

    def close(self) -> None: ...


class BackendBase:
    """The do-nothing side of :class:`Backend`, for backends with no host to protect.

    Subclasses set ``name``, ``sensors`` and ``actuators`` and override what they need.
    """

    name = "base"
    revocable = False
    sensors: Sensors
    actuators: Actuators

    def __init__(self) -> None:
        self.sensors = Sensors()
        self.actuators = Actuators()
        self.features: list[Feature] = []
        self._on_restored: list[Callable[[str], None]] = []

    def actuators_for(self, owner: str, *, dry_run: bool) -> Actuators:
        return self.actuators

    def revoke(self, owner: str) -> None:
        return None

    def unrevoke(self, owner: str) -> None:
        return None

    def on_restored(self, forget: Callable[[str], None]) -> None:
        """Have ``forget(owner)`` called whenever an owner's knobs were restored directly
        (each facility that caches host state registers one)."""
        self._on_restored.append(forget)

    def restored(self, owner: str) -> None:
        for forget in self._on_restored:
            forget(owner)

    def advance(self, now: float) -> None:
        return None

    def ground_truth(self) -> Mapping[str, float]:
        return {}

    def actuation_counts(self) -> Mapping[str, Mapping[str, int]]:
        return {}

    def close(self) -> None:
        return None


class NullBackend(BackendBase):
    """A node with no facilities: for agents that sense and change nothing (and tests)."""

    name = "null"
