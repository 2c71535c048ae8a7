"""A simulated node behind a FaultBackend, for the failpoint tests."""

from __future__ import annotations

from sol.fault_injection.failpoints import FaultBackend, Injector
from sol.fault_injection.faults import Fault, Timeline
from sol.runtime.clock import VirtualClock
from sol.safety.journal import UndoJournal
from sol.sim.scenarios import get_scenario

#: A short timeline for unit tests: the fault is active over [10, 30).
UNIT_TIMELINE = Timeline(duration=60.0, onset=10.0, length=20.0, surge=1.0)


class Rig:
    """A simulated node behind a FaultBackend, with a clock the test moves."""

    def __init__(self, fault: Fault | None, *, safeguards: bool, journal: UndoJournal | None) -> None:
        self.node = get_scenario("default").build(1)
        self.clock = VirtualClock(0.0)
        self.injector = Injector(fault, UNIT_TIMELINE, seed=1)
        self.backend = FaultBackend(
            self.node, self.injector, owner="tester", safeguards=safeguards, journal=journal
        )
        self.backend.bind_clock(self.clock)
        self.journal = journal

    def at(self, t: float) -> Rig:
        self.clock.set(t)
        self.backend.advance(t)
        return self
