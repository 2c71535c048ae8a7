"""Prometheus metrics of the runtime and the agents, in a registry owned by one runtime.

Nothing here registers into prometheus_client's global registry: two runtimes in one
process (tests, the fault harness) never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ticks = Counter("sol_agent_ticks", "Callbacks run, by agent and callback", ["agent", "callback"], registry=r)
        self.predictions = Counter(
            "sol_agent_predictions", "Predictions applied, by source and reason", ["agent", "source", "reason"], registry=r
        )
        self.errors = Counter("sol_agent_errors", "Callback errors and timeouts", ["agent", "callback", "kind"], registry=r)
        self.mitigations = Counter("sol_agent_mitigations", "mitigate() runs", ["agent", "cause"], registry=r)
        self.quarantines = Counter("sol_agent_quarantines", "Agents quarantined", ["agent"], registry=r)
        self.invalid = Counter("sol_agent_invalid_observations", "Observations that failed validate()", ["agent"], registry=r)
        self.deferred = Counter("sol_agent_budget_deferrals", "Model ticks deferred by the CPU budget", ["agent"], registry=r)
        self.model_cpu = Counter("sol_agent_model_cpu_seconds", "CPU seconds of the model side", ["agent"], registry=r)
        self.latency = Histogram(
            "sol_agent_callback_seconds",
            "Callback latency",
            ["agent", "callback"],
            buckets=(1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.state = Gauge("sol_agent_running", "1 while the agent runs, 0 otherwise", ["agent"], registry=r)

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
