"""What a run did, as an operator reads it: one row per agent, and durations both ways.

``sol run`` ends with this table, ``sol sim`` prints it above the node's ground truth, and a
fleet simulation (many nodes) will print it per node; ``--json`` gives the same rows as
objects. Nothing heavy is imported here: ``sol run`` and ``sol restore`` load this module at
start.

>>> print(render_table([("agent", "state"), ("noop", "stopped")]))
agent  state
-----  -------
noop   stopped
>>> parse_duration("15m"), format_duration(900.0)
(900.0, '15m')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = [
    "AgentSummary",
    "format_duration",
    "parse_duration",
    "render_agents",
    "render_table",
    "summarize_agents",
]


class _Runner(Protocol):
    """What a summary reads of an ``AgentRunner``."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def state_reason(self) -> str | None: ...


class _Metrics(Protocol):
    """What a summary reads of ``RuntimeMetrics`` (counts survive an agent's restarts)."""

    errors: Any
    mitigations: Any

    def applied(self, agent: str) -> dict[tuple[str, str], int]: ...

    def counter_value(self, counter: Any, agent: str) -> float: ...


@dataclass(frozen=True, slots=True)
class AgentSummary:
    """One agent over a whole run: its final state and what it applied, from where."""

    agent: str
    state: str
    #: why it is not running (failed, quarantined, not-applicable, paused); None otherwise
    reason: str | None
    #: decisions ``act()`` applied from the model
    model: int
    #: decisions applied from ``default_predict()``, all reasons together
    default: int
    #: those default decisions by reason (``cold-start``, ``expired``, ``backoff`` ...)
    default_reasons: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    mitigations: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize_agents(runners: Iterable[_Runner], metrics: _Metrics) -> list[AgentSummary]:
    """A summary per runner, in order, counted from ``metrics`` (the whole run, restarts included)."""
    out: list[AgentSummary] = []
    for r in runners:
        model = default = 0
        reasons: dict[str, int] = {}
        for (source, reason), n in sorted(metrics.applied(r.name).items()):
            if source == "model":
                model += n
            else:
                default += n
                if reason:
                    reasons[reason] = reasons.get(reason, 0) + n
        out.append(
            AgentSummary(
                agent=r.name,
                state=r.state,
                reason=r.state_reason if r.state not in ("running", "stopped") else None,
                model=model,
                default=default,
                default_reasons=reasons,
                errors=int(metrics.counter_value(metrics.errors, r.name)),
                mitigations=int(metrics.counter_value(metrics.mitigations, r.name)),
            )
        )
    return out


def render_agents(summaries: Sequence[AgentSummary]) -> str:
    """The table, then one line per agent that is not running or stopped, saying why."""
    if not summaries:
        return "(no agents ran)"
    rows = [("agent", "state", "model", "default", "default reasons", "errors", "mitigations")]
    for s in summaries:
        reasons = ", ".join(f"{k}={v}" for k, v in s.default_reasons.items()) or "-"
        rows.append(
            (s.agent, s.state, str(s.model), str(s.default), reasons, str(s.errors), str(s.mitigations))
        )
    lines = [render_table(rows)]
    lines.extend(f"  {s.agent}: {s.state}: {s.reason}" for s in summaries if s.reason)
    return "\n".join(lines)


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a header row and a rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """The largest unit that fits, four significant digits: ``90.0`` → ``1.5m``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.4g}s"


_UNITS: Mapping[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``500ms`` → seconds (ValueError otherwise)."""
    t = text.strip().lower()
    for suffix in ("ms", "s", "m", "h", "d"):  # "ms" before "s"
        if t.endswith(suffix):
            number, scale = t[: -len(suffix)], _UNITS[suffix]
            break
    else:
        number, scale = t, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (examples: 30, 90s, 15m, 2h, 1d)") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"duration must be > 0: {text!r}")
    return value
