"""The hello agent: TODO its whole story, sensor to actuator, in one screen.

Made by ``sol new-agent hello``. As generated it observes nothing and changes nothing (like
sol's ``noop`` agent), so it is safe anywhere and passes ``sol.testing.check_agent``. Each TODO
says where a piece of the decision logic goes. The runtime owns every loop, clock, thread,
timeout and fallback: the agent never sleeps, never starts a thread, never reads the wall clock
and never opens ``/sys`` or ``/proc`` itself; it gets a clock, sensors and actuators in
``setup(ctx)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sol import Agent, Context, Prediction, Schedule, Verdict
from sol.sdk import bounds, check_fields


@dataclass(frozen=True, slots=True)
class Params:
    """The agent's parameters: ``[agents.hello.params]`` in sol.toml fills them (``ctx.config``)."""

    # TODO: one field per tunable, each with a default and its range next to it: config
    # refuses a value outside the range (and NaN) at its key's line. This one is an example.
    margin: float = field(default=1.0, metadata=bounds(ge=0))

    def __post_init__(self) -> None:
        check_fields(self)


class HelloAgent(Agent):
    # TODO: the docstring's first line is what `sol agents` shows: what the agent manages.
    """Observes nothing and changes nothing yet: a new agent made by sol new-agent."""

    name = "hello"
    # TODO: how often to collect and to act, how long a prediction may be applied, how often
    # to assess (seconds); `sol.Schedule` has the rest (timeouts, budgets, backoff).
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=10.0)
    Params = Params
    # TODO (fault injection, `sol faults matrix`): the simulator's ground-truth metric the
    # agent's decisions can hurt, lower is better, e.g.
    # harm_metric = "cpu.primary_unserved_windows"

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        # TODO: take the facilities the agent needs, e.g.
        #     self.cpu = ctx.sensors.require("cpu")  # FacilityMissing: not for this node
        #     self.harvest = ctx.actuators.require("cpu")
        # and build the model from self.p (a learner from sol.predictors).

    # -- model side: may be slow, may be starved ---------------------------------------
    def collect(self) -> object:
        # TODO: one observation, e.g. self.ctx.sensors.cpu.usage("primary")
        return None

    def validate(self, obs: object) -> Verdict:
        # TODO: fail what must never be learned from (sol.safety.validators: finite, in_range,
        # Fresh, NotFrozen, all_of)
        return Verdict.ok()

    def learn(self, obs: object) -> None:
        # TODO: update the model with one valid observation
        return None

    def predict(self) -> object:
        # TODO: the decision act() will apply, from the model
        return None

    def assess_model(self) -> Verdict:
        # TODO: fail while the model is not good enough to use (sol.safety.assessors)
        return Verdict.ok()

    def default_predict(self) -> object:
        # TODO: the safe decision: cheap, never failing, applied whenever the model is not
        return None

    # -- actuator side: always on time ---------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        # TODO: apply prediction.value through self.ctx.actuators (they journal every write)
        return None

    def assess_performance(self) -> Verdict:
        # TODO: fail when the workloads are hurt: the runtime then calls mitigate() and applies
        # defaults for a backoff
        return Verdict.ok()

    def mitigate(self) -> None:
        # TODO: back to a safe state now; idempotent
        return None

    def clean_up(self) -> None:
        # TODO: undo what the agent changed; idempotent, and working even if setup failed
        # half-way (getattr(self, "...", None))
        return None

    # TODO (fault injection): the most aggressive decision an adversarial model could make
    # def fault_aggressive(self) -> object:
    #     return ...
