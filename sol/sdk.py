"""The SDK contract: what an agent author writes against (DESIGN §3).

An agent is decision logic only. The runtime owns every loop, clock, thread, timeout and
fallback; it calls the agent's functions and the agent never calls the runtime back.

>>> v = Verdict.fail("p99 too high")
>>> bool(v), v.reason
(False, 'p99 too high')
>>> bool(Verdict.ok())
True
>>> Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0).predict_every
1.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sol.metrics import AgentMetrics

__all__ = [
    "Agent",
    "Clock",
    "Context",
    "NoParams",
    "Prediction",
    "Schedule",
    "ScheduleError",
    "Verdict",
    "as_verdict",
]

Source = Literal["model", "default"]

#: The reasons the runtime gives for a default prediction (DESIGN §4).
DEFAULT_REASONS = (
    "cold-start",
    "expired",
    "invalid-data",
    "model-assessment",
    "backoff",
    "error",
    "paused",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer of a judgement: truthy when fine, falsy with a ``reason`` when not."""

    passed: bool
    reason: str | None = None

    @classmethod
    def ok(cls) -> Verdict:
        return _OK

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        if not reason:
            raise ValueError("Verdict.fail() needs a reason a human can read")
        return cls(False, str(reason))

    def __bool__(self) -> bool:
        return self.passed


_OK = Verdict(True, None)


def as_verdict(value: object, *, what: str = "verdict") -> Verdict:
    """Accept a ``Verdict`` or a plain ``bool`` wherever a ``Verdict`` is expected.

    Anything else (``None`` included, the usual result of forgetting a ``return``) is a
    programming error in the agent and is reported as a failed verdict naming the type.
    """
    if isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return _OK if value else Verdict(False, f"{what} returned False")
    return Verdict(False, f"{what} returned {type(value).__name__}, expected Verdict or bool")


@dataclass(frozen=True, slots=True)
class Prediction:
    """A decision handed to ``act()``: the payload and where it came from."""

    value: Any
    source: Source
    reason: str | None
    created_at: float
    expires_at: float

    @property
    def is_default(self) -> bool:
        return self.source == "default"

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class ScheduleError(ValueError):
    """A schedule field has a value the runtime cannot honour."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the runtime calls an agent, and the limits it enforces (seconds unless noted).

    ``max_errors`` errors within ``error_window`` seconds quarantine the agent; a healthy
    stretch of ``backoff_max`` seconds after a harm backoff resets the backoff to
    ``backoff_initial``. ``cpu_budget`` is the fraction of one core the model side may use,
    averaged over ``budget_window`` seconds.
    """

    collect_every: float
    act_every: float
    prediction_ttl: float
    assess_every: float
    predict_every: float | None = None
    max_invalid_streak: int = 3
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    callback_timeout: float = 1.0
    cpu_budget: float = 0.05
    budget_window: float = 10.0
    max_errors: int = 5
    error_window: float = 60.0

    def __post_init__(self) -> None:
        if self.predict_every is None:
            object.__setattr__(self, "predict_every", self.collect_every)
        for name in (
            "collect_every",
            "act_every",
            "prediction_ttl",
            "assess_every",
            "predict_every",
            "backoff_initial",
            "backoff_max",
            "callback_timeout",
            "budget_window",
            "error_window",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScheduleError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ScheduleError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("max_invalid_streak", "max_errors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScheduleError(f"{name} must be a whole count >= 1, got {value!r}")
        budget = self.cpu_budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 16:
            raise ScheduleError(f"cpu_budget must be a fraction of one core in (0, 16], got {budget!r}")
        if self.backoff_max < self.backoff_initial:
            raise ScheduleError(
                f"backoff_max ({self.backoff_max}) must be >= backoff_initial ({self.backoff_initial})"
            )

    def replace(self, **overrides: Any) -> Schedule:
        """A copy with some fields overridden (as config does per agent)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ScheduleError(f"unknown schedule field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True, slots=True)
class NoParams:
    """The parameters of an agent that takes none."""


@runtime_checkable
class Clock(Protocol):
    """Seconds on a monotonic scale: virtual in simulation, ``time.monotonic`` live."""

    def now(self) -> float: ...

    def consume(self, seconds: float) -> None:
        """Let ``seconds`` of this clock's time pass inside the current call.

        Only simulated workloads and fault injection use it (a slow learner, a hung write);
        live it really waits, in virtual time it charges the call's lane.
        """
        ...


@dataclass(slots=True)
class Context:
    """What the runtime hands an agent in ``setup``: everything it may touch."""

    clock: Clock
    log: Any
    sensors: Any
    actuators: Any
    #: the agent's typed parameters: an instance of its ``Params`` dataclass
    config: Any = field(default_factory=NoParams)
    state_dir: Path = field(default_factory=lambda: Path("."))
    metrics: AgentMetrics | None = None


class Agent:
    """Base class of every agent. Override what your agent needs; the defaults are safe.

    Required: ``name``, ``schedule``, ``collect``, ``predict``, ``default_predict``, ``act``.
    The defaults of the others accept every observation, trust the model, never see harm,
    and have nothing to mitigate or clean up: override them as soon as your agent writes
    anything to the host.
    """

    name: ClassVar[str] = ""
    schedule: ClassVar[Schedule]
    #: A frozen dataclass of the agent's parameters; config ``[agents.NAME.params]`` fills
    #: it (unknown keys and wrong types are config errors) and ``ctx.config`` holds it.
    Params: ClassVar[type[Any]] = NoParams
    #: The agent's ground-truth harm metric in simulation (used by the fault harness).
    harm_metric: ClassVar[str | None] = None

    ctx: Context

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- model side -------------------------------------------------------------------
    def collect(self) -> object:
        raise NotImplementedError(f"{type(self).__name__}.collect")

    def validate(self, obs: Any) -> Verdict | bool:
        return Verdict.ok()

    def learn(self, obs: Any) -> None:
        return None

    def predict(self) -> object:
        raise NotImplementedError(f"{type(self).__name__}.predict")

    def assess_model(self) -> Verdict | bool:
        return Verdict.ok()

    def default_predict(self) -> object:
        raise NotImplementedError(f"{type(self).__name__}.default_predict")

    # -- actuator side ----------------------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        raise NotImplementedError(f"{type(self).__name__}.act")

    def assess_performance(self) -> Verdict | bool:
        return Verdict.ok()

    def mitigate(self) -> None:
        return None

    def clean_up(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
