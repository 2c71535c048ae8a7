"""faas_prewarm: conformance, the model's windows, and each safeguard (in simulation and on a
small in-memory FaaS node whose every reply the test chooses)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from sol.agents.faas_prewarm import (
    GB,
    KEEPALIVE,
    Batch,
    FaasPrewarmAgent,
    IdleModel,
    Params,
    Plan,
)
from sol.facilities import Actuators, CacheObject, Invocation, NumaNode, Prewarm, Residency, Sensors
from sol.sdk import Context, Prediction
from sol.testing import check_agent, simulate

MB = 1_000_000


@pytest.mark.parametrize("check", list(check_agent(FaasPrewarmAgent)), ids=lambda c: c.name)
def test_conforms(check) -> None:  # type: ignore[no-untyped-def]
    check()


# -- a FaaS node the test drives -------------------------------------------------------------


@dataclass
class Clock:
    t: float = 1000.0

    def now(self) -> float:
        return self.t

    def consume(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeFaas:
    """Objects app0..appN of ``size`` bytes; ``log`` is the invocation log; what is resident
    is a set; ``refuse`` makes prewarms find no room; ``fail`` makes every action raise."""

    clock: Clock
    n: int = 4
    size: int = 100 * MB
    log: list[Invocation] = field(default_factory=list)
    resident: set[str] = field(default_factory=set)
    refuse: bool = False
    fail: Exception | None = None
    prewarms: list[str] = field(default_factory=list)
    evictions: list[str] = field(default_factory=list)

    def objects(self) -> Sequence[CacheObject]:
        return [CacheObject(f"app{i}", self.size) for i in range(self.n)]

    def _known(self, name: str) -> None:
        if name not in {f"app{i}" for i in range(self.n)}:
            raise KeyError(name)

    def residency(self, name: str) -> Residency:
        self._known(name)
        return Residency(self.clock.t, name, self.size if name in self.resident else 0, self.size)

    def invocations(self, since: float) -> Sequence[Invocation]:
        return [i for i in self.log if i.t >= since]

    def prewarm(self, name: str) -> Prewarm:
        self._known(name)
        if self.fail is not None:
            raise self.fail
        self.prewarms.append(name)
        if name in self.resident or self.refuse:
            return Prewarm(self.clock.t, name, 0, self.clock.t)
        self.resident.add(name)
        return Prewarm(self.clock.t, name, self.size, self.clock.t + 1.0)

    def evict(self, name: str) -> int:
        self._known(name)
        if self.fail is not None:
            raise self.fail
        self.evictions.append(name)
        if name in self.resident:
            self.resident.discard(name)
            return self.size
        return 0

    def call(self, name: str, fn: str | None = None, t: float | None = None) -> None:
        self.log.append(Invocation(self.clock.t if t is None else t, fn or f"fn-{name}", name))
        self.resident.add(name)


class FakeMemory:
    def __init__(self, free_share: float) -> None:
        self.free_share = free_share

    def nodes(self) -> list[NumaNode]:
        total = 64 * 1 << 30
        return [NumaNode(0.0, 0, "local", total, int(total * (1 - self.free_share)))]


def make(params: Params | None = None, memory: FakeMemory | None = None, **kw: object):  # type: ignore[no-untyped-def]
    clock = Clock()
    faas = FakeFaas(clock, **kw)  # type: ignore[arg-type]
    agent = FaasPrewarmAgent()
    ctx = Context(
        clock=clock,
        log=None,
        sensors=Sensors(faas=faas, memory=memory),  # type: ignore[arg-type]
        actuators=Actuators(faas=faas),
        config=params or Params(),
    )
    agent.setup(ctx)
    return agent, faas, clock


def model(plan: Plan, t: float) -> Prediction:
    return Prediction(plan, "model", None, t, t + 6.0)


def window(agent: FaasPrewarmAgent) -> None:
    """One model tick and one act, as the runtime runs them."""
    batch = agent.collect()
    if agent.validate(batch):
        agent.learn(batch)
    agent.act(model(agent.predict(), agent.ctx.clock.now()))


# -- the agent on the simulated node ---------------------------------------------------------


def test_on_the_simulated_node_it_prewarms_and_unloads_from_the_model() -> None:
    agent = FaasPrewarmAgent()
    result = simulate(agent, duration=1800.0, seed=1)
    assert result.state == "stopped" and not result.errors()
    sources = result.sources()
    assert sources[("model", None)] > 0.9 * len(result.actions)
    gt = result.ground_truth
    assert gt["faas.prewarms"] > 0 and gt["faas.evictions"] > 0
    # every record read once (those of the last window after its collect are not read)
    assert 0 <= gt["faas.invocations"] - agent.counts["records"] <= 20
    assert not agent.held  # clean_up unloaded what it had loaded


def test_against_the_fixed_keepalive_it_saves_memory_on_the_same_stream() -> None:
    # the default scenario (synthetic ATC'20 apps): the same seed with and without the agent
    idle = simulate(_Idle(), duration=3600.0, seed=2).ground_truth
    ours = simulate(FaasPrewarmAgent(), duration=3600.0, seed=2).ground_truth
    assert ours["faas.memory_gb_s"] < idle["faas.memory_gb_s"]
    assert ours["faas.cold_starts"] <= 1.5 * idle["faas.cold_starts"] + 10


class _Idle(FaasPrewarmAgent):
    """The fixed keep-alive alone: the agent always on its default."""

    name = "faas_idle"

    def predict(self) -> Plan:
        return KEEPALIVE


# -- the model -------------------------------------------------------------------------------


def _dist(model: IdleModel, idles: list[float]) -> np.ndarray:
    for x in idles:
        model.add(0, "g", x)
    d = model.distribution(0, "g")
    assert d is not None
    return d


def test_a_regular_caller_is_loaded_just_before_its_next_call() -> None:
    model = IdleModel(replace(Params(), prior_samples=0.0))
    d = _dist(model, [1800.0] * 50)  # every 30 minutes
    a, b, p_in = model.window(d, size_gb=0.5, lead=10.0)
    assert 0 < a <= 1800.0 < b and b - a < 900.0 and p_in > 0.95


def test_a_frequent_caller_is_kept_and_a_hopeless_one_never() -> None:
    model = IdleModel(replace(Params(), prior_samples=0.0))
    a, b, _ = model.window(_dist(model, [20.0] * 50), size_gb=0.5, lead=10.0)
    assert a == 0 and b > 20.0
    # idle times beyond the range: keeping it costs more than its cold start
    model2 = IdleModel(replace(Params(), prior_samples=0.0))
    assert model2.window(_dist(model2, [5 * 3600.0] * 10), size_gb=0.5, lead=10.0) == (0.0, 0.0, 0.0)


def test_the_cost_ratio_moves_the_decision() -> None:
    idles = list(np.random.default_rng(1).exponential(600.0, 200))
    cheap = IdleModel(replace(Params(), cold_start_gb_s=5.0, prior_samples=0.0))
    dear = IdleModel(replace(Params(), cold_start_gb_s=2000.0, prior_samples=0.0))
    _, b_cheap, p_cheap = cheap.window(_dist(cheap, idles), 1.0, 10.0)
    _, b_dear, p_dear = dear.window(_dist(dear, idles), 1.0, 10.0)
    assert b_dear > b_cheap and p_dear > p_cheap


def test_a_rarely_seen_object_borrows_its_groups_idle_times() -> None:
    p = Params(prior_samples=3.0, pool_samples=8)
    model = IdleModel(p)
    for o in range(1, 20):  # the group's objects are called every ~30 s
        for _ in range(8):
            model.add(o, "timer-", 30.0)
    model.add(0, "timer-", 30.0)  # object 0 has one idle time of its own
    d = model.distribution(0, "timer-")
    assert d is not None and d[model.bin_of(30.0)] == pytest.approx(1.0)
    # another group knows nothing of it
    model.add(99, "http-", 3000.0)
    d2 = model.distribution(99, "http-")
    assert d2 is not None and d2[model.bin_of(3000.0)] > 0.2


def test_the_time_of_day_shape_rescales_idle_times() -> None:
    agent, faas, clock = make(Params(day_s=2400.0))  # a short "day": 24 hours of 100 s
    # calls every 10 s in the first "hour" of each day, every 50 s otherwise
    t0 = clock.t
    for day in range(2):
        for k in range(0, 2400, 10):
            h = k // 100
            if h == 0 or k % 50 == 0:
                faas.log.append(Invocation(t0 + day * 2400 + k, "fn", "app0"))
    clock.t = t0 + 2 * 2400
    window(agent)
    busy = agent._tod_factor(0, t0 + 2 * 2400 + 10)  # hour 0: busier than average
    quiet = agent._tod_factor(0, t0 + 2 * 2400 + 1010)
    assert busy > 1.5 and quiet < 1.0


# -- validate --------------------------------------------------------------------------------


def test_validate_drops_bad_records_and_fails_when_they_are_many() -> None:
    agent, faas, clock = make()
    faas.call("app0")
    clock.t += 2
    window(agent)
    assert agent.counts["records"] == 1
    # out of order, from the future, duplicated, unknown object, a function that changed its object
    now = clock.t
    bad = [
        Invocation(now - 100, "fn-app1", "app1"),  # before the last record read: out of order
        Invocation(now + 50, "fn-app1", "app1"),
        Invocation(now - 0.5, "fn-app2", "nope"),
        Invocation(now - 0.4, "fn-app0", "app3"),
    ]
    good = Invocation(now - 0.3, "fn-app1", "app1")
    batch = Batch(now, (*bad, good, good))
    verdict = agent.validate(batch)
    assert not verdict and "bad" in (verdict.reason or "")
    c = agent.counts
    assert (c["out_of_order"], c["future"], c["unknown_object"], c["unknown_function"], c["duplicated"]) == (
        1,
        1,
        1,
        1,
        1,
    )
    # one bad record among many good ones is dropped, not fatal
    many = tuple(Invocation(now + 0.01 * k, f"fn-app{k % 3}", f"app{k % 3}") for k in range(20))
    batch2 = Batch(now + 1, (*many, Invocation(now + 99, "x", "app0")))
    assert agent.validate(batch2)
    agent.learn(batch2)
    assert agent.last_call[0] == pytest.approx(now + 0.18)


def test_records_read_again_at_the_window_edge_are_not_counted_twice() -> None:
    agent, faas, clock = make()
    faas.call("app0")
    faas.call("app1")  # the same instant
    clock.t += 2
    window(agent)
    clock.t += 2
    window(agent)  # since is inclusive: both come back
    assert agent.counts["records"] == 2 and agent.counts["duplicated"] == 0


def test_a_log_the_facility_cannot_read_fails_validation() -> None:
    agent, faas, _clock = make()
    faas.log_status = lambda: {"new_problems": {"malformed": 1}, "unavailable": "deleted"}  # type: ignore[attr-defined]
    batch = agent.collect()
    assert batch.log_unavailable == "deleted"
    verdict = agent.validate(batch)
    assert not verdict and "unavailable" in (verdict.reason or "")
    assert agent.counts["log_malformed"] == 1


# -- default_predict and act ------------------------------------------------------------------


def test_the_default_is_the_platforms_keepalive_it_unloads_only_what_it_loaded() -> None:
    agent, faas, clock = make(Params(keepalive_s=600.0))
    assert agent.default_predict() == KEEPALIVE
    agent.act(model(Plan(1, ("app1",), ()), clock.t))
    assert "app1" in agent.held
    faas.call("app0")  # loaded by the platform, not by the agent
    for _ in range(4):
        clock.t += 200
        agent.act(Prediction(KEEPALIVE, "default", "model-assessment", clock.t, clock.t + 6))
    assert faas.evictions == ["app1"] and "app0" in faas.resident
    assert faas.prewarms == ["app1"]  # the default never loads


def test_act_counts_failed_actions_and_assess_model_falls_back() -> None:
    agent, faas, clock = make(Params(min_assess_events=5))
    faas.fail = OSError(28, "No space left on device")
    for k in range(6):
        # every action is tried, then the host's refusal goes to the runtime (it mitigates)
        with pytest.raises(OSError, match="No space"):
            agent.act(model(Plan(k + 1, ("app1",), ("app2",)), clock.t))
        clock.t += 2
    assert agent.act_counts["failed"] == 12
    verdict = agent.assess_model()
    assert not verdict and "failed" in (verdict.reason or "")
    # a missing object (the catalogue named it, the disk lost it) is counted, not raised
    faas.fail = None
    faas.n = 1
    agent.act(model(Plan(99, ("app3",), ()), clock.t))
    assert agent.act_counts["failed"] == 13


def test_assess_model_fails_on_calls_predicted_warm_that_started_cold() -> None:
    agent, _, _ = make(Params(min_assess_events=10, max_warm_miss_share=0.25))
    agent._warm_calls.extend([1] * 6 + [0] * 10)
    verdict = agent.assess_model()
    assert not verdict and "predicted warm" in (verdict.reason or "")
    agent._warm_calls.clear()
    agent._warm_calls.extend([0] * 20)
    assert agent.assess_model()


def test_assess_model_fails_on_prewarms_never_used() -> None:
    agent, _faas, clock = make(Params(min_assess_events=5, max_unused_prewarm_share=0.5), n=8)
    for k in range(8):
        agent.act(model(Plan(2 * k + 1, (f"app{k}",), ()), clock.t))
        agent.act(model(Plan(2 * k + 2, (), (f"app{k}",)), clock.t))
    verdict = agent.assess_model()
    assert not verdict and "never used" in (verdict.reason or "")


def test_a_call_inside_a_window_whose_prewarm_came_late_counts_as_a_warm_miss() -> None:
    agent, _faas, clock = make()
    agent.win[0] = [clock.t, 100.0, 300.0, 0.9, 0.0, 2, 100.0, 300.0]
    agent.dropped_at[0] = clock.t + 1
    agent.prewarm_ready[0] = clock.t + 250  # ready after the call at +200
    agent._judge(0, clock.t + 200, agent.win[0])
    agent.prewarm_ready[0] = clock.t + 90
    agent._judge(0, clock.t + 200, agent.win[0])
    assert list(agent._warm_calls) == [1, 0]


# -- assess_performance and mitigate ---------------------------------------------------------


def test_memory_pushing_back_fails_assess_performance_and_mitigate_unloads_the_prewarms() -> None:
    agent, faas, clock = make(Params(min_pressure_events=3), n=8)
    agent.act(model(Plan(1, ("app0", "app1"), ()), clock.t))
    assert agent.assess_performance()
    faas.refuse = True
    agent.act(model(Plan(2, tuple(f"app{k}" for k in range(2, 8)), ()), clock.t))
    verdict = agent.assess_performance()
    assert not verdict and "refused" in (verdict.reason or "")
    faas.call("app5")  # an object the platform loaded: not the agent's to unload
    agent.mitigate()
    assert set(faas.evictions) == {"app0", "app1"} and not agent.held and "app5" in faas.resident
    agent.mitigate()  # idempotent
    assert set(faas.evictions) == {"app0", "app1"}


def test_prewarmed_objects_reclaimed_before_use_are_memory_pressure() -> None:
    agent, faas, clock = make(Params(min_pressure_events=2), n=4)
    agent.act(model(Plan(1, ("app0", "app1", "app2"), ()), clock.t))
    clock.t += 5
    faas.resident.clear()  # the kernel reclaimed them
    verdict = agent.assess_performance()
    assert not verdict and "reclaimed" in (verdict.reason or "")
    assert agent.act_counts["reclaimed"] == 3


def test_low_free_memory_with_prewarms_resident_fails() -> None:
    agent, _faas, clock = make(Params(min_free_share=0.05), memory=FakeMemory(0.02))
    assert agent.assess_performance()  # nothing prewarmed: not the agent's doing
    agent.act(model(Plan(1, ("app0",), ()), clock.t))
    verdict = agent.assess_performance()
    assert not verdict and "free" in (verdict.reason or "")


def test_prewarms_stop_at_the_configured_memory() -> None:
    agent, _faas, clock = make(Params(max_prewarmed_gb=0.25), n=4)  # 100 MB objects: two fit
    agent.act(model(Plan(1, ("app0", "app1", "app2", "app3"), ()), clock.t))
    assert len(agent.held) == 2 and agent.held_bytes <= 0.25 * GB


def test_an_adversarial_plan_is_bounded_by_the_same_limit() -> None:
    agent, _faas, clock = make(Params(max_prewarmed_gb=0.25), n=4)
    plan = agent.fault_aggressive()
    agent.act(model(plan, clock.t))
    assert len(agent.held) == 2


def test_an_eviction_refused_while_a_call_runs_is_retried() -> None:
    agent, faas, clock = make()
    faas.call("app0")
    real_evict = faas.evict
    busy = {"left": 2}

    def evict(name: str) -> int:
        if busy["left"] > 0:
            busy["left"] -= 1
            return 0  # the call still runs on it
        return real_evict(name)

    faas.evict = evict  # type: ignore[method-assign]
    for k in range(4):
        agent.act(model(Plan(k + 1, (), ("app0",) if k == 0 else ()), clock.t))
        clock.t += 2
    assert "app0" not in faas.resident and not agent._retry


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        Params(min_idle_s=10.0, range_s=5.0)
    with pytest.raises(ValueError):
        Params(cold_start_gb_s=math.nan)
    with pytest.raises(re.error):
        Params(group_pattern="([")


def test_just_started_it_never_keeps_an_object_shorter_than_the_platform() -> None:
    # three calls 400 s apart: alone, the model would unload after each and reload before the
    # next; with so few idle times (its own, its group's) it keeps the platform's window
    agent, faas, clock = make(Params(cold_start_gb_s=20.0))
    for k in range(3):
        faas.call("app0", t=clock.t - 800 + 400 * k)
    window(agent)
    w = agent.win[0]
    assert w[1] == 0.0 and w[2] >= 600.0
    lax = replace(Params(cold_start_gb_s=20.0), min_samples=0, min_pool_samples=0)
    agent2, faas2, clock2 = make(lax)
    for k in range(3):
        faas2.call("app0", t=clock2.t - 800 + 400 * k)
    window(agent2)
    assert agent2.win[0][1] > 0 or agent2.win[0][2] < 600.0


def test_among_equal_costs_the_window_holds_memory_least() -> None:
    # every call 20 s apart: any window end past 20 s costs the same under the histogram (the
    # call has surely come); the one chosen is the first edge past it, whatever the float order
    model = IdleModel(replace(Params(), prior_samples=0.0))
    a, b, p_in = model.window(_dist(model, [20.0] * 50), size_gb=0.5, lead=10.0)
    assert a == 0.0 and b == model.edges[model.bin_of(20.0) + 1] and p_in == pytest.approx(1.0)
