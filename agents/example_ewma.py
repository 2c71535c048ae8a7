"""The example agent of docs/writing-an-agent.md: lend idle cores, predicted with an EWMA.

Each second it reads how many cores the primary workloads used, smooths that with an
exponentially weighted moving average, and lends the cores the primaries should not need
(total − predicted − margin) to the harvest group. It is deliberately small: the production
harvester (``cpu_harvest``) predicts the peak with a cost-sensitive learner instead.

Everything an agent needs to be safe is here, in a few lines each:

- ``validate`` rejects NaN, out-of-range and stale readings (they are never learned from);
- ``assess_model`` fails when the EWMA under-predicted too often lately;
- ``default_predict`` lends nothing, the decision that cannot hurt the primaries;
- ``assess_performance`` fails when the primaries stall waiting for a CPU (their PSI, or their
  run-queue delay where the kernel keeps PSI only for the whole host);
- ``mitigate`` and ``clean_up`` give every core back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from sol.facilities import CpuUsage
from sol.predictors.online import EWMA
from sol.safety.assessors import UnderPredictionRate
from sol.safety.validators import Fresh, all_of, finite, in_range
from sol.sdk import Agent, Context, ParamError, Prediction, Schedule, Verdict, bounds, check_fields


@dataclass(frozen=True, slots=True)
class Params:
    #: weight of the newest reading in the average (0..1]
    alpha: float = field(default=0.3, metadata=bounds(gt=0, le=1))
    #: cores kept free above the prediction
    margin_cores: float = field(default=3.0, metadata=bounds(ge=0))
    #: assess_model fails above this share of under-predicted windows
    max_under_rate: float = field(default=0.2, metadata=bounds(ge=0, le=1))
    #: assess_performance fails when primaries stall on CPU more than this share of the
    #: time (PSI ``some`` over the last 10 s), or, where only the host's PSI exists, wait for
    #: more than this many cores on average (run-queue delay)
    max_primary_pressure: float = field(default=0.10, metadata=bounds(ge=0))

    def __post_init__(self) -> None:
        # finite and in range: a NaN threshold compares false and its check never fails
        check_fields(self)


class ExampleEwmaAgent(Agent):
    """Lends idle cores to the harvest group, predicting primary usage with an EWMA."""

    name = "example_ewma"
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)
    Params = Params
    #: 100 ms windows in which the primaries waited for a CPU (fault harness, `sol faults`)
    harm_metric = "cpu.primary_unserved_windows"

    @classmethod
    def check_params(cls, params: object, schedule: Schedule) -> Sequence[ParamError]:
        # what setup builds from the params, without the host: they check their arguments
        p = cast(Params, params)
        EWMA(alpha=p.alpha)
        UnderPredictionRate(window=30, max_rate=p.max_under_rate, min_count=10)
        return ()

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        self.cpu = ctx.sensors.require("cpu")  # FacilityMissing on a node without one
        self.harvest = ctx.actuators.require("cpu")
        self.total = self.cpu.total_cores()
        self.model = EWMA(alpha=self.p.alpha)
        self.under = UnderPredictionRate(window=30, max_rate=self.p.max_under_rate, min_count=10)
        self.fresh = Fresh(max_age=3 * self.schedule.collect_every)
        self.last_need: float | None = None

    # -- model side -------------------------------------------------------------------
    def collect(self) -> CpuUsage:
        usage: CpuUsage = self.cpu.usage("primary")
        return usage

    def validate(self, obs: CpuUsage) -> Verdict:
        return all_of(
            finite(obs.cores, "primary cores"),
            in_range(obs.cores, 0, self.total, "primary cores"),
            self.fresh.check(obs.t, self.ctx.clock.now()),
        )

    def learn(self, obs: CpuUsage) -> None:
        if self.last_need is not None:
            self.under.update(predicted=self.last_need, observed=obs.cores)
        self.model.learn_one({}, obs.cores)

    def predict(self) -> int:
        need = self.model.predict_one({}) + self.p.margin_cores
        self.last_need = need
        lend: int = max(0, self.total - math.ceil(need))
        return lend

    def assess_model(self) -> Verdict:
        return self.under.verdict()

    def default_predict(self) -> int:
        return 0

    # -- actuator side ----------------------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        cores = int(prediction.value)
        if cores != self.harvest.harvest_cores():
            self.harvest.set_harvest_cores(cores)

    def assess_performance(self) -> Verdict:
        pressure = self.cpu.pressure("primary")
        if pressure.scope == "group":
            stall = pressure.some_avg10
            if stall > self.p.max_primary_pressure:
                return Verdict.fail(f"primaries stalled on CPU {stall:.0%} of the last 10 s")
            return Verdict.ok()
        # host-wide pressure also counts the harvest group's own waiting: judge the primaries
        # by their run-queue delay instead (cores' worth of waiting)
        waiting = self.cpu.run_queue_delay("primary").rate
        if waiting > self.p.max_primary_pressure:
            return Verdict.fail(f"primaries waited for CPUs ({waiting:.2f} cores on average)")
        return Verdict.ok()

    def mitigate(self) -> None:
        self.harvest.set_harvest_cores(0)

    def clean_up(self) -> None:
        self.harvest.set_harvest_cores(0)
