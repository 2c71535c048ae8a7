"""Prometheus metrics of the runtime and the agents, in a registry owned by one runtime.

Nothing here registers into prometheus_client's global registry: two runtimes in one
process (tests, the fault harness) never share counters.

Hot paths never take a lock for a metric. What changes on every callback (ticks, applied
predictions, CPU seconds, latency buckets) is kept as plain numbers next to the code that
changes it and turned into Prometheus families only when somebody scrapes
(:class:`_HotCounters`). A value read while a lane thread updates it is at worst one update
behind; that is the price of no lock per callback and it is the right one for counters.

Series that exist per agent survive an agent's restart (SIGHUP reload, pause/resume, dry-run
toggle): a replaced runner's plain counters are folded into the agent's retired totals
(:meth:`RuntimeMetrics.retire`), and the per-agent :class:`CallbackStats` and
:class:`AgentMetrics` are kept by name, so counters never go backwards within a process.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

#: Upper bounds (seconds) of the callback latency histogram buckets; +Inf is implied.
LATENCY_BUCKETS: tuple[float, ...] = (1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)


class Tracked(Protocol):
    """What a runner exposes for the hot-path counters (read at scrape time)."""

    name: str
    tick_counts: dict[str, int]
    applied_counts: dict[tuple[str, str], int]
    model_cpu_s: float


class CallbackStats:
    """One agent's callback latencies (fixed buckets) and CPU seconds per side, as plain numbers.

    ``observe`` is called by the live executor after every callback, from the agent's lane
    threads, without a lock: each callback name runs on one lane at a time, so two threads
    racing on one bucket list is rare and costs at most one lost count.

    >>> s = CallbackStats()
    >>> s.observe("act", "actuator", 0.002, 0.001)
    >>> s.observe("act", "actuator", 7.0, 0.0)
    >>> s.histogram("act")[0][-2:], round(s.histogram("act")[1], 3), s.cpu["actuator"]
    ([('5.0', 1), ('+Inf', 2)], 7.002, 0.001)
    """

    __slots__ = ("_hist", "cpu")

    def __init__(self) -> None:
        # callback -> per-bucket counts (len(LATENCY_BUCKETS) + 1 for +Inf), then the sum
        self._hist: dict[str, list[float]] = {}
        self.cpu: dict[str, float] = {"model": 0.0, "actuator": 0.0}

    def observe(self, callback: str, side: str, seconds: float, cpu: float) -> None:
        h = self._hist.get(callback)
        if h is None:
            h = self._hist.setdefault(callback, [0.0] * (len(LATENCY_BUCKETS) + 2))
        h[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        h[-1] += seconds
        if cpu > 0:
            self.cpu[side] = self.cpu.get(side, 0.0) + cpu

    def callbacks(self) -> list[str]:
        return sorted(self._hist)

    def histogram(self, callback: str) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` buckets and the sum, as Prometheus exposes them."""
        h = list(self._hist.get(callback, [0.0] * (len(LATENCY_BUCKETS) + 2)))
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), h[:-1], strict=True):
            total += int(n)
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out, h[-1]

    def count(self, callback: str) -> int:
        h = self._hist.get(callback)
        return int(sum(h[:-1])) if h else 0


class _Retired:
    """The counters of runners that were replaced (restart of one agent), per agent name."""

    __slots__ = ("applied", "model_cpu_s", "ticks")

    def __init__(self) -> None:
        self.ticks: dict[str, int] = {}
        self.applied: dict[tuple[str, str], int] = {}
        self.model_cpu_s = 0.0


class RuntimeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._tracked: list[Tracked] = []
        self._retired: dict[str, _Retired] = {}
        self._stats: dict[str, CallbackStats] = {}
        self._agents: dict[str, AgentMetrics] = {}
        #: ``() -> {owner: {"writes": n, "failures": n, ...}}`` of the backend, if it counts
        self.actuation_source: Callable[[], Mapping[str, Mapping[str, int]]] | None = None
        #: ``() -> number of open undo records``, if a journal is attached
        self.journal_source: Callable[[], int] | None = None
        r.register(_HotCounters(self))
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
        self.state = Gauge("sol_agent_running", "1 while the agent runs, 0 otherwise", ["agent"], registry=r)

    def track(self, runner: Tracked) -> None:
        self._tracked.append(runner)

    def retire(self, runner: Tracked) -> None:
        """``runner`` is being replaced by a new one of the same agent: keep its counts."""
        try:
            self._tracked.remove(runner)
        except ValueError:
            return
        acc = self._retired.setdefault(runner.name, _Retired())
        for k, n in list(runner.tick_counts.items()):
            acc.ticks[k] = acc.ticks.get(k, 0) + n
        for key, n in list(runner.applied_counts.items()):
            acc.applied[key] = acc.applied.get(key, 0) + n
        acc.model_cpu_s += runner.model_cpu_s

    def callback_stats(self, agent: str) -> CallbackStats:
        """The latency/CPU record of ``agent`` (one per name, kept across restarts)."""
        stats = self._stats.get(agent)
        if stats is None:
            stats = self._stats.setdefault(agent, CallbackStats())
        return stats

    def total_callbacks(self) -> int:
        return sum(sum(r.tick_counts.values()) for r in list(self._tracked))

    def for_agent(self, name: str) -> AgentMetrics:
        view = self._agents.get(name)
        if view is None:
            view = self._agents.setdefault(name, AgentMetrics(self, name))
        return view

    # -- scrape-time views --------------------------------------------------------------
    def ticks(self, agent: str) -> dict[str, int]:
        """Callbacks run by ``agent`` since the process started (restarts included)."""
        out = dict(self._retired[agent].ticks) if agent in self._retired else {}
        for r in list(self._tracked):
            if r.name == agent:
                for k, n in list(r.tick_counts.items()):
                    out[k] = out.get(k, 0) + n
        return out

    def applied(self, agent: str) -> dict[tuple[str, str], int]:
        out = dict(self._retired[agent].applied) if agent in self._retired else {}
        for r in list(self._tracked):
            if r.name == agent:
                for k, n in list(r.applied_counts.items()):
                    out[k] = out.get(k, 0) + n
        return out

    def counter_value(self, counter: Counter, agent: str) -> float:
        """Sum of a labelled counter's ``_total`` samples for one agent."""
        total = 0.0
        for m in counter.collect():
            for s in m.samples:
                if s.name.endswith("_total") and s.labels.get("agent") == agent:
                    total += s.value
        return total


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
    """Exports the plain counters (runners, callback stats, backend, journal) at scrape time."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Any]:
        m = self._m
        ticks = CounterMetricFamily(
            "sol_agent_ticks", "Callbacks run, by agent and callback", labels=["agent", "callback"]
        )
        applied = CounterMetricFamily(
            "sol_agent_predictions",
            "Predictions applied, by source and reason",
            labels=["agent", "source", "reason"],
        )
        model_cpu = CounterMetricFamily(
            "sol_agent_model_cpu_seconds", "CPU seconds of the model side", labels=["agent"]
        )
        names = sorted({r.name for r in list(m._tracked)} | set(m._retired))
        for name in names:
            for callback, n in sorted(m.ticks(name).items()):
                ticks.add_metric([name, callback], n)
            for (source, reason), n in sorted(m.applied(name).items()):
                applied.add_metric([name, source, reason], n)
            cpu_s = m._retired[name].model_cpu_s if name in m._retired else 0.0
            cpu_s += sum(r.model_cpu_s for r in list(m._tracked) if r.name == name)
            model_cpu.add_metric([name], cpu_s)
        yield ticks
        yield applied
        yield model_cpu

        latency = HistogramMetricFamily(
            "sol_agent_callback_seconds", "Callback latency", labels=["agent", "callback"]
        )
        cpu = CounterMetricFamily(
            "sol_agent_cpu_seconds",
            "CPU seconds of the agent's callbacks and the runtime's bookkeeping around them",
            labels=["agent", "side"],
        )
        for name, stats in sorted(list(m._stats.items())):
            for callback in stats.callbacks():
                buckets, total = stats.histogram(callback)
                latency.add_metric([name, callback], buckets, total)
            for side, seconds in sorted(list(stats.cpu.items())):
                cpu.add_metric([name, side], seconds)
        yield latency
        yield cpu

        if m.actuation_source is not None:
            writes = CounterMetricFamily(
                "sol_actuation_writes",
                "Host writes by agent and outcome (written, failed, rejected, dry_run, unchanged)",
                labels=["agent", "outcome"],
            )
            try:
                counts = m.actuation_source()
            except Exception:  # a backend bug must not break the scrape
                counts = {}
            for owner, by_outcome in sorted(counts.items()):
                for outcome, n in sorted(by_outcome.items()):
                    writes.add_metric([owner, outcome], n)
            yield writes
        if m.journal_source is not None:
            journal = GaugeMetricFamily("sol_journal_open_records", "Undo-journal records not yet restored")
            try:
                journal.add_metric([], m.journal_source())
            except Exception:
                journal.add_metric([], float("nan"))
            yield journal

    def describe(self) -> Iterator[Any]:
        return iter(())
