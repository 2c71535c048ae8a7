"""The one test agent the runtime's and the daemon's tests build theirs on.

:class:`RecordingAgent` decides nothing and records everything the runtime does to it, in one
vocabulary: how often it was set up and cleaned up, each act with its time and prediction, each
mitigation's time, every observation it learned. Tests subclass it for what they script
(``tests/daemon/sold_helpers.py``'s ``Ticker``, ``tests/runtime/test_live.py``'s ``Probe``,
``tests/runtime/test_guarantees.py``'s ``Scripted``, ``tests/runtime/test_isolation.py``'s
``Escaper``) instead of each writing the same agent again. :class:`WorkloadHost` and
:class:`ClockRef` are the same for the tests that run an agent on a Linux backend over fake
trees while they move a workload.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sol.backend import BackendBase
from sol.sdk import Agent, Prediction, Schedule


class RecordingAgent(Agent):
    """Collects ``collect_value``, predicts ``model_value`` (``default_value`` by default)."""

    schedule: ClassVar[Schedule]
    collect_value: ClassVar[object] = 1.0
    model_value: ClassVar[object] = "model"
    default_value: ClassVar[object] = "default"

    def __init__(self) -> None:
        self.setups = 0
        self.cleaned = 0
        #: (clock time, prediction) of every act
        self.actions: list[tuple[float, Prediction]] = []
        #: clock time of every mitigation
        self.mitigations: list[float] = []
        self.learned: list[Any] = []

    @property
    def acts(self) -> int:
        return len(self.actions)

    def now(self) -> float:
        return self.ctx.clock.now()

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        self.setups += 1

    def collect(self) -> object:
        return self.collect_value

    def learn(self, obs: Any) -> None:
        self.learned.append(obs)

    def predict(self) -> object:
        return self.model_value

    def default_predict(self) -> object:
        return self.default_value

    def act(self, prediction: Prediction) -> None:
        self.actions.append((self.now(), prediction))

    def mitigate(self) -> None:
        self.mitigations.append(self.now())

    def clean_up(self) -> None:
        self.cleaned += 1


class ClockRef:
    """A clock for a Linux backend built before the executor whose virtual clock it must read
    (``target`` is set once the executor exists)."""

    def __init__(self) -> None:
        self.target: Any = None

    def now(self) -> float:
        return 0.0 if self.target is None else float(self.target.now())

    def consume(self, seconds: float) -> None:
        return None


class WorkloadHost(BackendBase):
    """A Linux backend on fake trees, plus a workload the test moves between events (its
    ``advance``): the backend's sensors and per-agent actuators, as the runtime sees them."""

    name = "linux"
    revocable = True

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.b = backend
        self.sensors = backend.sensors
        self.actuators = backend.actuators
        self.features = backend.features

    def actuators_for(self, owner: str, *, dry_run: bool) -> Any:
        return self.b.actuators_for(owner, dry_run=dry_run)

    def revoke(self, owner: str) -> None:
        self.b.revoke(owner)

    def unrevoke(self, owner: str) -> None:
        self.b.unrevoke(owner)

    def restored(self, owner: str) -> None:
        self.b.restored(owner)
