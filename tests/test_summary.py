"""sol.summary: the per-agent table every run ends with, and durations both ways."""

from __future__ import annotations

import doctest

import pytest

import sol.summary
from sol.metrics import RuntimeMetrics
from sol.summary import AgentSummary, format_duration, parse_duration, render_agents, summarize_agents


def test_doctests() -> None:
    assert doctest.testmod(sol.summary).failed == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        (" 2H ", 7200.0),
    ],
    ids=["bare", "s", "m", "h", "d", "ms", "case-and-spaces"],
)
def test_parse_duration_reads_the_units_an_operator_types(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1", "0", "inf", "1x", ""], ids=lambda t: t or "empty")
def test_parse_duration_refuses_what_is_not_a_positive_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "0.5s"), (90.0, "1.5m"), (7200.0, "2h"), (129600.0, "1.5d")]
)
def test_format_duration_uses_the_largest_unit_that_fits(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


class _Runner:
    def __init__(
        self, name: str, state: str, reason: str | None, applied: dict[tuple[str, str], int]
    ) -> None:
        self.name, self.state, self.state_reason = name, state, reason
        self.applied_counts = applied
        self.tick_counts: dict[str, int] = {}
        self.model_cpu_s = 0.0


def test_summary_counts_model_and_default_decisions_by_reason_and_says_why_an_agent_is_out() -> None:
    metrics = RuntimeMetrics()
    runners = [
        _Runner("good", "stopped", "stale", {("model", ""): 7, ("default", "cold-start"): 1}),
        _Runner("gpu_cap", "not-applicable", "this node has no gpu sensors", {}),
    ]
    for r in runners:
        metrics.track(r)  # type: ignore[arg-type]
    metrics.errors.labels("good", "act", "exception").inc(2)
    rows = summarize_agents(runners, metrics)
    assert rows[0] == AgentSummary("good", "stopped", None, 7, 1, {"cold-start": 1}, 2, 0)
    assert rows[1].state == "not-applicable" and rows[1].reason == "this node has no gpu sensors"
    text = render_agents(rows)
    assert "cold-start=1" in text
    assert "  gpu_cap: not-applicable: this node has no gpu sensors" in text.splitlines()
    assert rows[0].to_json()["default_reasons"] == {"cold-start": 1}


def test_summary_of_no_agents_says_so() -> None:
    assert render_agents([]) == "(no agents ran)"
