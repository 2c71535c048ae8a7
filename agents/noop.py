"""The do-nothing agent: the smallest agent that passes ``check_agent``.

It observes nothing, learns nothing and changes nothing, so it is always safe. Use it as the
starting point of a new agent and as the baseline "no agent" policy in simulations.
"""

from __future__ import annotations

from sol.sdk import Agent, Prediction, Schedule


class NoopAgent(Agent):
    """Does nothing, safely: the reference agent and the "no agent" baseline."""

    name = "noop"
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=10.0)

    def collect(self) -> object:
        return None

    def predict(self) -> object:
        return None

    def default_predict(self) -> object:
        return None

    def act(self, prediction: Prediction) -> None:
        return None
