"""sol.simulate: ``sol sim``'s driver (durations, trace loops, JSON, simulated-time logs)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from sol.config import Config, loads_config
from sol.log import configure
from sol.registry import Registry
from sol.sim import SimNode, get_scenario, scenario_from_trace
from sol.simulate import ProgressBar, Simulation, run_simulation

#: two 5-minute windows of two VMs: a 10-minute recorded trace
VM_TRACE = "step,t_seconds,vm_1,vm_2\n0,0,10,30\n1,300,20,10\n"


def config(text: str = "") -> Config:
    return loads_config(text, source="test.toml", agents=Registry().classes())


@pytest.fixture
def vm_trace(tmp_path: Path) -> Path:
    path = tmp_path / "vms_avg.csv"
    path.write_text(VM_TRACE)
    return path


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def sim(cfg: Config, **kw: Any) -> str:
    """``sol sim``'s stdout (it must succeed)."""
    out = io.StringIO()
    assert run_simulation(cfg, out=out, err=io.StringIO(), progress=False, **kw) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("scenario", "seconds"),
    [("default", 600.0), ("cpu-stress", 3600.0), ("mem-stress", 1800.0), ("gpu-stress", 1800.0)],
)
def test_without_duration_a_simulation_runs_its_scenarios_default(scenario: str, seconds: float) -> None:
    s = Simulation(config(), get_scenario(scenario))
    assert s.duration == seconds == get_scenario(scenario).duration_s and s.default_duration


def test_sim_says_it_runs_the_scenarios_default_duration_and_runs_it() -> None:
    out = sim(config("[agents.noop]\n"), scenario="default", as_json=False)
    assert "10m of simulated time (the scenario's default; --duration to change)" in out
    assert "simulated 10m in" in out
    assert "noop" in out and "note: the trace" not in out


def test_a_given_duration_overrides_the_scenarios() -> None:
    out = sim(config("[agents.noop]\n"), scenario="default", duration=90.0, as_json=True)
    doc = json.loads(out)
    assert doc["duration_s"] == 90.0 and doc["default_duration"] is False
    assert doc["ground_truth"]["sim.duration_s"] == pytest.approx(90.0)


def test_a_trace_shorter_than_the_run_is_said_to_loop(vm_trace: Path) -> None:
    out = sim(config("[agents.noop]\n"), trace=vm_trace, duration=1200.0)
    assert "note: the trace covers 10m, shorter than this 20m run: it is replayed 2 times" in out
    out = sim(config("[agents.noop]\n"), trace=vm_trace, duration=1200.0, as_json=True)
    doc = json.loads(out)
    assert doc["trace_span_s"] == 600.0 and doc["trace_loops"] == 2.0


@pytest.mark.parametrize("duration", [None, 300.0, 600.0], ids=["its-own-length", "shorter", "exactly"])
def test_a_run_within_its_trace_says_nothing_of_loops(vm_trace: Path, duration: float | None) -> None:
    out = sim(config("[agents.noop]\n"), trace=vm_trace, duration=duration)
    assert "note:" not in out


def test_sim_json_is_one_object_with_agents_ground_truth_and_timing() -> None:
    out = sim(config("[agents.noop]\n"), scenario="mem-stress", duration=60.0, as_json=True)
    doc = json.loads(out)  # nothing but the object on stdout
    assert doc["scenario"] == "mem-stress" and doc["seed"] == 1 and doc["events"] > 0
    assert doc["agents"] == [
        {
            "agent": "noop",
            "state": "stopped",
            "reason": None,
            "model": 60,
            "default": 0,
            "default_reasons": {},
            "errors": 0,
            "mitigations": 0,
        }
    ]
    assert "mem.accesses" in doc["ground_truth"] and "cpu.cores" not in doc["ground_truth"]
    assert doc["wall_s"] > 0 and doc["problems"] == [] and doc["plots"] == []


def test_verbose_events_carry_simulated_time_not_the_wall_clock(restore_logging: None) -> None:
    stream = io.StringIO()
    sim(
        config("[agents.noop]\n"),
        scenario="default",
        duration=300.0,
        configure_log=lambda clock: configure("json", "info", stream=stream, clock=clock),
    )
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    stamps = {e["event"]: e["timestamp"] for e in events}
    assert stamps["agent.started"] == "sim+00:00:00.000"
    assert stamps["agent.stopped"] == "sim+00:05:00.000"
    assert all(e["timestamp"].startswith("sim+") for e in events)


def test_sim_with_a_linux_config_still_simulates_a_node() -> None:
    s = Simulation(config('backend = "linux"\n[agents.noop]\n'), get_scenario("default"), duration=5.0)
    assert isinstance(s.replay.node, SimNode)
    run = s.run()
    assert run.agents[0].state == "stopped" and run.ground_truth["sim.duration_s"] == pytest.approx(5.0)


def test_a_simulation_runs_once() -> None:
    s = Simulation(config("[agents.noop]\n"), get_scenario("default"), duration=5.0)
    s.run()
    with pytest.raises(RuntimeError, match="runs once"):
        s.run()


def test_the_seed_given_overrides_the_configs(vm_trace: Path) -> None:
    s = Simulation(config("[sim]\nseed = 3\n"), scenario_from_trace(vm_trace), duration=5.0, seed=7)
    assert s.run().seed == 7


def test_off_a_terminal_the_progress_bar_prints_every_quarter() -> None:
    stream = io.StringIO()
    bar = ProgressBar(100.0, stream)
    for t in range(101):
        bar.update(float(t))
    bar.done()
    lines = stream.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["0%", "25%", "50%", "75%", "100%"]


def test_a_named_scenario_whose_trace_is_shorter_than_its_default_says_it_loops(data_dir: Path) -> None:
    # mem-damon's recording is under a minute; its default run is ten
    out = sim(config("[agents.noop]\n"), scenario="mem-damon")
    assert "note: the trace covers 56.8s, shorter than this 10m run: it is replayed 10.6 times" in out


def test_on_a_node_without_its_facility_an_agent_is_not_applicable_not_failed() -> None:
    out = sim(config("[agents.example_ewma]\n"), scenario="mem-stress", duration=60.0)
    assert "example_ewma: not-applicable: this node has no cpu sensors" in out
    doc = json.loads(
        sim(config("[agents.example_ewma]\n"), scenario="mem-stress", duration=60.0, as_json=True)
    )
    assert doc["agents"][0]["state"] == "not-applicable" and doc["agents"][0]["errors"] == 0


@pytest.mark.parametrize("module", ["sol.sim.scenarios", "sol.log"])
def test_doctests(module: str) -> None:
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
