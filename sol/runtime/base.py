"""What both executors share: agent specs, context building, and the stop/rollback path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sol.backend import Backend
from sol.facilities import Actuators
from sol.hints import HintView
from sol.metrics import RuntimeMetrics
from sol.notices import NoticeBoard
from sol.runtime.memory import MIB, MemoryGuard, MemoryLimit, release_state
from sol.runtime.runner import AgentRunner, Invoker
from sol.sdk import Agent, Clock, Context, NoParams, Schedule

if TYPE_CHECKING:
    from sol.safety.journal import UndoJournal

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


def actuators_for(backend: Backend, owner: str, dry_run: bool) -> Actuators:
    """The actuators one agent may use: bound to its name (undo records) and dry-run flag."""
    return backend.actuators_for(owner, dry_run=dry_run)


class ExecutorBase:
    """Builds runners and contexts; owns the stop/rollback sequence (guarantee 7).

    ``refuse_threads``: a thread started inside an agent callback is refused
    (:mod:`sol.runtime.isolation`); off only for the fault matrix's "safeguards off" runs.
    ``memory_limit``: watch the process's memory and quarantine the agent that grows it
    towards the limit (:mod:`sol.runtime.memory`); None: not watched.
    """

    def __init__(
        self,
        specs: Sequence[AgentSpec],
        *,
        backend: Backend,
        clock: Clock,
        log: Any,
        metrics: RuntimeMetrics | None = None,
        journal: UndoJournal | None = None,
        restorers: Any = None,
        state_dir: Path | None = None,
        rollback: RollbackPolicy = "auto",
        record: bool = False,
        refuse_threads: bool = True,
        memory_limit: MemoryLimit | None = None,
        hints: HintView | None = None,
        notices: NoticeBoard | None = None,
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
        self.refuse_threads = refuse_threads
        self.memory = MemoryGuard(memory_limit, log=log) if memory_limit is not None else None
        self.runners: list[AgentRunner] = []
        #: the workloads' hints every agent reads, and the board its notices go to (a board of
        #: the runtime's own, on its clock, when the daemon gives none)
        self.hints = hints if hints is not None else HintView()
        self.notices = notices if notices is not None else NoticeBoard(clock.now)

    def _restore_fn(self) -> Callable[[str], Any] | None:
        journal, restorers, backend = self.journal, self.restorers, self.backend
        if journal is None:
            return None

        def restore(owner: str) -> Any:
            # Revoke first: a write still in flight on a hung thread must not land after
            # the restore and leave the host changed with no open undo record.
            backend.revoke(owner)
            try:
                return journal.restore(restorers or {}, owner=owner, log=self.log)
            finally:
                # the agent is out of service: its knobs are free for another agent
                journal.release_claims(owner)
                # the restorers wrote knobs behind the backend's back: drop what it cached
                backend.restored(owner)

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
            notices=self.notices.for_agent(name),
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
            hints=self.hints,
            notices=self.notices.for_agent(spec.agent.name),
        )

    def _memory_quarantine(self, runner: AgentRunner, rss: int) -> None:
        """Quarantine the agent the memory guard names, then free what its instance holds."""
        guard = self.memory
        assert guard is not None
        grown = guard.attributed(runner.name)
        runner.quarantine(
            f"memory: the daemon's RSS reached {rss / MIB:.0f} MiB of its {guard.limit / MIB:.0f} MiB "
            f"limit and this agent grew it the most ({grown / MIB:.0f} MiB since it passed "
            f"{guard.watch_at / MIB:.0f} MiB)"
        )
        release_state(runner.agent)
        after = guard.read()
        if after < 0:
            after = rss
        runner.log.error(
            "agent.memory_quarantined",
            grown_mib=round(grown / MIB, 1),
            rss_mib=round(rss / MIB, 1),
            rss_after_mib=round(after / MIB, 1),
            limit_mib=round(guard.limit / MIB, 1),
            limit=guard.spec.describe(),
        )
        guard.quarantined(runner.name, after)

    def _stop_all(self) -> None:
        restore = self.rollback == "auto"
        for runner in self.runners:
            runner.stop(restore=restore)
        if self.journal is not None and not restore:
            # not_on_exit: keep the settings; the records are closed so no later start or
            # `sol restore` rolls them back behind the operator's back.
            self.journal.release()
        if self.memory is not None:
            self.memory.close()
        self.log.info("runtime.stopped", rollback=self.rollback)
