"""One agent at a time in a running LiveExecutor: remove, replace, pause, resume, dry-run.

What each must guarantee (DESIGN §4.7 for one agent): its lanes end, ``clean_up()`` runs once,
its undo records are restored and nobody else's, the other agents do not notice, and no lane
of it starts after the stop began (the watchdog is the other party in that race).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sold_helpers import FAST, KnobBackend, Other, Ticker, rmtree, short_tmp, wait_until

from sol import Prediction
from sol.actuators.restorers import default_restorers
from sol.backend import NullBackend
from sol.log import get_logger
from sol.runtime.base import AgentSpec
from sol.runtime.live import AgentControlError, LiveExecutor
from sol.safety.journal import UndoJournal

pytestmark = pytest.mark.live


class Hanger(Ticker):
    """Its act() hangs while ``gate`` is clear (after ``after`` calls)."""

    name = "hanger"
    instances: list[Ticker] = []  # type: ignore[misc]

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.after = 3
        self.in_act = threading.Event()

    def act(self, prediction: Prediction) -> None:
        super().act(prediction)
        if self.acts > self.after and not self.gate.is_set():
            self.in_act.set()
            self.gate.wait(10)


@pytest.fixture
def root() -> Iterator[Path]:
    for cls in (Ticker, Other, Hanger):
        cls.instances.clear()
    path = short_tmp()
    yield path
    rmtree(path)


def executor(*agents: Any, backend: Any = None, journal: Any = None) -> LiveExecutor:
    ex = LiveExecutor(
        [AgentSpec(a) for a in agents],
        backend=backend or NullBackend(),
        log=get_logger(),
        journal=journal,
        restorers=default_restorers(),
    )
    ex.start()
    return ex


def lane_threads(ex: LiveExecutor, name: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(f"sol-{name}-") and t.is_alive()]


def test_remove_restores_only_that_agents_records_and_others_keep_running(root: Path) -> None:
    mine, theirs = root / "mine", root / "theirs"
    mine.write_text("a-original\n")
    theirs.write_text("b-original\n")
    with UndoJournal.open(root / "undo.journal") as journal:
        ex = executor(Ticker(), Other(), journal=journal)
        try:
            journal.record("ticker", "file", str(mine), "a-original\n")
            mine.write_text("changed\n")
            journal.record("other", "file", str(theirs), "b-original\n")
            theirs.write_text("changed\n")
            other = next(r for r in ex.runners if r.name == "other")
            ex.remove_agent("ticker")
            assert mine.read_text() == "a-original\n" and theirs.read_text() == "changed\n"
            assert Ticker.instances[0].cleaned == 1
            assert [r.name for r in ex.runners] == ["other"] and ex.runners[0] is other
            assert lane_threads(ex, "ticker") == []
            acts = Other.instances[0].acts
            wait_until(lambda: Other.instances[0].acts > acts + 3)
            with pytest.raises(AgentControlError, match="no agent 'ticker'"):
                ex.pause_agent("ticker")
        finally:
            ex.stop()
        assert theirs.read_text() == "b-original\n"
        assert Ticker.instances[0].cleaned == 1  # not twice: it was gone before the stop


def test_replace_starts_the_new_spec_in_the_same_slot_with_counters_kept(root: Path) -> None:
    ex = executor(Ticker(), Other())
    try:
        wait_until(lambda: Ticker.instances[0].acts > 3)
        ticks_before = sum(ex.metrics.ticks("ticker").values())
        slower = AgentSpec(Ticker(), schedule=replace(FAST, act_every=0.05))
        runner = ex.replace_agent(slower)
        assert [r.name for r in ex.runners] == ["ticker", "other"] and ex.runners[0] is runner
        assert runner.schedule.act_every == 0.05 and Ticker.instances[0].cleaned == 1
        wait_until(lambda: Ticker.instances[1].acts > 2)
        assert sum(ex.metrics.ticks("ticker").values()) > ticks_before
        with pytest.raises(AgentControlError, match="already runs"):
            ex.add_agent(AgentSpec(Ticker()))
    finally:
        ex.stop()
    assert [t.cleaned for t in Ticker.instances[:2]] == [1, 1]


def test_pause_keeps_the_spec_dry_run_applies_on_resume_and_quarantined_agents_resume(root: Path) -> None:
    ex = executor(Ticker())
    try:
        ex.pause_agent("ticker")
        assert ex.runners[0].state == "paused" and Ticker.instances[0].cleaned == 1
        assert lane_threads(ex, "ticker") == []
        ex.set_dry_run("ticker", True)
        assert ex.runners[0].state == "paused" and ex.spec("ticker").dry_run is True
        ex.resume_agent("ticker")
        assert ex.runners[0].state == "running" and ex.spec("ticker").dry_run is True
        ex.runners[0].quarantine("test")
        with pytest.raises(AgentControlError, match="quarantined"):
            ex.pause_agent("ticker")
        assert ex.resume_agent("ticker").state == "running"
        assert ex.loops_alive()
    finally:
        ex.stop()
    assert all(t.cleaned == 1 for t in Ticker.instances)


def test_an_agent_whose_old_callback_still_hangs_is_not_restarted_until_it_returns(root: Path) -> None:
    knob = root / "knob"
    knob.write_text("x\n")
    with UndoJournal.open(root / "undo.journal") as journal:
        backend = KnobBackend(journal, knob)
        hanger = Hanger()
        ex = executor(hanger, backend=backend, journal=journal)
        try:
            assert hanger.in_act.wait(5)
            ex.pause_agent("hanger")  # its act() is still inside the call
            assert "hanger" in backend.revoked
            with pytest.raises(AgentControlError, match="still running"):
                ex.resume_agent("hanger")
            hanger.gate.set()
            wait_until(lambda: not lane_threads(ex, "hanger"), what="the hung lane to end")
            assert ex.resume_agent("hanger").state == "running"
            assert "hanger" not in backend.revoked
        finally:
            hanger.gate.set()
            ex.stop()


def test_no_lane_starts_after_a_stop_began_even_when_the_watchdog_replaces_a_hung_act(root: Path) -> None:
    spec_schedule = replace(FAST, callback_timeout=0.05)
    hanger = Hanger()
    ex = LiveExecutor([AgentSpec(hanger, schedule=spec_schedule)], backend=NullBackend(), log=get_logger())
    ex.start()
    try:
        assert hanger.in_act.wait(5)
        time.sleep(0.02)  # race the watchdog, which replaces the actuator lane at ~50 ms
        ex.pause_agent("hanger")
        time.sleep(0.3)
        alive = lane_threads(ex, "hanger")
        assert alive in ([], ["sol-hanger-actuator"]), alive  # at most the hung call itself
        hanger.gate.set()
        wait_until(lambda: not lane_threads(ex, "hanger"), what="every lane of the paused agent to end")
    finally:
        hanger.gate.set()
        ex.stop()


def test_concurrent_control_operations_leave_every_instance_cleaned_exactly_once(root: Path) -> None:
    ex = executor(Ticker(), Other())
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(name: str) -> None:
        ops = [
            lambda: ex.pause_agent(name),
            lambda: ex.resume_agent(name),
            lambda: ex.set_dry_run(name, True),
            lambda: ex.set_dry_run(name, False),
        ]
        i = 0
        while not stop.is_set():
            try:
                ops[i % len(ops)]()
            except AgentControlError:
                pass
            except BaseException as exc:
                errors.append(exc)
                return
            i += 1

    workers = [threading.Thread(target=churn, args=(n,)) for n in ("ticker", "other", "ticker")]
    for w in workers:
        w.start()
    time.sleep(1.0)
    stop.set()
    for w in workers:
        w.join(10)
    assert not errors, errors
    ex.stop()
    instances = Ticker.instances + Other.instances
    assert len(instances) > 4
    assert all(t.cleaned == t.setups for t in instances), [(t.setups, t.cleaned) for t in instances]
    assert lane_threads(ex, "ticker") == [] and lane_threads(ex, "other") == []


def test_stalled_loops_names_a_lane_stuck_outside_any_callback(root: Path) -> None:
    ex = executor(Ticker())
    try:
        assert ex.stalled_loops(0.2) == []
        with ex.runners[0].lock:
            wait_until(lambda: bool(ex.stalled_loops(0.2)), what="a stall to be seen")
            assert any(s.startswith("ticker/") for s in ex.stalled_loops(0.2))
        wait_until(lambda: ex.stalled_loops(0.2) == [], what="recovery")
    finally:
        ex.stop()
    assert ex.stalled_loops() != []  # stopped: the watchdog is gone


class _Unbindable(NullBackend):
    def actuators_for(self, owner: str, *, dry_run: bool) -> Any:
        if owner == "ticker":
            raise ValueError("no undo journal: ticker can only run in dry-run")
        return self.actuators


def test_an_agent_whose_actuators_cannot_be_bound_fails_alone(root: Path) -> None:
    ex = executor(Ticker(), Other(), backend=_Unbindable())
    try:
        states = {r.name: (r.state, r.state_reason) for r in ex.runners}
        assert states["ticker"][0] == "failed" and "no undo journal" in str(states["ticker"][1])
        assert states["other"] == ("running", None)
        wait_until(lambda: Other.instances[0].acts > 2)
        assert ex.loops_alive()
    finally:
        ex.stop()
