"""The matrix: every agent x every fault, with safeguards on and off (the SOL paper's evaluation).

Agents come from the registry (built-ins and ``sol.agents`` entry-point plugins), so an agent
someone else registers appears here with no change to the harness. Each (agent, seed) gets its
two fault-free baselines once; each (agent, fault, seed) its two faulty runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sol.fault_injection.faults import FAULTS, Fault, Timeline
from sol.fault_injection.harness import Cell, clean_runs, harm_verdict, run_cell
from sol.fault_injection.profiles import AgentProfile, profile_for
from sol.registry import Registry
from sol.sdk import Agent

__all__ = ["Matrix", "Row", "load_agents", "run_matrix"]


def load_agents(
    names: Sequence[str] | None = None, registry: Registry | None = None
) -> tuple[dict[str, type[Agent]], list[str]]:
    """The agent classes to run (all that load, or ``names``), and the problems met loading them.

    Unknown names raise :class:`~sol.registry.UnknownAgent` (listing the known ones).
    """
    registry = registry or Registry()
    problems = list(registry.problems)
    if names:
        out: dict[str, type[Agent]] = {}
        for name in names:
            out[name] = registry.get(name)
        return out, problems
    classes = registry.classes()
    return classes, list(registry.problems)


def _mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if got and len(got) == len(values) else None


def _worst(values: Sequence[float | None]) -> float | None:
    """The slowest time to safe over seeds (``None`` if any seed never got there)."""
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


@dataclass(slots=True)
class Row:
    """One line of the matrix: an agent under a fault, over every seed."""

    agent: str
    fault: Fault
    profile: AgentProfile
    cells: list[Cell]
    setup_error: str | None = None

    @property
    def exercised(self) -> bool:
        return any(c.exercised for c in self.cells)

    @property
    def violations(self) -> list[str]:
        if self.setup_error is not None:
            return [f"[setup]: {self.setup_error}"]
        out: list[str] = []
        for c in self.cells:
            seed = f"seed {c.on.seed} " if len(self.cells) > 1 else ""
            out += [f"{seed}{v}" for v in c.violations]
        return out

    @property
    def passed(self) -> bool:
        return not self.violations

    def harm(self) -> tuple[float | None, float | None, float | None, float | None]:
        per = [c.harm() for c in self.cells]
        if not per:
            return None, None, None, None
        cols = list(zip(*per, strict=True))
        return _mean(cols[0]), _mean(cols[1]), _mean(cols[2]), _mean(cols[3])

    def benefit_kept(self) -> tuple[float | None, float | None]:
        per = [c.benefit_kept() for c in self.cells]
        if not per:
            return None, None
        return _mean([p[0] for p in per]), _mean([p[1] for p in per])

    def time_to_safe(self) -> tuple[float | None, float | None]:
        per = [c.time_to_safe() for c in self.cells]
        return _worst([p[0] for p in per]), _worst([p[1] for p in per])

    def environment_harm(self) -> float:
        per = [c.environment_harm() for c in self.cells]
        return statistics.fmean(per) if per else 0.0

    def daemon_damage(self) -> tuple[float | None, float | None]:
        """(on, off) of the fault's ``daemon_metric``, over seeds; None for a node fault."""
        per = [c.daemon_damage() for c in self.cells]
        return _mean([p[0] for p in per]), _mean([p[1] for p in per])

    def verdict(self) -> str:
        if self.setup_error is not None:
            return "setup failed"
        if not self.exercised:
            return "not exercised"
        if self.fault.daemon_metric is not None:
            return harm_verdict((0.0, 0.0, *self.daemon_damage()))
        return harm_verdict(self.harm(), self.environment_harm())

    def response(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for c in self.cells:
            for k, n in c.response().items():
                total[k] = total.get(k, 0) + n
        return total

    def notes(self) -> list[str]:
        out: list[str] = []
        if self.setup_error is not None:
            return out
        if not self.exercised:
            if self.fault.boundary == "node":
                out.append(
                    f"the agent uses no {self.fault.facility} facility"
                    if self.fault.facility != "*"
                    else "the agent uses no facility"
                )
            elif self.fault.mechanism == "adversarial" and self.profile.aggressive is None:
                out.append("no aggressive decision known (declare fault_aggressive())")
            else:
                out.append(f"the agent never crossed the {self.fault.boundary} failpoint")
            return out
        if any(c.on.state == "quarantined" for c in self.cells):
            out.append("quarantined")
        if self.fault.daemon_metric is not None:
            on, off = self.daemon_damage()
            if on is not None and off is not None:
                out.append(f"daemon {self.fault.daemon_metric} on {on:.3g} | off {off:.3g}")
        if any(c.on.left_open for c in self.cells):
            out.append("restore failed while the fault lasted; `sol restore` put it back after")
        env = self.environment_harm()
        if self.fault.boundary == "node" and self.profile.harm_metric and abs(env) > 1e-9:
            out.append(f"with no agent the fault itself adds {env:+.4g}")
        return out

    def to_json(self) -> dict[str, Any]:
        clean_on, clean_off, on, off = self.harm()
        kept_on, kept_off = self.benefit_kept()
        safe_on, safe_off = self.time_to_safe()
        return {
            "agent": self.agent,
            "fault": self.fault.name,
            "category": self.fault.category,
            "boundary": self.fault.boundary,
            "params": dict(self.fault.params),
            "exercised": self.exercised,
            "passed": self.passed,
            "violations": self.violations,
            "time_to_safe_s": {"on": safe_on, "off": safe_off},
            "harm_metric": self.profile.harm_metric,
            "harm": {
                "clean_on": clean_on,
                "clean_off": clean_off,
                "on": on,
                "off": off,
                "no_agent_fault_adds": self.environment_harm(),
            },
            "verdict": self.verdict(),
            "benefit_metric": self.profile.benefit_metric,
            "benefit_kept": {"on": kept_on, "off": kept_off},
            "response": self.response(),
            "daemon_damage": dict(
                zip(("metric", "on", "off"), (self.fault.daemon_metric, *self.daemon_damage()), strict=True)
            ),
            "states": {"on": [c.on.state for c in self.cells], "off": [c.off.state for c in self.cells]},
            "injections": {
                "on": [c.on.injections for c in self.cells],
                "off": [c.off.injections for c in self.cells],
            },
            "notes": self.notes(),
            "seeds": [c.on.seed for c in self.cells],
            "wall_s": sum(c.on.wall_s + c.off.wall_s for c in self.cells),
        }


@dataclass(slots=True)
class Matrix:
    rows: list[Row]
    timeline: Timeline
    seeds: tuple[int, ...]
    profiles: dict[str, AgentProfile] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def agents(self) -> list[str]:
        return list(dict.fromkeys(r.agent for r in self.rows))

    def to_json(self) -> dict[str, Any]:
        t = self.timeline
        return {
            "timeline": {
                "duration_s": t.duration,
                "onset_s": t.onset,
                "length_s": t.length,
                "surge": t.surge,
            },
            "seeds": list(self.seeds),
            "agents": {
                name: {
                    "scenario": p.scenario,
                    "harm_metric": p.harm_metric,
                    "benefit_metric": p.benefit_metric,
                    "origin": dict(p.origin or {}),
                }
                for name, p in self.profiles.items()
            },
            "passed": self.passed,
            "problems": list(self.problems),
            "wall_s": self.wall_s,
            "rows": [r.to_json() for r in self.rows],
        }


def run_matrix(
    agents: Mapping[str, type[Agent]],
    faults: Sequence[Fault] | None = None,
    *,
    seeds: Sequence[int] = (1,),
    timeline: Timeline | None = None,
    progress: Callable[[str], None] | None = None,
    problems: Sequence[str] = (),
) -> Matrix:
    import time

    wall0 = time.perf_counter()
    faults = list(faults) if faults is not None else list(FAULTS.values())
    timeline = timeline or Timeline()
    matrix = Matrix([], timeline, tuple(seeds), problems=list(problems))
    for name, cls in agents.items():
        profile = profile_for(cls)
        matrix.profiles[name] = profile
        rows = {f.name: Row(name, f, profile, []) for f in faults}
        for seed in seeds:
            baselines = clean_runs(cls, seed=seed, timeline=timeline, profile=profile)
            setup_error = baselines[0].setup_error or baselines[1].setup_error
            for fault in faults:
                row = rows[fault.name]
                if setup_error is not None:
                    row.setup_error = setup_error
                    continue
                if progress is not None:
                    progress(f"{name} x {fault.name} (seed {seed})")
                cell = run_cell(
                    cls, fault, seed=seed, timeline=timeline, profile=profile, baselines=baselines
                )
                cell.compact()
                row.cells.append(cell)
            for clean in baselines:
                clean.compact()
        matrix.rows += rows.values()
    matrix.wall_s = time.perf_counter() - wall0
    return matrix
