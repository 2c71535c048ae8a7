"""The actuation guard: bounds, step and rate limits for one numeric knob (DESIGN §5).

Every actuator write passes a guard before anything else happens. The guard never raises on
a bad proposal: it answers with a :class:`GuardDecision` that says what may be written, if
anything, and why.

>>> g = ActuationGuard(lo=2, hi=1024, max_step=256, min_interval=1.0)
>>> g.check(current=512, proposed=600, now=0.0)
GuardDecision(action='allow', value=600.0, reason=None)
>>> d = g.check(current=512, proposed=4096, now=0.0)  # above hi, then more than one step away
>>> d.action, d.value
('clamp', 768.0)
>>> d.reason
'above hi 1024 -> 1024; step limited to 256 from 512 -> 768'
>>> g.applied(768, now=0.0)
>>> g.check(current=768, proposed=800, now=0.5).reason
'rate: last write 0.5s ago, min interval 1s'
>>> g.check(current=768, proposed=float("nan"), now=5.0).rejected
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["ActuationGuard", "GuardDecision"]

Action = Literal["allow", "clamp", "reject"]


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """What the guard lets through: ``value`` to write (``None`` when rejected) and why."""

    action: Action
    value: float | None
    reason: str | None

    @property
    def allowed(self) -> bool:
        """The proposal may be written unchanged."""
        return self.action == "allow"

    @property
    def clamped(self) -> bool:
        """A changed value (``value``) may be written instead of the proposal."""
        return self.action == "clamp"

    @property
    def rejected(self) -> bool:
        """Nothing may be written."""
        return self.action == "reject"


def _fmt(x: float) -> str:
    return f"{x:g}"


class ActuationGuard:
    """Limits for one numeric knob; every limit is optional (``None`` = no limit).

    - ``lo``/``hi``: the value written is clamped into ``[lo, hi]``. Bounds are absolute: if
      the current value is outside them, the step limit never holds a write outside them.
    - ``max_step``: the value written is at most ``max_step`` away from the current value
      (or, when the current value is unknown, from the last applied one).
    - ``min_interval``: a write within ``min_interval`` seconds of the last *applied* write
      (reported with :meth:`applied`) is rejected.
    - a NaN or infinite proposal is always rejected.

    ``now`` is whatever clock the caller runs on (virtual or monotonic), in seconds.

    >>> ActuationGuard(lo=0, hi=100, max_step=None, min_interval=None).check(None, -5, 0.0).value
    0.0
    >>> ActuationGuard(lo=10, hi=100, max_step=5, min_interval=None).check(0, 50, 0.0)
    GuardDecision(action='clamp', value=10.0, reason='step limited to 5 from 0 -> 5; below lo 10 -> 10')
    """

    def __init__(
        self,
        lo: float | None = None,
        hi: float | None = None,
        max_step: float | None = None,
        min_interval: float | None = None,
    ) -> None:
        for name, limit in (("lo", lo), ("hi", hi), ("max_step", max_step), ("min_interval", min_interval)):
            if limit is not None and (isinstance(limit, bool) or not math.isfinite(limit)):
                raise ValueError(f"{name} must be a finite number or None, got {limit!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"lo ({lo}) must be <= hi ({hi})")
        if max_step is not None and max_step <= 0:
            raise ValueError(f"max_step must be > 0, got {max_step}")
        if min_interval is not None and min_interval < 0:
            raise ValueError(f"min_interval must be >= 0, got {min_interval}")
        self.lo = lo
        self.hi = hi
        self.max_step = max_step
        self.min_interval = min_interval
        self.last_value: float | None = None
        self.last_applied_at: float | None = None

    def check(self, current: float | None, proposed: float, now: float) -> GuardDecision:
        """Judge writing ``proposed`` over ``current`` (``None``: unknown) at time ``now``."""
        if not math.isfinite(proposed):
            return GuardDecision("reject", None, f"non-finite proposal {proposed!r}")
        if (
            self.min_interval is not None
            and self.last_applied_at is not None
            and now - self.last_applied_at < self.min_interval
        ):
            return GuardDecision(
                "reject",
                None,
                f"rate: last write {_fmt(now - self.last_applied_at)}s ago, "
                f"min interval {_fmt(self.min_interval)}s",
            )
        value = float(proposed)
        reasons: list[str] = []
        if self.hi is not None and value > self.hi:
            value = float(self.hi)
            reasons.append(f"above hi {_fmt(self.hi)} -> {_fmt(value)}")
        if self.lo is not None and value < self.lo:
            value = float(self.lo)
            reasons.append(f"below lo {_fmt(self.lo)} -> {_fmt(value)}")
        reference = current if current is not None and math.isfinite(current) else self.last_value
        if self.max_step is not None and reference is not None and abs(value - reference) > self.max_step:
            value = reference + math.copysign(self.max_step, value - reference)
            reasons.append(f"step limited to {_fmt(self.max_step)} from {_fmt(reference)} -> {_fmt(value)}")
            # Bounds win over the step: a knob found outside its bounds is brought inside.
            if self.hi is not None and value > self.hi:
                value = float(self.hi)
                reasons.append(f"above hi {_fmt(self.hi)} -> {_fmt(value)}")
            if self.lo is not None and value < self.lo:
                value = float(self.lo)
                reasons.append(f"below lo {_fmt(self.lo)} -> {_fmt(value)}")
        if not reasons:
            return GuardDecision("allow", value, None)
        return GuardDecision("clamp", value, "; ".join(reasons))

    def applied(self, value: float, now: float) -> None:
        """Report a write actually made, for the rate limit and as the step reference."""
        self.last_value = float(value)
        self.last_applied_at = now

    def __repr__(self) -> str:
        return (
            f"ActuationGuard(lo={self.lo!r}, hi={self.hi!r}, max_step={self.max_step!r}, "
            f"min_interval={self.min_interval!r})"
        )
