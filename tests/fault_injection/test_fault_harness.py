"""The harness on the example agent: every fault keeps DESIGN §4, and the numbers mean what they say."""

from __future__ import annotations

from typing import Any

import pytest

from sol.agents.example_ewma import ExampleEwmaAgent
from sol.fault_injection.baseline import UNSAFE_SCHEDULE
from sol.fault_injection.faults import FAULTS, Timeline, get_fault
from sol.fault_injection.harness import Cell, harm_verdict, run_cell, run_one, time_to_safe
from sol.fault_injection.profiles import most_aggressive, profile_for
from sol.sdk import Agent, Prediction, Schedule

#: Short runs: the fault over [30, 90) s, the load x3 from 60 s.
SHORT = Timeline(duration=120.0, onset=30.0, length=60.0)


@pytest.fixture(scope="module")
def cells() -> dict[str, Cell]:
    from sol.fault_injection.harness import clean_runs

    base = clean_runs(ExampleEwmaAgent, seed=1, timeline=SHORT)
    return {name: run_cell(ExampleEwmaAgent, f, timeline=SHORT, baselines=base) for name, f in FAULTS.items()}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_fault_keeps_design_4_with_safeguards_on(cells: dict[str, Cell], fault: str) -> None:
    cell = cells[fault]
    assert cell.passed, [str(v) for v in cell.violations]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("data.nan", "invalid-data"),
        ("data.out_of_range", "invalid-data"),
        ("data.stale", "invalid-data"),
        ("data.garbage", "error"),
        ("model.predict_error", "error"),
        ("model.learn_hang", "expired"),
        ("sched.model_starved", "expired"),
        ("model.adversarial", "backoff"),
        ("data.frozen", "backoff"),
    ],
)
def test_the_runtime_answers_with_the_right_default(cells: dict[str, Cell], fault: str, reason: str) -> None:
    assert reason in cells[fault].response()


@pytest.mark.parametrize(
    "fault",
    [
        "data.nan",
        "data.garbage",
        "model.learn_error",
        "model.learn_hang",
        "model.adversarial",
        "proc.crash_loop",
    ],
)
def test_safeguards_prevent_harm_the_unprotected_agent_does(cells: dict[str, Cell], fault: str) -> None:
    cell = cells[fault]
    _, clean_off, on, off = cell.harm()
    assert on is not None and off is not None and clean_off is not None
    assert off > clean_off + 50, "the fault must hurt the agent without safeguards"
    assert on < off
    assert cell.verdict() == "prevented"
    safe_on, safe_off = cell.time_to_safe()
    assert safe_on is not None and safe_on <= 10.0
    assert safe_off is None


def test_environment_faults_a_cpu_agent_never_sees_are_not_exercised(cells: dict[str, Cell]) -> None:
    for name in ("env.memory_pressure", "env.power_emergency"):
        assert cells[name].verdict() == "not exercised"
    assert cells["env.load_spike"].exercised


def test_sigkill_restores_every_before_image_and_the_daemon_restarts(cells: dict[str, Cell]) -> None:
    on, off = cells["proc.sigkill"].on, cells["proc.sigkill"].off
    assert on.killed_at == pytest.approx(SHORT.surge_at, abs=1.0)
    assert on.restore_ok and on.knobs_restored
    assert on.state == "stopped"
    assert [n for _, n, _ in on.calls].count("setup") == 2  # killed, then started again
    assert off.restored_at is None  # without the journal nothing puts the knob back
    assert time_to_safe(on, SHORT) == 0.0


def test_a_journal_emptied_after_a_sigkill_is_recovered_from_its_state_file_and_said(
    cells: dict[str, Cell],
) -> None:
    on = cells["proc.journal_emptied"].on
    assert on.killed_at == pytest.approx(SHORT.surge_at, abs=1.0)
    assert on.journal_damage >= 1, "the lost records are reported"
    assert on.restore_ok and on.knobs_restored, "and every setting the dead daemon changed is back"


def test_a_refused_restore_is_retried_and_finished_once_the_fault_clears(cells: dict[str, Cell]) -> None:
    on = cells["act.eperm"].on
    assert on.state == "quarantined"
    assert on.event_times("journal.restore_failed")  # refused while the fault lasted
    assert on.left_open == 0  # the runtime's retry finished it before the run ended
    assert on.final_restore_ok is None  # so no `sol restore` was needed afterwards


def test_the_unprotected_baseline_is_what_the_docs_say() -> None:
    off = run_one(ExampleEwmaAgent, get_fault("data.nan"), safeguards=False, timeline=SHORT)
    for key, value in UNSAFE_SCHEDULE.items():
        assert getattr(off.schedule, key) == value
    assert not any(p.reason == "invalid-data" for _, p in off.actions)
    assert off.probe.bad_learns == []  # validate() passes everything
    during = [p for t, p in off.actions if SHORT.onset + 5 <= t < SHORT.end]
    held = {p.value for p in during}
    assert len(held) == 1 and held != {0}  # the last model decision stays in force
    assert not any(n == "mitigate" for _, n, _ in off.calls)


def test_runs_are_deterministic() -> None:
    a = run_one(ExampleEwmaAgent, get_fault("data.noise"), safeguards=True, timeline=SHORT)
    b = run_one(ExampleEwmaAgent, get_fault("data.noise"), safeguards=True, timeline=SHORT)
    assert [(t, p.source, p.reason, p.value) for t, p in a.actions] == [
        (t, p.source, p.reason, p.value) for t, p in b.actions
    ]
    assert a.ground_truth == b.ground_truth


class Stranger(Agent):
    """An agent someone else wrote: declares nothing the harness knows about."""

    name = "stranger"
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cpu, self.out = ctx.sensors.cpu, ctx.actuators.cpu

    def collect(self) -> float:
        return float(self.cpu.usage("primary").cores)

    def learn(self, obs: float) -> None:
        self.last = obs

    def predict(self) -> int:
        return max(0, self.cpu.total_cores() - int(self.last) - 4)

    def default_predict(self) -> int:
        return 0

    def act(self, prediction: Prediction) -> None:
        self.out.set_harvest_cores(int(prediction.value))

    def mitigate(self) -> None:
        self.out.set_harvest_cores(0)

    def clean_up(self) -> None:
        self.out.set_harvest_cores(0)


def test_an_agent_that_declares_nothing_gets_the_default_profile() -> None:
    p = profile_for(Stranger)
    assert (p.scenario, p.harm_metric, p.benefit_metric, p.aggressive) == ("default", None, None, None)
    cell = run_cell(Stranger, get_fault("model.adversarial"), timeline=SHORT)
    assert cell.passed, cell.violations
    assert cell.verdict() == "n/a"
    assert cell.on.injections > 0  # the most aggressive decision of its clean run was injected


def test_declared_profile_parts_win_over_the_fallbacks() -> None:
    class Declares(Stranger):
        name = "declares"
        harm_metric = "cpu.primary_unserved_core_s"
        benefit_metric = "cpu.harvest_granted_core_s"
        fault_scenario = "cpu-stress"

        def fault_aggressive(self) -> int:
            return 3

    p = profile_for(Declares)
    assert (p.scenario, p.harm_metric, p.benefit_metric) == (
        "cpu-stress",
        "cpu.primary_unserved_core_s",
        "cpu.harvest_granted_core_s",
    )
    assert p.origin is not None and set(p.origin.values()) == {"class"}
    assert p.aggressive is not None and p.aggressive(Declares()) == 3


@pytest.mark.parametrize(
    ("values", "default", "expected"),
    [
        ([2, 9, 4], 0, 9),
        ([{"a": 1.0, "b": 2.0}, {"a": 5.0, "b": 0.0}], {"a": 0.0, "b": 0.0}, {"a": 5.0, "b": 0.0}),
    ],
    ids=["scalar", "mapping"],
)
def test_most_aggressive_is_the_farthest_from_the_default(
    values: list[Any], default: Any, expected: Any
) -> None:
    assert most_aggressive(values, default) == expected


@pytest.mark.parametrize(
    ("harm", "environment", "verdict"),
    [
        ((90.0, 90.0, 20.0, 630.0), 0.0, "prevented"),
        ((90.0, 90.0, 630.0, 630.0), 0.0, "not prevented"),
        ((90.0, 90.0, 20.0, 92.0), 0.0, "weak"),
        ((409.0, 409.0, 659.0, 659.0), 250.0, "weak"),  # the spike hurts with no agent at all
        ((409.0, 409.0, 500.0, 900.0), 250.0, "prevented"),
        ((None, None, None, None), 0.0, "n/a"),
    ],
    ids=["prevented", "not-prevented", "weak", "environment-only", "beyond-environment", "no-metric"],
)
def test_harm_verdicts(harm: tuple[float | None, ...], environment: float, verdict: str) -> None:
    assert harm_verdict(harm, environment) == verdict


def test_a_node_fault_is_measured_against_the_node_with_no_agent() -> None:
    cell = run_cell(ExampleEwmaAgent, get_fault("model.drift"), timeline=SHORT)
    assert cell.no_agent is not None
    clean, faulty = cell.no_agent
    assert faulty["cpu.primary_demand_core_s"] > 1.5 * clean["cpu.primary_demand_core_s"]
    assert cell.environment_harm() >= 0.0
