"""The "safeguards off" baseline: the same agent, as it would run without SOL.

The SOL paper compares each agent with and without SOL's safeguards. Here the agent code and
the runtime are unchanged; the harness defeats every safeguard from outside:

* the agent instance: ``validate`` always passes, ``assess_model`` and ``assess_performance``
  always pass, ``mitigate`` does nothing, and ``default_predict`` returns the last decision the
  model made (there is no safe fallback without SOL: whatever the model last set stays in
  force; before the first model decision it is the agent's own default);
* the schedule (:data:`UNSAFE_SCHEDULE`): predictions never expire, invalid data never
  triggers defaults, callbacks may run for ~3 years, the model may use 16 cores, errors never
  quarantine;
* the node (``FaultBackend(safeguards=False)``): writes go straight to the knob, with no undo
  record and no read-back check, so a crash leaves what was written and a write that was not
  applied goes unnoticed.

What stays is the runtime's exception boundary (a raising callback does not kill the
process); with ``default_predict`` holding the last decision it changes nothing on the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sol.sdk import Agent, Prediction, Schedule, Verdict

__all__ = ["UNSAFE_SCHEDULE", "defeat_safeguards", "unsafe_schedule"]

#: Schedule fields that turn SOL's runtime safeguards off.
UNSAFE_SCHEDULE: dict[str, Any] = {
    "prediction_ttl": 1e9,
    "max_invalid_streak": 10**9,
    "callback_timeout": 1e8,  # longer than the year a "hung forever" call charges
    "cpu_budget": 16.0,
    "max_errors": 10**9,
}


def unsafe_schedule(schedule: Schedule) -> Schedule:
    """``schedule`` with the safeguards off. These values lie outside what a config may set (a
    TTL of 30 years, a timeout longer than a "hung forever" call): they are set on a copy past
    the validation that keeps users inside [1 ms, 1 week], for the harness's "off" runs only."""
    unsafe = schedule.replace()
    for name, value in UNSAFE_SCHEDULE.items():
        object.__setattr__(unsafe, name, value)
    return unsafe


def defeat_safeguards(agent: Agent, *, on_own_default: Callable[[], None] | None = None) -> None:
    """Turn the agent's own safeguards off, on this instance only.

    ``on_own_default`` is called whenever ``default_predict`` falls through to the agent's
    own default (no model decision to hold yet): the only time the node gets a safe value.
    """
    original_act = agent.act
    original_default = agent.default_predict
    last: list[Any] = []

    def validate(obs: Any) -> Verdict:
        return Verdict.ok()

    def always_ok() -> Verdict:
        return Verdict.ok()

    def mitigate() -> None:
        return None

    def act(prediction: Prediction) -> None:
        if prediction.source == "model":
            last[:] = [prediction.value]
        original_act(prediction)

    def default_predict() -> Any:
        if last:
            return last[0]
        if on_own_default is not None:
            on_own_default()
        return original_default()

    for name, fn in (
        ("validate", validate),
        ("assess_model", always_ok),
        ("assess_performance", always_ok),
        ("mitigate", mitigate),
        ("act", act),
        ("default_predict", default_predict),
    ):
        setattr(agent, name, fn)
