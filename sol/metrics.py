"""Prometheus metrics of the runtime and the agents, in a registry owned by one runtime.

Nothing here registers into prometheus_client's global registry: two runtimes in one
process (tests, the fault harness) never share counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class Tracked(Protocol):
    """What a runner exposes for the hot-path counters (read at scrape time)."""

    name: str
    tick_counts: dict[str, int]
    applied_counts: dict[tuple[str, str], int]
    model_cpu_s: float


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._tracked: list[Tracked] = []
        r.register(_HotCounters(self._tracked))
        self.errors = Counter(
            "sol_agent_errors", "Callback errors and timeouts", ["agent", "callback", "kind"], registry=r
        )
        self.mitigations = Counter("sol_agent_mitigations", "mitigate() runs", ["agent", "cause"], registry=r)
        self.quarantines = Counter("sol_agent_quarantines", "Agents quarantined", ["agent"], registry=r)
        self.invalid = Counter(
            "sol_agent_invalid_observations", "Observations that failed validate()", ["agent"], registry=r
        )
        self.deferred = Counter(
            "sol_agent_budget_deferrals", "Model ticks deferred by the CPU budget", ["agent"], registry=r
        )
        self.latency = Histogram(
            "sol_agent_callback_seconds",
            "Callback latency",
            ["agent", "callback"],
            buckets=(1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.state = Gauge("sol_agent_running", "1 while the agent runs, 0 otherwise", ["agent"], registry=r)

    def track(self, runner: Tracked) -> None:
        self._tracked.append(runner)

    def total_callbacks(self) -> int:
        return sum(sum(r.tick_counts.values()) for r in self._tracked)

    def for_agent(self, name: str) -> AgentMetrics:
        return AgentMetrics(self, name)


class AgentMetrics:
    """The view an agent gets as ``ctx.metrics``: its own counters and gauges, labelled."""

    def __init__(self, runtime: RuntimeMetrics, agent: str) -> None:
        self._runtime = runtime
        self.agent = agent
        self._custom: dict[str, Gauge] = {}

    def gauge(self, name: str, value: float, help: str = "") -> None:
        """Set an agent-defined gauge ``sol_<agent>_<name>``."""
        g = self._custom.get(name)
        if g is None:
            g = Gauge(f"sol_{self.agent}_{name}", help or name, registry=self._runtime.registry)
            self._custom[name] = g
        g.set(value)


class _HotCounters(Collector):
    """Exports the runners' plain counters as Prometheus counters at scrape time."""

    def __init__(self, tracked: list[Tracked]) -> None:
        self._tracked = tracked

    def collect(self) -> Iterator[Any]:
        ticks = CounterMetricFamily(
            "sol_agent_ticks", "Callbacks run, by agent and callback", labels=["agent", "callback"]
        )
        applied = CounterMetricFamily(
            "sol_agent_predictions",
            "Predictions applied, by source and reason",
            labels=["agent", "source", "reason"],
        )
        cpu = CounterMetricFamily(
            "sol_agent_model_cpu_seconds", "CPU seconds of the model side", labels=["agent"]
        )
        for r in list(self._tracked):
            for callback, n in list(r.tick_counts.items()):
                ticks.add_metric([r.name, callback], n)
            for (source, reason), n in list(r.applied_counts.items()):
                applied.add_metric([r.name, source, reason], n)
            cpu.add_metric([r.name], r.model_cpu_s)
        yield ticks
        yield applied
        yield cpu

    def describe(self) -> Iterator[Any]:
        return iter(())
