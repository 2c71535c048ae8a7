"""Agents are isolated from each other: a thread an agent starts is refused (it would escape the
CPU budget and the timeouts), and an agent that grows the daemon's memory towards its limit is
quarantined before the daemon is killed (the adversarial run "Agents are not isolated")."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from sol import Agent, Prediction, Schedule
from sol.backend import NullBackend
from sol.log import get_logger
from sol.runtime.base import AgentSpec
from sol.runtime.live import LiveExecutor
from sol.runtime.memory import MIB, MemoryLimit, RssMeter, give_back_freed_memory
from sol.runtime.virtual import VirtualExecutor
from sol.testing import simulate
from tests.agentkit import RecordingAgent

FAST = Schedule(
    collect_every=0.05,
    act_every=0.05,
    prediction_ttl=0.2,
    assess_every=0.5,
    callback_timeout=0.5,
    cpu_budget=2.0,
    max_errors=3,
    error_window=10.0,
)


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        pass


class Escaper(RecordingAgent):
    """Starts a busy thread from one of its callbacks (the adversary's agent)."""

    name = "escaper"
    schedule = FAST
    model_value = 1.0
    default_value = 0.0
    #: only the first instance escapes: a resumed (fresh) instance behaves
    escapes = True

    def __init__(self, where: str = "learn", swallow: bool = False) -> None:
        super().__init__()
        self.where = where
        self.swallow = swallow
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.started = 0

    def _escape(self, where: str) -> None:
        if where != self.where or not type(self).escapes:
            return
        t = threading.Thread(target=_spin, args=(self.stop,), name="escapee", daemon=True)
        try:
            t.start()
            self.started += 1
        except RuntimeError as exc:
            self.errors.append(exc)
            if not self.swallow:
                raise

    def setup(self, ctx: Any) -> None:
        super().setup(ctx)
        self._escape("setup")

    def learn(self, obs: Any) -> None:
        self._escape("learn")

    def act(self, prediction: Prediction) -> None:
        super().act(prediction)
        self._escape("act")


def _escapees() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "escapee"]


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


@pytest.mark.live
@pytest.mark.parametrize(
    ("where", "swallow"),
    [("learn", False), ("act", False), ("learn", True)],
    ids=["model-side", "actuator-side", "agent-catches-the-error"],
)
def test_live_thread_started_by_an_agent_is_refused_counted_and_quarantines(
    where: str, swallow: bool
) -> None:
    agent = Escaper(where, swallow=swallow)
    with capture_logs() as logs:
        ex = LiveExecutor([AgentSpec(agent)], backend=NullBackend(), log=get_logger())
        ex.start()
        try:
            assert _wait(lambda: ex.runners[0].state == "quarantined", 3.0), ex.runners[0].status()
        finally:
            agent.stop.set()
            ex.stop()
    assert agent.started == 0 and not _escapees(), "no agent thread was ever started"
    assert agent.errors and all("started a thread in " + where in str(e) for e in agent.errors)
    refused = [e for e in logs if e["event"] == "agent.thread_refused"]
    assert len(refused) >= FAST.max_errors and refused[0]["callback"] == where
    assert refused[0]["agent"] == "escaper"
    failed = [e for e in logs if e["event"] == "agent.callback_failed"]
    assert len(failed) >= FAST.max_errors and "AgentThreadError" in failed[0]["outcome"]
    assert "errors within" in str(ex.runners[0].state_reason)
    assert agent.cleaned == 1


@pytest.mark.live
def test_live_thread_started_in_setup_fails_the_agent_and_the_other_runs() -> None:
    bad, good = Escaper("setup"), Escaper("nowhere")
    good.name = "good"  # type: ignore[misc]
    ex = LiveExecutor([AgentSpec(bad), AgentSpec(good)], backend=NullBackend(), log=get_logger())
    ex.start()
    time.sleep(0.3)
    bad.stop.set()
    ex.stop()
    states = {r.name: r.state for r in ex.runners}
    assert states == {"escaper": "failed", "good": "stopped"}
    assert "started a thread in setup()" in str(ex.runners[0].state_reason)
    assert good.acts >= 3 and not _escapees()


@pytest.mark.live
def test_runtime_threads_still_start_around_a_refused_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Detached setup, a quarantine from a lane (clean_up inline), a resume that starts fresh
    lanes from the control thread: the runtime's own threads are never refused."""
    agent = Escaper("act")
    ex = LiveExecutor([AgentSpec(agent)], backend=NullBackend(), log=get_logger())
    ex.start()
    try:
        assert _wait(lambda: ex.runners[0].state == "quarantined", 3.0)
        assert agent.cleaned == 1
        monkeypatch.setattr(Escaper, "escapes", False)
        runner = ex.resume_agent("escaper")
        assert runner.state == "running"
        fresh = runner.agent
        assert isinstance(fresh, Escaper) and fresh is not agent
        assert _wait(lambda: fresh.acts >= 3, 2.0), "the resumed agent's new lanes run"
        assert ex.loops_alive()
        # a thread started outside any callback (here: the test's) is not the runtime's business
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
    finally:
        agent.stop.set()
        ex.stop()
    assert fresh.cleaned == 1 and not _escapees()


def test_virtual_thread_started_by_an_agent_is_refused_and_quarantines() -> None:
    agent = Escaper("learn")
    with capture_logs() as logs:
        r = simulate(agent, 30, backend=NullBackend())
    agent.stop.set()
    assert r.state == "quarantined" and agent.started == 0 and not _escapees()
    assert sum(e["event"] == "agent.thread_refused" for e in logs) == FAST.max_errors
    assert ("default", "error") in r.sources()


# -- memory -----------------------------------------------------------------------------

LEAK = 8 * MIB


class Leaker(Agent):
    """Keeps 8 MiB more at every model tick (touched, so it is resident), up to 320 MiB: more
    than the tests' headroom, and a bound on what a broken guard would cost the machine."""

    name = "leaker"
    schedule = FAST

    def __init__(self, cleanups: list[str] | None = None) -> None:
        self.kept: list[bytearray] = []
        #: held by the test: the runtime drops what a memory-quarantined instance holds
        self.cleanups = cleanups if cleanups is not None else []

    def collect(self) -> object:
        if len(self.kept) < 40:
            self.kept.append(bytearray(LEAK))
        return 1.0

    def learn(self, obs: Any) -> None:
        pass

    def predict(self) -> object:
        return 1.0

    def default_predict(self) -> object:
        return 0.0

    def act(self, prediction: Prediction) -> None:
        pass

    def clean_up(self) -> None:
        self.cleanups.append(self.name)


class Steady(Leaker):
    name = "steady"

    def __init__(self, cleanups: list[str] | None = None) -> None:
        super().__init__(cleanups)
        self.acts: list[float] = []

    def collect(self) -> object:
        return 1.0

    def act(self, prediction: Prediction) -> None:
        self.acts.append(time.monotonic())


@pytest.mark.live
def test_live_leaking_agent_is_quarantined_before_the_limit_and_the_other_keeps_running() -> None:
    """8 MiB per tick at 20 Hz (160 MiB/s), 200 MiB of headroom: caught with room to spare."""
    headroom = 200 * MIB
    give_back_freed_memory()  # what earlier tests freed would hide the leak's first pages
    cleanups: list[str] = []
    leaker, steady = Leaker(cleanups), Steady(cleanups)
    with capture_logs() as logs:
        ex = LiveExecutor(
            [AgentSpec(leaker), AgentSpec(steady)],
            backend=NullBackend(),
            log=get_logger(),
            memory_limit=MemoryLimit(None, "test", headroom=headroom),
        )
        ex.start()
        assert ex.memory is not None
        start = ex.memory.start_rss
        try:
            caught = _wait(lambda: ex.runners[0].state == "quarantined", 5.0)
            quarantined_at = time.monotonic()
            time.sleep(0.4)
            peak = ex.memory.read()
        finally:
            ex.stop()
    assert caught, ex.runners[0].status()
    event = next(e for e in logs if e["event"] == "agent.memory_quarantined")
    assert event["agent"] == "leaker"
    assert event["rss_mib"] * MIB < start + headroom, (event, start / MIB)
    assert event["grown_mib"] >= 8
    # its state was released: the memory is back (allow for the allocator's slack)
    assert event["rss_after_mib"] < event["rss_mib"] - 32, event
    assert peak < start + headroom
    assert cleanups == ["leaker", "steady"] and not hasattr(ex.runners[0].agent, "kept")
    assert str(ex.runners[0].state_reason).startswith("memory: the daemon's RSS reached")
    assert ex.runners[1].state == "stopped"  # ran until the stop
    assert sum(t > quarantined_at for t in steady.acts) >= 4, "the other agent kept acting"
    assert not [e for e in logs if e["event"] == "agent.memory_quarantined" and e["agent"] == "steady"]


def test_virtual_leaking_agent_is_quarantined_by_its_own_callbacks_growth() -> None:
    headroom = 200 * MIB
    give_back_freed_memory()
    leaker, steady = Leaker(), Steady()
    with capture_logs() as logs:
        ex = VirtualExecutor(
            [AgentSpec(leaker), AgentSpec(steady)],
            backend=NullBackend(),
            log=get_logger(),
            memory_limit=MemoryLimit(None, "test", headroom=headroom),
            record=True,
        )
        ex.run(60.0)
    assert ex.memory is not None
    start = ex.memory.start_rss
    leak_runner, steady_runner = ex.runners
    assert leak_runner.state == "quarantined" and steady_runner.state == "stopped"
    event = next(e for e in logs if e["event"] == "agent.memory_quarantined")
    assert event["agent"] == "leaker" and event["rss_mib"] * MIB < start + headroom
    assert event["rss_after_mib"] < event["rss_mib"] - 32, event
    quarantined_at = max(t for t, _, _ in leak_runner.calls)
    assert quarantined_at < 5.0, "caught within a few virtual seconds of ticks"
    assert [t for t, _ in steady_runner.actions if t > quarantined_at + 50], "the other kept acting"


def test_virtual_agent_that_keeps_its_memory_flat_is_never_quarantined() -> None:
    ex = VirtualExecutor(
        [AgentSpec(Steady())],
        backend=NullBackend(),
        log=get_logger(),
        memory_limit=MemoryLimit(None, "test", headroom=64 * MIB),
    )
    ex.run(30.0)
    assert ex.runners[0].state == "stopped"
    assert ex.memory is not None and not ex.memory.watching


# -- the guard's decisions, on a meter the test drives -------------------------------------


class FakeMeter(RssMeter):
    def __init__(self, rss: int) -> None:
        self.rss = rss

    def read(self) -> int:
        return self.rss

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("growth", "culprit"),
    [
        ({"a": 40 * MIB, "b": 1 * MIB}, "a"),
        ({"a": 10 * MIB, "b": 12 * MIB}, None),  # neither grew half of it: not attributable
        ({}, None),  # the runtime's own growth
        ({"a": 2 * MIB}, None),  # too small a share to tell from churn
    ],
    ids=["one-culprit", "spread", "nobody", "noise"],
)
def test_guard_quarantines_only_an_agent_that_grew_most_of_it(
    growth: dict[str, int], culprit: str | None
) -> None:
    from sol.runtime.memory import MemoryGuard

    meter = FakeMeter(100 * MIB)
    with capture_logs() as logs:
        guard = MemoryGuard(MemoryLimit(200 * MIB, "test"), log=get_logger(), meter=meter)
        guard.start()  # headroom 100 MiB: watch at 135, act at 160
        assert guard.check(130 * MIB) is None and not guard.watching
        assert guard.check(136 * MIB) is None and guard.watching
        for name, n in growth.items():
            guard.charge(name, n)
        assert guard.check(150 * MIB) is None  # below act
        assert guard.check(176 * MIB) == culprit
        assert guard.check(131 * MIB) is None and guard.watching  # hysteresis: still watching
        assert guard.check(129 * MIB) is None and not guard.watching  # calm below watch - 5 %
    events = [e["event"] for e in logs]
    assert events[0] == "runtime.memory_guard" and "runtime.memory_watch" in events
    assert ("runtime.memory_unattributed" in events) is (culprit is None)


@pytest.mark.parametrize(
    ("files", "cgroup", "expected"),
    [
        (
            {
                "unified/system.slice/sol.service/memory.high": "167772160",
                "unified/system.slice/sol.service/memory.max": "268435456",
            },
            "0::/system.slice/sol.service\n",
            160 * MIB,
        ),
        (
            {"system.slice/memory.max": "max", "system.slice/sol.service/memory.max": "max"},
            "0::/system.slice/sol.service\n",
            None,
        ),
        (
            {"system.slice/memory.max": str(64 * MIB), "system.slice/sol.service/memory.max": str(256 * MIB)},
            "0::/system.slice/sol.service\n",
            64 * MIB,
        ),
        (
            {"memory/sol/memory.limit_in_bytes": str(256 * MIB)},
            "4:memory:/sol\n1:cpu,cpuacct:/sol\n",
            256 * MIB,
        ),
        ({"memory/sol/memory.limit_in_bytes": "9223372036854771712"}, "4:memory:/sol\n", None),
    ],
    ids=["v2-high-below-max", "v2-unlimited", "v2-parent-lower", "v1", "v1-unlimited"],
)
def test_own_memory_limit_reads_the_cgroup_the_process_is_in(
    tmp_path: Path, files: dict[str, str], cgroup: str, expected: int | None
) -> None:
    from sol.runtime.memory import own_memory_limit

    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    (root / "memory").mkdir(exist_ok=True)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    found = own_memory_limit(proc, root)
    assert (found.limit if found else None) == expected
    if found is not None:
        assert found.source.startswith("cgroup ") and str(root) in found.source
