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

Every number an agent is configured with is checked where it is declared: a parameter's range
sits next to its field (``bounds``), and config loading reports a value outside it, or NaN or
infinity in any number field, at the key's line.

>>> @dataclass(frozen=True)
... class Params:
...     rate: float = field(default=0.05, metadata=bounds(ge=0, le=1))
...     def __post_init__(self) -> None:
...         check_fields(self)
>>> Params(rate=float("nan"))
Traceback (most recent call last):
...
sol.sdk.ParamError: rate must be a finite number in [0, 1], got nan
"""

from __future__ import annotations

import dataclasses
import json
import math
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from sol.facilities import Actuators, Sensors

if TYPE_CHECKING:
    from sol.hints import HintView
    from sol.metrics import AgentMetrics
    from sol.notices import AgentNotices

__all__ = [
    "MAX_PERIOD_S",
    "MIN_PERIOD_S",
    "Agent",
    "Bounds",
    "Clock",
    "Context",
    "NoParams",
    "ParamError",
    "Prediction",
    "Schedule",
    "ScheduleError",
    "Verdict",
    "as_verdict",
    "bounds",
    "check_fields",
    "field_problems",
    "relative_cgroup",
    "rule",
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


# --------------------------------------------------------------------------------------
# Field checks: a range or a rule declared next to a dataclass field, in its metadata
# --------------------------------------------------------------------------------------

#: The metadata key under which a field's check is declared (``bounds``, ``rule``).
CHECK_KEY = "sol.check"

FieldCheck = Callable[[Any], "str | None"]


class ParamError(ValueError):
    """A parameter that cannot be used; ``field`` names it so config can point at its line.

    ``str()`` is ``"<field> <message>"``, as the other parameter errors read.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def _num(x: float) -> str:
    return f"{x:g}"


def _got(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)


@dataclass(frozen=True, slots=True)
class Bounds:
    """A number field's range (each bound optional, inclusive ``ge``/``le`` or strict
    ``gt``/``lt``); NaN and infinities are always outside. Calling it with a value gives
    why the value is outside (``None``: inside); values that are not numbers are the type
    check's business and pass.

    >>> Bounds(ge=0, le=1)(float("nan"))
    'must be a finite number in [0, 1], got nan'
    >>> Bounds(gt=0, unit="seconds")(0.0), Bounds(ge=1)(0), Bounds(ge=1)(3)
    ('must be a finite number of seconds > 0, got 0.0', 'must be an integer >= 1, got 0', None)
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    #: what the number counts ("seconds", "cores"), for the message
    unit: str = ""

    def describe(self) -> str:
        lo = hi = ""
        if self.ge is not None or self.gt is not None:
            lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}"  # type: ignore[arg-type]
        if self.le is not None or self.lt is not None:
            hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})"  # type: ignore[arg-type]
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return (">= " if lo[0] == "[" else "> ") + lo[1:]
        if hi:
            return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
        return ""

    def __call__(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        # an int is compared exactly (a huge one does not overflow a float conversion)
        ok = isinstance(value, int) or math.isfinite(value)
        ok = ok and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        ok = ok and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
        if ok:
            return None
        if self.unit:
            kind = f"a {'finite ' if isinstance(value, float) else ''}number of {self.unit}"
        else:
            kind = "a finite number" if isinstance(value, float) else "an integer"
        where = self.describe()
        return f"must be {kind}{' ' + where if where else ''}, got {_got(value)}"


#: The check of a number field that declares none: finite.
FINITE = Bounds()


def bounds(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    unit: str = "",
) -> Mapping[str, FieldCheck]:
    """Field metadata declaring a number's range: ``field(default=0.05, metadata=bounds(ge=0, le=1))``.

    On a ``tuple[int, ...]`` (or list) field each element is checked.
    """
    return {CHECK_KEY: Bounds(ge=ge, gt=gt, le=le, lt=lt, unit=unit)}


def rule(check: FieldCheck) -> Mapping[str, FieldCheck]:
    """Field metadata declaring any per-value check: ``check(value)`` returns why the value
    cannot be used (completing "<field> ..."), or ``None``."""
    return {CHECK_KEY: check}


def field_check(f: dataclasses.Field[Any]) -> FieldCheck:
    """The check declared on ``f`` (``bounds``/``rule``), else "a number must be finite"."""
    check: FieldCheck = f.metadata.get(CHECK_KEY, FINITE)
    return check


def field_problems(obj: Any) -> list[ParamError]:
    """Every field of dataclass instance ``obj`` that fails its declared check (numbers
    without one: that they are finite), elements of tuple and list fields one by one."""
    problems: list[ParamError] = []
    for f in dataclasses.fields(obj):
        check = field_check(f)
        value = getattr(obj, f.name)
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                message = check(item)
                if message:
                    problems.append(ParamError(f"{f.name}[{i}]", message))
        else:
            message = check(value)
            if message:
                problems.append(ParamError(f.name, message))
    return problems


def check_fields(obj: Any) -> None:
    """Raise the first of ``field_problems(obj)``; call it first in a ``__post_init__``."""
    problems = field_problems(obj)
    if problems:
        raise problems[0]


def relative_cgroup(value: object) -> str | None:
    """A check (``rule``) for a cgroup named below a cgroup root: relative, normalised, not
    the root itself, no ``..`` (it would climb out of the root it is joined to).

    >>> relative_cgroup("sol-harvest"), relative_cgroup("machine.slice/sol")
    (None, None)
    >>> relative_cgroup("/")
    'must be a relative, normalised cgroup path below the root, without "..", got "/"'
    """
    if not isinstance(value, str):
        return None
    ok = (
        value not in ("", ".")
        and not value.startswith("/")
        and "\0" not in value
        and posixpath.normpath(value) == value
        and ".." not in value.split("/")
    )
    if ok:
        return None
    return (
        'must be a relative, normalised cgroup path below the root, without "..", '
        f"got {json.dumps(value, ensure_ascii=False)}"
    )


# --------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------

#: The shortest time a schedule accepts, for every period and limit in it (seconds). It is
#: how often the runtime may wake an agent's lane: below a millisecond a period is shorter
#: than one Python callback takes and than the kernel's timer slack, so the lane never sleeps
#: and spins a core (docs/fault-injection.md, "Bad input"). 1 kHz is far above the rate any
#: facility can be read or written meaningfully (the kernel updates cgroup CPU time and PSI
#: per scheduler tick or slower). A timeout or window this short could never be met either.
MIN_PERIOD_S = 0.001
#: The longest: a week. No node agent ticks less often, and a wait far longer overflows
#: (``threading.TIMEOUT_MAX``, ``time.sleep``) instead of waiting.
MAX_PERIOD_S = 7 * 86400.0

_SECONDS = bounds(ge=MIN_PERIOD_S, le=MAX_PERIOD_S, unit="seconds")
_COUNT = bounds(ge=1)


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

    collect_every: float = field(metadata=_SECONDS)
    act_every: float = field(metadata=_SECONDS)
    prediction_ttl: float = field(metadata=_SECONDS)
    assess_every: float = field(metadata=_SECONDS)
    predict_every: float | None = field(default=None, metadata=_SECONDS)
    max_invalid_streak: int = field(default=3, metadata=_COUNT)
    backoff_initial: float = field(default=1.0, metadata=_SECONDS)
    backoff_max: float = field(default=60.0, metadata=_SECONDS)
    callback_timeout: float = field(default=1.0, metadata=_SECONDS)
    cpu_budget: float = field(default=0.05, metadata=bounds(gt=0, le=16, unit="cores"))
    budget_window: float = field(default=10.0, metadata=_SECONDS)
    max_errors: int = field(default=5, metadata=_COUNT)
    error_window: float = field(default=60.0, metadata=_SECONDS)

    def __post_init__(self) -> None:
        if self.predict_every is None:
            object.__setattr__(self, "predict_every", self.collect_every)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("max_invalid_streak", "max_errors"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ScheduleError(f"{f.name} must be a whole count, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScheduleError(f"{f.name} must be a number, got {value!r}")
        for problem in field_problems(self):
            raise ScheduleError(str(problem))
        if self.backoff_max < self.backoff_initial:
            raise ScheduleError(
                f"backoff_max ({self.backoff_max}) must be >= backoff_initial ({self.backoff_initial})"
            )
        if self.prediction_ttl < self.predict_every:  # type: ignore[operator]  # set above
            # A prediction must live until the next one is due: shorter, and the acts between
            # them discard a healthy model's decision as expired and apply the default.
            raise ScheduleError(
                f"prediction_ttl ({self.prediction_ttl}) must be >= predict_every ({self.predict_every}): "
                "a prediction would expire before the next one is made"
            )

    def replace(self, **overrides: Any) -> Schedule:
        """A copy with some fields overridden (as config does per agent).

        ``predict_every`` defaults to ``collect_every``, and construction has already resolved
        that default: where it is still the default, an overridden ``collect_every`` carries it
        along (else a faster collect would keep the old prediction period, and a shorter
        ``prediction_ttl`` would be refused).

        >>> base = Schedule(collect_every=0.2, act_every=0.2, prediction_ttl=0.6, assess_every=1.0)
        >>> base.replace(collect_every=0.05, act_every=0.05, prediction_ttl=0.15).predict_every
        0.05
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ScheduleError(f"unknown schedule field(s) {unknown}; known: {sorted(known)}")
        if (
            "collect_every" in overrides
            and "predict_every" not in overrides
            and self.predict_every == self.collect_every
        ):
            overrides = {**overrides, "predict_every": overrides["collect_every"]}
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


def _no_hints() -> HintView:
    from sol.hints import HintView

    return HintView()


def _loose_notices() -> AgentNotices:
    """A board of its own on the wall clock, for a Context built outside a runtime (tests)."""
    import time

    from sol.notices import NoticeBoard

    return NoticeBoard(time.time).for_agent("agent")


@dataclass(slots=True)
class Context:
    """What the runtime hands an agent in ``setup``: everything it may touch."""

    clock: Clock
    log: Any
    #: the node's sensors, one attribute per facility (``None`` where it lacks one);
    #: ``sensors.require("cpu")`` gives a facility typed, or raises ``FacilityMissing``
    sensors: Sensors
    #: this agent's actuators, bound to its name (undo records) and dry-run flag
    actuators: Actuators
    #: the agent's typed parameters: an instance of its ``Params`` dataclass
    config: Any = field(default_factory=NoParams)
    state_dir: Path = field(default_factory=lambda: Path("."))
    metrics: AgentMetrics | None = None
    #: the workloads' hints (sol.hints): ``ctx.hints(cgroup="machine.slice/vm-a")`` is typed,
    #: read-only, and empty where nobody said anything
    hints: HintView = field(default_factory=_no_hints)
    #: this agent's side of the notice board (sol.notices): ``ready(action, target, lead_s=)``
    #: before a non-urgent action, ``urgent(action, target)`` for one taken now
    notices: AgentNotices = field(default_factory=_loose_notices)


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
        """Undo what may be causing harm, at once. Called only on an agent whose ``setup``
        returned (never after a failed or not-applicable setup); must be idempotent."""
        return None

    def clean_up(self) -> None:
        """Put back what the agent changed, on stop, pause or quarantine. Called only on an
        agent whose ``setup`` returned, so what ``setup`` bound is there; must be idempotent."""
        return None

    # -- configuration ----------------------------------------------------------------
    @classmethod
    def check_params(cls, params: Any, schedule: Schedule) -> Sequence[ParamError]:
        """What ``setup`` would refuse in ``params`` run on ``schedule``, found without the host.

        Config loading calls it once the params have loaded (every number finite and within
        the ``bounds`` its field declares), so ``sol check-config`` reports it, at the line of
        the key named, before a daemon starts. Return a ``ParamError`` per problem; a
        ``ValueError`` raised out of it (say by a learner built from the params, as ``setup``
        builds it) counts as one. Touch nothing of the host here: no sensors, no files.
        """
        return ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
