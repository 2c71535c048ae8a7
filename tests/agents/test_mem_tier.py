"""mem_tier on simulated nodes: the conformance kit, each safeguard, what it learns and moves."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sol.agents.mem_tier import MemTierAgent, MemTierObservation, Params
from sol.facilities import DamonRegion, DamonSnapshot, Migration
from sol.sdk import Context, Prediction
from sol.sim.memory import MemoryConfig, MemoryFacility, MemoryWorkload
from sol.sim.node import SimNode
from sol.testing import check_agent, simulate

MiB = 1 << 20
REGION = 64 * MiB
BASE = 0x7F0000000000


@pytest.mark.parametrize("check", list(check_agent(MemTierAgent)), ids=lambda c: c.name)
def test_conforms(check: Any) -> None:
    check()


def workload(
    hot: int = 4, cold: int = 4, span_s: float = 3600.0, level: float | tuple[float, float] = 0.6
) -> MemoryWorkload:
    """``hot`` regions touched at ``level`` (or levels spread over a range) all the time,
    ``cold`` ones never."""
    n = hot + cold
    freq = np.zeros((1, n))
    freq[0, :hot] = np.linspace(*level, hot) if isinstance(level, tuple) else level
    return MemoryWorkload(
        start=BASE + REGION * np.arange(n, dtype=np.int64),
        size=np.full(n, REGION, dtype=np.int64),
        phase_t=np.array([0.0]),
        freq=freq,
        span_s=span_s,
    )


def node_with(
    w: MemoryWorkload, *, memory_stall: float | None = 0.5, seed: int = 1
) -> tuple[SimNode, MemoryFacility]:
    node = SimNode(clock_start=0.0, label="test")
    cfg = MemoryConfig(local_bytes=w.footprint, far_bytes=w.footprint, memory_stall=memory_stall)
    f = MemoryFacility(cfg, w, seed=seed, lock=node.lock, now=node.now, origin=0.0)
    node.attach(f)
    return node, f


class Recorder:
    """The node's memory actuator, recording every migrate() call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int, int]] = []

    def migrate(self, start: int, end: int, to_node: int) -> Migration:
        self.calls.append((start, end, to_node))
        m: Migration = self.inner.migrate(start, end, to_node)
        return m


def set_up(node: SimNode, params: Params | None = None) -> tuple[MemTierAgent, Recorder]:
    agent = MemTierAgent()
    rec = Recorder(node.actuators.memory)
    actuators = SimpleNamespace(require=lambda name: rec)
    clock = SimpleNamespace(now=node.now, consume=lambda s: None)
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None)
    agent.setup(Context(clock, log, node.sensors, actuators, params or Params()))  # type: ignore[arg-type]
    return agent, rec


def tick(agent: MemTierAgent, node: SimNode, t: float, *, act: bool = True) -> Any:
    node.advance(t)
    obs = agent.collect()
    assert agent.validate(obs)
    agent.learn(obs)
    plan = agent.predict()
    if act:
        agent.act(Prediction(plan, "model", None, t, t + 3.0))
    return plan


# -- default and the run as a whole ---------------------------------------------------------


def test_the_default_moves_nothing_and_the_model_demotes_only_cold_regions() -> None:
    node, _f = node_with(workload())
    result = simulate(MemTierAgent(), duration=120.0, backend=node)
    assert result.state == "stopped" and not result.errors()
    assert MemTierAgent().default_predict() == ()
    moved = [item for _, p in result.actions if p.source == "model" for item in p.value]
    assert moved and all(node_id == 1 for _, _, node_id in moved)
    cold_starts = {BASE + REGION * j for j in range(4, 8)}
    assert {s for s, _, _ in moved} <= cold_starts  # a sensitive workload: no hot region goes far
    g = result.ground_truth
    assert g["mem.far_bytes"] == 4 * REGION  # every cold region, nothing else
    assert g["mem.slowdown_mean"] - 1.0 < 0.01


def test_a_broken_sensor_moves_nothing() -> None:
    node, _ = node_with(workload())
    agent = MemTierAgent()
    agent.collect = lambda: (_ for _ in ()).throw(OSError("DAMON vanished"))  # type: ignore[method-assign]
    result = simulate(agent, duration=60.0, backend=node)
    assert all(p.source == "default" and p.value == () for _, p in result.actions)
    assert result.ground_truth["mem.bytes_migrated"] == 0


def test_a_sensitive_workload_keeps_its_warm_memory_local_and_an_insensitive_one_does_not() -> None:
    # the same regions and accesses; only the far tier's cost to the workload differs. Learning
    # it per workload is what lets the insensitive one put its warm regions far too
    shares = {}
    kappas = {}
    for stall in (0.01, 0.6):
        node, _f = node_with(workload(hot=24, cold=8, level=(0.005, 0.9)), memory_stall=stall)
        agent = MemTierAgent()
        result = simulate(agent, duration=900.0, backend=node)
        g = result.ground_truth
        shares[stall] = g["mem.far_bytes"] / g["mem.footprint_bytes"]
        kappas[stall] = (agent.sensitivity, g["mem.far_sensitivity"])
        assert g["mem.slowdown_mean"] - 1.0 < Params().slowdown_budget
    assert 0.25 <= shares[0.6] < 0.5  # its eight cold regions, and the least touched warm ones
    assert shares[0.01] > shares[0.6] + 0.25
    learnt, true = kappas[0.01]
    assert learnt == pytest.approx(true, rel=0.5)


def test_migration_keeps_to_the_cap_on_average() -> None:
    node, _f = node_with(workload(hot=2, cold=30))
    params = Params(migrate_mb_s=100.0)
    result = simulate(MemTierAgent(), duration=60.0, backend=node, params=params)
    moved = result.ground_truth["mem.bytes_migrated"]
    act = MemTierAgent.schedule.act_every
    # the bucket starts full (one interval) and one region may overdraw it
    assert 0 < moved <= 100e6 * (60.0 + act) + REGION


# -- validate ---------------------------------------------------------------------------------


def snapshot(regions: list[tuple[int, int, int]], *, t: float = 10.0, max_nr: int = 20) -> MemTierObservation:
    snap = DamonSnapshot(
        t=t,
        t_start=t - 0.2,
        t_end=t - 0.1,
        max_nr_accesses=max_nr,
        regions=tuple(DamonRegion(a, b, n, 0) for a, b, n in regions),
    )
    return MemTierObservation(t=t, snapshot=snap, stall_total_s=0.0, stall_scope="workload")


@pytest.mark.parametrize(
    ("obs", "reason"),
    [
        (snapshot([(0, 4096, 1), (8192, 12288, 2)]), None),
        (snapshot([(8192, 12288, 1), (0, 4096, 2)]), "unsorted or overlapping"),
        (snapshot([(0, 8192, 1), (4096, 12288, 2)]), "unsorted or overlapping"),
        (snapshot([(0, 4096, 21)]), "nr_accesses 21 outside 0..20"),
        (snapshot([(0, 4096, -1)]), "outside"),
        (snapshot([(4096, 4096, 0)]), "empty region"),
        (snapshot([]), "target is gone"),
        (replace(snapshot([(0, 4096, 1)]), t=30.0), "stale snapshot"),
        (replace(snapshot([(0, 4096, 1)]), stall_total_s=float("nan")), "not finite"),
    ],
)
def test_validate_rejects_bad_snapshots(obs: MemTierObservation, reason: str | None) -> None:
    node, _ = node_with(workload())
    agent, _ = set_up(node)
    verdict = agent.validate(obs)
    if reason is None:
        assert verdict
    else:
        assert not verdict and reason in (verdict.reason or "")


def test_validate_rejects_an_aggregation_interval_going_backwards() -> None:
    node, _ = node_with(workload())
    agent, _ = set_up(node)
    tick(agent, node, 5.0, act=False)
    old = snapshot([(BASE, BASE + REGION, 1)], t=5.0)
    old = replace(old, snapshot=replace(old.snapshot, t_start=1.0, t_end=1.1))
    verdict = agent.validate(old)
    assert not verdict and "backwards" in (verdict.reason or "")


# -- assess_model: false cold -------------------------------------------------------------------


def test_assess_model_fails_when_regions_called_cold_are_touched_and_recovers_later() -> None:
    # ten regions the model called cold (5 % likely to wake) were demoted; the snapshots after
    # the move show them touched within the horizon: false cold, far above what it predicted
    node, _ = node_with(workload(hot=10, cold=6, level=0.9))
    agent, _ = set_up(node, Params(false_cold_min=5))
    tick(agent, node, 1.0, act=False)
    assert agent.assess_model()  # nothing judged yet
    for k in range(10):
        agent.pending_judge.append((1.0, BASE + REGION * k, BASE + REGION * (k + 1), 0.05))
    for t in (2.0, 3.0, 4.0):
        tick(agent, node, t, act=False)
    verdict = agent.assess_model()
    assert (
        not verdict
        and "false cold" in (verdict.reason or "")
        and "the model said 5%" in (verdict.reason or "")
    )
    # the same for regions that stayed cold: judged right once the horizon is over
    agent2, _ = set_up(node, Params(false_cold_min=5))
    tick(agent2, node, 5.0, act=False)
    for k in range(10, 16):
        agent2.pending_judge.append((5.0, BASE + REGION * k, BASE + REGION * (k + 1), 0.05))
    for t in range(6, 18):
        tick(agent2, node, float(t), act=False)
    assert len(agent2.workloads[0].judged) == 6 and agent2.assess_model()
    # no new demotions judged: after false_cold_memory_s the first verdict clears (no lockout)
    node.advance(1000.0)
    assert agent.assess_model()


# -- assess_performance ---------------------------------------------------------------------------


def test_assess_performance_fails_when_the_agents_demotions_pass_the_budget() -> None:
    node, _f = node_with(workload(hot=4, cold=4, level=0.9), memory_stall=0.8)
    agent, _ = set_up(node)
    tick(agent, node, 1.0, act=False)
    assert agent.assess_performance()  # the first reading is the baseline
    for t in range(2, 12):
        tick(agent, node, float(t), act=False)
        agent.assess_performance()  # a floor of ~0 slowdown: all local
    hot = tuple((BASE + REGION * j, BASE + REGION * (j + 1), 1) for j in range(4))
    agent.act(Prediction(hot, "model", None, 12.0, 15.0))  # a bad model sends the hot set far
    node.advance(40.0)
    verdict = agent.assess_performance()
    assert not verdict and "slowdown" in (verdict.reason or "") and "budget 2.0%" in (verdict.reason or "")


def test_slowdown_the_agent_did_not_cause_is_not_its_harm() -> None:
    # the local tier holds a third of the workload: the rest starts far, slow whatever the agent
    # does; with no demotion of its own, the agent is not backed off for it
    w = workload(hot=6, cold=3, level=0.9)
    node = SimNode(clock_start=0.0, label="test")
    cfg = MemoryConfig(local_bytes=w.footprint // 3, far_bytes=w.footprint, memory_stall=0.8)
    node.attach(MemoryFacility(cfg, w, seed=1, lock=node.lock, now=node.now, origin=0.0))
    agent, _ = set_up(node)
    node.advance(1.0)
    agent.assess_performance()
    node.advance(11.0)
    assert node.ground_truth()["mem.slowdown_mean"] > 1.2
    assert agent.assess_performance()


# -- mitigate ------------------------------------------------------------------------------------------


def test_mitigate_promotes_the_newest_demotions_first_within_the_cap() -> None:
    node, _ = node_with(workload(hot=0, cold=8))
    act = MemTierAgent.schedule.act_every
    params = Params(migrate_mb_s=REGION / 1e6 / act)  # one region per interval
    agent, rec = set_up(node, params)
    tick(agent, node, act, act=False)
    for k in range(4):  # one region demoted per interval, in address order
        t = act * (2 + k)
        node.advance(t)
        agent.act(Prediction(((BASE + REGION * k, BASE + REGION * (k + 1), 1),), "model", None, t, t + 3))
    t = act * 10
    node.advance(t)
    rec.calls.clear()
    agent.mitigate()
    assert rec.calls == [(BASE + REGION * 3, BASE + REGION * 4, 0)]  # the newest, and the cap is spent
    # the runtime then feeds defaults: they go on promoting, newest first, at the cap
    for k in range(1, 5):
        node.advance(t + act * k)
        agent.act(Prediction((), "default", "backoff", t + act * k, t + act * (k + 3)))
    assert [c[0] for c in rec.calls] == [BASE + REGION * k for k in (3, 2, 1, 0)]
    assert all(to == 0 for _, _, to in rec.calls)
    # idempotent: nothing left to promote
    rec.calls.clear()
    agent.mitigate()
    agent.clean_up()
    assert rec.calls == []


def test_a_demotion_older_than_recent_s_is_left_to_the_model() -> None:
    node, _ = node_with(workload(hot=0, cold=2))
    agent, rec = set_up(node, Params(recent_s=5.0))
    tick(agent, node, 1.0, act=False)
    agent.act(Prediction(((BASE, BASE + REGION, 1),), "model", None, 1.0, 4.0))
    node.advance(30.0)
    rec.calls.clear()
    agent.mitigate()
    assert rec.calls == []


# -- a plan's bad entries and the mover's errors are counted, never raised ---------------------------


def test_bad_plan_entries_and_failing_moves_are_counted() -> None:
    node, _ = node_with(workload())

    class Failing(Recorder):
        def migrate(self, start: int, end: int, to_node: int) -> Migration:
            raise OSError(16, "Device or resource busy")

    agent, _ = set_up(node)
    agent.mover = Failing(node.actuators.memory)
    agent.act(
        Prediction(((BASE, BASE + REGION, 1), (5, 1, 1), (BASE, BASE + REGION, 7)), "model", None, 0, 3)
    )
    assert agent.counts["move_errors"] == 3 and agent.counts["moves"] == 0
