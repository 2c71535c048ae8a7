"""mitigate() and clean_up() run only on an agent whose setup() returned (so agents need no
getattr guards for what setup binds); a failed or not-applicable setup is rolled back by the
undo journal instead."""

from __future__ import annotations

from typing import Any

import pytest

from sol.backend import NullBackend
from sol.facilities import FacilityMissing
from sol.sdk import Schedule
from sol.testing import simulate
from tests.agentkit import RecordingAgent

SCHED = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)


class HalfSetUp(RecordingAgent):
    """Its setup binds part of its state, then raises ``error``."""

    name = "half_set_up"
    schedule = SCHED
    error: BaseException | None = None

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        if self.error is not None:
            raise self.error
        self.bound = True

    def mitigate(self) -> None:
        assert self.bound  # what setup binds is there: no getattr guard needed
        super().mitigate()

    def clean_up(self) -> None:
        assert self.bound
        super().clean_up()


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (RuntimeError("the model file is corrupt"), "failed"),
        (FacilityMissing("cpu", "sensors"), "not-applicable"),
    ],
    ids=["failed", "not-applicable"],
)
def test_after_a_setup_that_raised_neither_mitigate_nor_clean_up_runs(
    error: BaseException, state: str
) -> None:
    agent = HalfSetUp()
    agent.error = error
    result = simulate(agent, 30.0, seed=1, backend=NullBackend())
    assert result.state == state
    assert agent.setups == 1 and agent.cleaned == 0 and agent.mitigations == []


def test_after_a_setup_that_returned_clean_up_runs_once_on_stop() -> None:
    agent = HalfSetUp()
    result = simulate(agent, 30.0, seed=1, backend=NullBackend())
    assert result.state == "stopped" and agent.cleaned == 1
