"""What both executors share: agent specs, context building, and the stop/rollback path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sol.backend import Backend
from sol.metrics import RuntimeMetrics
from sol.runtime.runner import AgentRunner, Invoker
from sol.sdk import Agent, Clock, Context, NoParams, Schedule

RollbackPolicy = Literal["auto", "not_on_exit"]


@dataclass(slots=True)
class AgentSpec:
    """One agent to run: the instance, its effective schedule and parameters."""

    agent: Agent
    schedule: Schedule | None = None
    params: Any = field(default_factory=NoParams)
    dry_run: bool = False

    @property
    def effective_schedule(self) -> Schedule:
        return self.schedule if self.schedule is not None else type(self.agent).schedule


def actuators_for(backend: Backend, owner: str, dry_run: bool) -> Any:
    """The actuators one agent may use: bound to its name (undo records) and dry-run flag.

    A backend that binds actuators per agent exposes ``actuators_for(owner, dry_run=...)``;
    otherwise every agent shares ``backend.actuators``.
    """
    bind: Callable[..., Any] | None = getattr(backend, "actuators_for", None)
    if bind is not None:
        return bind(owner, dry_run=dry_run)
    return backend.actuators


class ExecutorBase:
    """Builds runners and contexts; owns the stop/rollback sequence (guarantee 7)."""

    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        backend: Backend,
        clock: Clock,
        log: Any,
        metrics: RuntimeMetrics | None = None,
        journal: Any = None,
        restorers: Any = None,
        state_dir: Path | None = None,
        rollback: RollbackPolicy = "auto",
        record: bool = False,
    ) -> None:
        names = [s.agent.name for s in specs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique, repeated: {dupes}")
        for s in specs:
            if not s.agent.name:
                raise ValueError(f"{type(s.agent).__name__} has no `name`")
        self.specs = list(specs)
        self.backend = backend
        self.clock = clock
        self.log = log
        self.metrics = metrics or RuntimeMetrics()
        self.journal = journal
        self.restorers = restorers
        self.state_dir = state_dir
        self.rollback: RollbackPolicy = rollback
        self.record = record
        self.runners: list[AgentRunner] = []

    def _restore_fn(self) -> Callable[[str], Any] | None:
        journal, restorers, backend = self.journal, self.restorers, self.backend
        if journal is None:
            return None

        def restore(owner: str) -> Any:
            # Revoke first: a write still in flight on a hung thread must not land after
            # the restore and leave the host changed with no open undo record.
            revoke: Callable[[str], None] | None = getattr(backend, "revoke", None)
            if revoke is not None:
                revoke(owner)
            try:
                return journal.restore(restorers or {}, owner=owner, log=self.log)
            finally:
                # the restorers wrote knobs behind the backend's back: drop what it cached
                restored: Callable[[str], None] | None = getattr(backend, "restored", None)
                if restored is not None:
                    restored(owner)

        return restore

    def _make_runner(self, spec: AgentSpec, invoker: Invoker) -> AgentRunner:
        name = spec.agent.name
        return AgentRunner(
            spec.agent,
            spec.effective_schedule,
            clock=self.clock,
            log=self.log.bind(agent=name),
            metrics=self.metrics,
            invoker=invoker,
            restore=self._restore_fn(),
            record=self.record,
        )

    def _context(self, spec: AgentSpec, runner: AgentRunner) -> Context:
        state_dir = self.state_dir / "agents" / spec.agent.name if self.state_dir else Path(".")
        if self.state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Context(
            clock=self.clock,
            log=runner.log,
            sensors=self.backend.sensors,
            actuators=actuators_for(self.backend, spec.agent.name, spec.dry_run),
            config=spec.params,
            state_dir=state_dir,
            metrics=runner.agent_metrics,
        )

    def _stop_all(self) -> None:
        restore = self.rollback == "auto"
        for runner in self.runners:
            runner.stop(restore=restore)
        if self.journal is not None and not restore:
            # not_on_exit: keep the settings; the records are closed so no later start or
            # `sol restore` rolls them back behind the operator's back.
            self.journal.release()
        self.log.info("runtime.stopped", rollback=self.rollback)
