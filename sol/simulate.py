"""Driving a simulation: the configured agents under the virtual-time executor against a
scenario's simulated node, as ``sol sim`` runs it.

``Simulation`` is one node: built from a config and a scenario, run once, it returns a
``NodeRun`` (per-agent summaries, the node's ground truth, how fast it ran) and prints
nothing, so a fleet simulation can run one per node and lay the results side by side.
``run_simulation`` is ``sol sim``: one ``Simulation`` with a progress bar, printed as tables
or as one JSON object.

A run lasts ``--duration`` of simulated time, else the scenario's own default (``sol sim
--list-scenarios``); a recorded trace shorter than the run starts over at its end, and the
run says so. The simulator (numpy and more) is imported only when a simulation is built.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from sol.config import Config
from sol.log import get_logger
from sol.registry import Registry
from sol.summary import AgentSummary, format_duration, render_agents, summarize_agents

if TYPE_CHECKING:
    from sol.runtime.virtual import VirtualExecutor
    from sol.sim.scenarios import Replay, Scenario

__all__ = ["NodeRun", "ProgressBar", "Simulation", "resolve_scenario", "run_simulation"]


def resolve_scenario(config: Config, scenario: str | None = None, trace: Path | None = None) -> Scenario:
    """``--trace`` if given, else ``--scenario``, else the config's ``[sim] scenario``."""
    from sol.sim.scenarios import get_scenario, scenario_from_trace

    if trace is not None:
        return scenario_from_trace(trace)
    return get_scenario(scenario or config.sim.scenario)


@dataclass(frozen=True, slots=True)
class NodeRun:
    """What one simulated node's run did."""

    scenario: str
    description: str
    duration_s: float
    #: the duration came from the scenario (no ``--duration``)
    default_duration: bool
    seed: int
    #: seconds of recorded trace the node replays (it starts over at its end); None: synthetic
    trace_span_s: float | None
    #: how many times the run went through that trace, when more than once
    trace_loops: float | None
    agents: list[AgentSummary]
    #: agents configured but left out (unknown, failed to import or construct)
    problems: list[str]
    ground_truth: dict[str, float]
    events: int
    wall_s: float
    plots: list[Path]

    @property
    def speedup(self) -> float | None:
        return self.duration_s / self.wall_s if self.wall_s > 0 else None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; a figure that is not finite (an unbounded ratio) is null."""
        return {
            "scenario": self.scenario,
            "description": self.description,
            "duration_s": self.duration_s,
            "default_duration": self.default_duration,
            "seed": self.seed,
            "trace_span_s": self.trace_span_s,
            "trace_loops": self.trace_loops,
            "agents": [a.to_json() for a in self.agents],
            "problems": list(self.problems),
            "ground_truth": {k: (v if math.isfinite(v) else None) for k, v in self.ground_truth.items()},
            "events": self.events,
            "wall_s": self.wall_s,
            "speedup": self.speedup,
            "plots": [str(p) for p in self.plots],
        }


class Simulation:
    """One simulated node and the configured agents, ready to run once.

    Building it loads the scenario (its trace, if any) and instantiates the agents; nothing
    is logged until ``run``, so a caller can first configure logging with ``elapsed`` as the
    clock (``sol.log.configure(clock=sim.elapsed)``).
    """

    def __init__(
        self,
        config: Config,
        scenario: Scenario,
        *,
        duration: float | None = None,
        seed: int | None = None,
        registry: Registry | None = None,
    ) -> None:
        from sol.daemon import build_specs

        self.config = config if seed is None else replace(config, sim=replace(config.sim, seed=seed))
        self.scenario = scenario
        self.default_duration = duration is None
        self.duration = scenario.duration_s if duration is None else duration
        if not self.duration > 0:
            raise ValueError(f"scenario {scenario.name!r} has no default duration; give --duration")
        prepared = build_specs(self.config, registry or Registry())
        self.specs = prepared.specs
        self.problems = prepared.problems
        self.replay: Replay = scenario.replay(self.config.sim.seed, clock_start=0.0)
        self.executor: VirtualExecutor | None = None

    @property
    def trace_loops(self) -> float | None:
        """How many times the run will go through its trace, when more than once."""
        return self.replay.loops(self.duration)

    def elapsed(self) -> float:
        """Simulated seconds since the run began (0 before it does)."""
        ex = self.executor
        return ex.vclock.now() - ex.start_time if ex is not None else 0.0

    def run(self, *, progress: Callable[[float], None] | None = None, plots: Path | None = None) -> NodeRun:
        """Run the whole duration, stop every agent (clean-up, restore), then close the node."""
        from sol.runtime.virtual import VirtualExecutor

        if self.executor is not None:
            raise RuntimeError("a Simulation runs once; build another")
        log = get_logger(component="sim")
        for problem in self.problems:
            log.error("agent.unavailable", problem=problem)
        node = self.replay.node
        self.executor = executor = VirtualExecutor(self.specs, backend=node, log=get_logger())
        try:
            result = executor.run(self.duration, progress=progress)
            truth = dict(node.ground_truth())
            written: list[Path] = []
            if plots is not None:
                from sol.sim.report import write_plots

                written = write_plots(node, plots)
        finally:
            node.close()
        info = self.scenario.info
        return NodeRun(
            scenario=info.name,
            description=info.description,
            duration_s=self.duration,
            default_duration=self.default_duration,
            seed=self.config.sim.seed,
            trace_span_s=self.replay.trace_span_s,
            trace_loops=self.trace_loops,
            agents=summarize_agents(executor.runners, executor.metrics),
            problems=list(self.problems),
            ground_truth=truth,
            events=result.events,
            wall_s=result.wall_s,
            plots=written,
        )


def run_simulation(
    config: Config,
    *,
    duration: float | None = None,
    scenario: str | None = None,
    trace: Path | None = None,
    seed: int | None = None,
    plots: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    progress: bool = True,
    as_json: bool = False,
    registry: Registry | None = None,
    configure_log: Callable[[Callable[[], float]], None] | None = None,
) -> int:
    """``sol sim``: returns the exit status. ``configure_log`` is called with the run's
    simulated clock before anything is logged, so events carry simulated time."""
    sim = Simulation(
        config, resolve_scenario(config, scenario, trace), duration=duration, seed=seed, registry=registry
    )
    if configure_log is not None:
        configure_log(sim.elapsed)
    if not as_json:
        print(_header(sim), file=out)
        loops = sim.trace_loops
        if loops is not None:
            resampled = _resampled_faas(sim.replay.node)
            print(_loop_note(sim.replay.trace_span_s or 0.0, sim.duration, loops, resampled), file=out)
        out.flush()
    bar = ProgressBar(sim.duration, err) if progress else None
    run = sim.run(progress=bar.update if bar else None, plots=plots)
    if bar:
        bar.done()
    if as_json:
        print(json.dumps(run.to_json(), indent=2, allow_nan=False), file=out)
    else:
        print(render_node_run(run), file=out)
    return 0


def render_node_run(run: NodeRun) -> str:
    """The agents, the node's ground truth, and how fast the run went."""
    from sol.sim.report import render_summary

    speed = f"{run.speedup:,.0f}x real time" if run.speedup is not None else "instantly"
    lines = [
        render_agents(run.agents),
        "",
        render_summary(run.ground_truth),
        "",
        f"simulated {format_duration(run.duration_s)} in {run.wall_s:.2f} s wall "
        f"({speed}, {run.events:,} events)",
    ]
    lines.extend(f"plot: {path}" for path in run.plots)
    return "\n".join(lines)


def _header(sim: Simulation) -> str:
    info = sim.scenario.info
    where = "the scenario's default; --duration to change" if sim.default_duration else "--duration"
    return (
        f"scenario {info.name}: {info.description}\n"
        f"{format_duration(sim.duration)} of simulated time ({where}), seed {sim.config.sim.seed}"
    )


def _resampled_faas(node: Any) -> bool:
    """Whether the node's FaaS invocations come from a trace drawn again every pass."""
    from sol.sim.faas import ResampledTrace

    faas = node.facilities.get("faas")
    return isinstance(getattr(faas, "stream", None), ResampledTrace)


def _loop_note(span: float, duration: float, loops: float, resampled: bool = False) -> str:
    head = (
        f"note: the trace covers {format_duration(span)}, "
        f"shorter than this {format_duration(duration)} run: "
    )
    if resampled:
        # sol/sim/faas.py ResampledTrace: the recording once, then each later pass drawn again
        return head + (
            f"it runs {loops:.3g} passes, the first the recording, each later one drawn again from it "
            "(per-minute counts resampled, never an exact repeat)"
        )
    return head + f"it is replayed {loops:.3g} times, starting over at its end"


class ProgressBar:
    """``[####......]  40% 24m`` on a terminal (redrawn in place), every 25 % otherwise."""

    def __init__(self, total: float, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.last = -1

    def update(self, done: float) -> None:
        pct = int(100 * done / self.total) if self.total else 100
        if pct == self.last or (not self.tty and pct % 25):
            return
        self.last = pct
        filled = pct * 30 // 100
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {pct:3d}% {format_duration(done)}"
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        self.update(self.total)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def render_scenarios() -> str:
    """``sol sim --list-scenarios``: name, default duration, description."""
    from sol.sim.scenarios import list_scenarios

    rows = [(i.name, format_duration(i.duration_s), i.description) for i in list_scenarios()]
    width = max(len(r[0]) for r in rows)
    dur = max(len(r[1]) for r in rows)
    return "\n".join(f"{n:<{width}}  {d:>{dur}}  {text}" for n, d, text in rows)
