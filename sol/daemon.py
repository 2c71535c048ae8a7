"""The daemon: config → backend → journal (crash recovery) → agents under the live executor.

Also the simulation driver behind ``sol sim``: the same agents under the virtual-time
executor against a simulated node, ending with a summary table.
"""

from __future__ import annotations

import collections
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from sol.backend import Backend
from sol.config import Config
from sol.log import get_logger
from sol.registry import Registry, RegistryError
from sol.runtime.base import AgentSpec
from sol.runtime.runner import AgentRunner

#: How often the daemon logs a one-line report of what each agent did.
REPORT_EVERY = 5.0


class DaemonError(RuntimeError):
    """The daemon cannot start; the message tells the operator what to do."""


@dataclass(slots=True)
class Prepared:
    specs: list[AgentSpec]
    problems: list[str]


def build_specs(config: Config, registry: Registry) -> Prepared:
    """Instances of every enabled agent. An agent that fails to load or construct is left
    out with a problem naming it; the others run."""
    specs: list[AgentSpec] = []
    problems = list(registry.problems)
    for ac in config.enabled_agents:
        try:
            cls = registry.get(ac.name)
            agent = cls()
        except RegistryError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:
            problems.append(f"agent {ac.name!r} failed to construct: {type(exc).__name__}: {exc}")
            continue
        specs.append(AgentSpec(agent, ac.schedule, ac.params, ac.dry_run))
    return Prepared(specs, problems)


def build_backend(
    config: Config,
    *,
    clock_start: float,
    scenario: str | None = None,
    trace: Path | None = None,
    journal: Any = None,
    clock: Any = None,
) -> Backend:
    if config.backend == "sim":
        from sol.sim.scenarios import get_scenario, scenario_from_trace

        sc = (
            scenario_from_trace(trace) if trace is not None else get_scenario(scenario or config.sim.scenario)
        )
        node: Backend = sc.build(config.sim.seed, clock_start=clock_start)
        return node
    try:
        from sol.linux import LinuxBackend  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise DaemonError(
            'backend = "linux" is not available in this build (sol.linux is missing); use backend = "sim"'
        ) from exc
    linux: Backend = LinuxBackend.from_config(config, journal=journal, clock=clock)
    return linux


def open_journal(config: Config, log: Any) -> Any:
    """Open the undo journal and roll back what a crashed run left open (guarantee 8)."""
    from sol.actuators.restorers import default_restorers
    from sol.safety.journal import JournalError, UndoJournal

    try:
        journal = UndoJournal.open(config.journal_path, log=log)
    except JournalError as exc:
        raise DaemonError(str(exc)) from exc
    for problem in getattr(journal, "problems", []):
        log.error("journal.problem", problem=problem, journal=str(config.journal_path))
    leftovers = journal.open_records()
    if leftovers:
        log.warning("journal.leftovers", count=len(leftovers), journal=str(config.journal_path))
        report = journal.restore(default_restorers(), log=log)
        log.info("journal.restored", summary=report.summary())
    return journal


# -- sol run --------------------------------------------------------------------------


def run_daemon(
    config: Config,
    *,
    duration: float | None = None,
    registry: Registry | None = None,
    report_every: float = REPORT_EVERY,
    install_signals: bool = True,
    on_ready: Callable[[Any], None] | None = None,
) -> int:
    """Run the live daemon until ``duration`` passes or SIGTERM/SIGINT; returns the exit code."""
    from sol.actuators.restorers import default_restorers
    from sol.runtime.live import LiveExecutor

    log = get_logger(component="daemon")
    registry = registry or Registry()
    prepared = build_specs(config, registry)
    for problem in prepared.problems:
        log.error("agent.unavailable", problem=problem)
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = open_journal(config, log)
    try:
        from sol.runtime.clock import MonotonicClock

        backend = build_backend(config, clock_start=time.monotonic(), journal=journal, clock=MonotonicClock())
        executor = LiveExecutor(
            prepared.specs,
            backend=backend,
            log=get_logger(),
            journal=journal,
            restorers=default_restorers(),
            state_dir=config.state_dir,
            rollback=config.rollback,
        )
        log.info(
            "daemon.starting",
            config=config.source,
            backend=backend.name,
            agents=[s.agent.name for s in prepared.specs],
            journal=str(config.journal_path),
            rollback=config.rollback,
        )
        with _stop_signals(executor.request_stop, enabled=install_signals):
            executor.start()
            if on_ready is not None:
                on_ready(executor)
            deadline = None if duration is None else time.monotonic() + duration
            reporter = _Reporter(executor.runners, backend)
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                wait = report_every if left is None else min(report_every, left)
                if executor.wait(wait):
                    break
                reporter.report(log)
            executor.stop()
            reporter.report(log, final=True)
        backend.close()
    finally:
        journal.close()
    failed = [r.name for r in executor.runners if r.state in ("failed", "quarantined")]
    log.info("daemon.stopped", failed_agents=failed)
    return 0


@contextmanager
def _stop_signals(stop: Callable[[], None], *, enabled: bool) -> Iterator[None]:
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Reporter:
    """Logs, per agent, what it applied since the last report: the story of the run."""

    def __init__(self, runners: Sequence[AgentRunner], backend: Backend) -> None:
        self.runners = runners
        self.backend = backend
        self._seen: dict[str, collections.Counter[str]] = {}

    def report(self, log: Any, final: bool = False) -> None:
        for r in self.runners:
            counts = _prediction_counts(r)
            before = self._seen.get(r.name, collections.Counter())
            delta = counts - before
            self._seen[r.name] = counts
            last = r.last_action
            log.info(
                "agent.final" if final else "agent.report",
                agent=r.name,
                state=r.state,
                # the final line totals the whole run; periodic lines count since the last one
                applied=dict(counts if final else delta),
                last_value=_short(last.value) if last else None,
                last_source=f"{last.source}/{last.reason}"
                if last and last.reason
                else (last.source if last else None),
            )
        truth = self.backend.ground_truth()
        if truth:
            log.info("node.ground_truth", **{k.replace(".", "_"): round(v, 3) for k, v in truth.items()})


def _prediction_counts(r: AgentRunner) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for (source, reason), n in list(r.applied_counts.items()):
        out[f"{source}/{reason}" if reason else source] += n
    return out


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- sol sim --------------------------------------------------------------------------


def run_simulation(
    config: Config,
    *,
    duration: float,
    scenario: str | None = None,
    trace: Path | None = None,
    seed: int | None = None,
    plots: Path | None = None,
    out: TextIO = sys.stdout,
    progress: bool = True,
    registry: Registry | None = None,
) -> int:
    from sol.runtime.virtual import VirtualExecutor
    from sol.sim.report import render_summary, write_plots

    log = get_logger(component="sim")
    registry = registry or Registry()
    prepared = build_specs(config, registry)
    for problem in prepared.problems:
        log.error("agent.unavailable", problem=problem)
    if seed is not None:
        from dataclasses import replace

        config = replace(config, sim=replace(config.sim, seed=seed))
    backend = build_backend(config, clock_start=0.0, scenario=scenario, trace=trace)
    executor = VirtualExecutor(prepared.specs, backend=backend, log=get_logger())
    bar = _ProgressBar(duration, sys.stderr) if progress else None
    result = executor.run(duration, progress=bar.update if bar else None)
    if bar:
        bar.done()
    print(_agents_table(executor.runners), file=out)
    print(file=out)
    print(render_summary(backend.ground_truth()), file=out)
    print(
        f"\nsimulated {_fmt_duration(duration)} in {result.wall_s:.2f} s wall "
        f"({result.speedup:,.0f}x real time, {result.events:,} events)",
        file=out,
    )
    if plots is not None:
        for path in write_plots(backend, plots):
            print(f"plot: {path}", file=out)
    backend.close()
    return 0


def _agents_table(runners: Sequence[AgentRunner]) -> str:
    rows = [("agent", "state", "model", "default", "default reasons", "errors", "mitigations")]
    for r in runners:
        counts = _prediction_counts(r)
        model = sum(v for k, v in counts.items() if k.startswith("model"))
        default = sum(v for k, v in counts.items() if k.startswith("default"))
        reasons = ", ".join(f"{k.split('/', 1)[1]}={v}" for k, v in sorted(counts.items()) if "/" in k) or "-"
        errors = _metric_sum(r, r.metrics.errors)
        mitigations = _metric_sum(r, r.metrics.mitigations)
        rows.append((r.name, r.state, str(model), str(default), reasons, str(errors), str(mitigations)))
    return _table(rows)


def _metric_sum(r: AgentRunner, metric: Any) -> int:
    total = 0.0
    for m in metric.collect():
        for s in m.samples:
            if s.name.endswith("_total") and s.labels.get("agent") == r.name:
                total += s.value
    return int(total)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _ProgressBar:
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
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {pct:3d}% {_fmt_duration(done)}"
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


def _fmt_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.4g}s"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``500ms`` → seconds (ValueError otherwise)."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    t = text.strip().lower()
    for suffix in ("ms", "s", "m", "h", "d"):
        if t.endswith(suffix):
            number, scale = t[: -len(suffix)], units[suffix]
            break
    else:
        number, scale = t, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (examples: 30, 90s, 15m, 2h, 1d)") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"duration must be > 0: {text!r}")
    return value


def status_line(runners: Sequence[AgentRunner]) -> str:
    states: Mapping[str, int] = collections.Counter(r.state for r in runners)
    return ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
