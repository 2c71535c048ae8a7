"""The faults that harm the daemon itself rather than the node: an agent that starts a busy
thread (its CPU escapes every budget) and one that keeps memory at every tick (it would take
the daemon past its cgroup's limit). With safeguards on the runtime quarantines the agent; off,
the harness shows the damage."""

from __future__ import annotations

import threading

import pytest

from sol.agents.example_ewma import ExampleEwmaAgent
from sol.fault_injection.faults import REDUCED_FAULTS, Timeline, get_fault
from sol.fault_injection.harness import run_cell

SHORT = Timeline(duration=120.0, onset=30.0, length=60.0)


@pytest.mark.parametrize(
    ("fault", "metric", "off_at_least", "reason"),
    [
        ("proc.thread_escape", "escaped_core_s", SHORT.duration - SHORT.onset - 1, "AgentThreadError"),
        ("proc.memory_leak", "held_mib", 256.0, "memory: the daemon's RSS reached"),
    ],
    ids=["thread-escape", "memory-leak"],
)
def test_safeguards_quarantine_an_agent_that_harms_the_daemon(
    fault: str, metric: str, off_at_least: float, reason: str
) -> None:
    cell = run_cell(ExampleEwmaAgent, get_fault(fault), timeline=SHORT)
    assert cell.passed, [str(v) for v in cell.violations]
    assert cell.on.state == "quarantined" and reason in str(cell.on.state_reason)
    assert cell.off.state == "stopped"
    on, off = cell.daemon_damage()
    assert on is not None and off is not None and off >= off_at_least, (on, off)
    assert on < off / 3, (on, off)
    assert cell.verdict() == "prevented"
    assert cell.response()["quarantine"] == 1
    safe_on, safe_off = cell.time_to_safe()
    assert safe_on is not None and safe_on <= 15.0 and safe_off is None
    assert not [t for t in threading.enumerate() if t.name == "sol-fault-escapee"], "the harness ends it"


def test_thread_escape_with_safeguards_on_never_starts_the_thread() -> None:
    cell = run_cell(ExampleEwmaAgent, get_fault("proc.thread_escape"), timeline=SHORT)
    assert cell.on.daemon["escaped_core_s"] == 0.0 and cell.on.daemon["escaped_cpu_s"] == 0.0
    refused = cell.on.event_times("agent.thread_refused")
    assert len(refused) == ExampleEwmaAgent.schedule.max_errors
    assert cell.off.daemon["escaped_cpu_s"] > 0.0, "the unprotected run's thread really ran"


def test_the_reduced_matrix_has_both() -> None:
    assert {"proc.thread_escape", "proc.memory_leak"} <= set(REDUCED_FAULTS)
