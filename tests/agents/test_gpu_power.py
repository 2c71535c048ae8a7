"""gpu_power on simulated nodes: conformance, decisions, and each safeguard."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sol.actuators.base import WriteError
from sol.agents.gpu_power import GpuPowerAgent, GpuWindow, Params, level_caps, static_cap_mw
from sol.agents.noop import NoopAgent
from sol.facilities import ServingStats
from sol.kernel.errors import SensorError
from sol.sdk import Context, Prediction
from sol.sim import SimNode, get_scenario
from sol.sim.gpu import GpuConfig, GpuFacility, LlmRequests
from sol.sim.synthetic import PoissonLlmRequests
from sol.testing import check_agent, simulate


@pytest.mark.parametrize("check", list(check_agent(GpuPowerAgent)), ids=lambda c: c.name)
def test_conforms_on_the_default_node(check: Any) -> None:
    check()


def _stress(seed: int) -> Any:
    return get_scenario("gpu-stress").build(seed)


@pytest.mark.parametrize("name", ["runs_cleanly", "survives_failing_collect", "never_learns_invalid_data"])
def test_conforms_on_a_node_over_its_budget(name: str) -> None:
    checks = {c.name: c for c in check_agent(GpuPowerAgent, backend_factory=_stress)}
    checks[name]()


# -- decisions ---------------------------------------------------------------------------


def _node(
    count: int = 4, budget_share: float = 0.75, rate: float = 5.0, seed: int = 1, **cfg: Any
) -> SimNode:
    node = SimNode()
    config = GpuConfig(count=count, budget_w=budget_share * count * 400.0, **cfg)
    req = PoissonLlmRequests(seed, rate_per_s=rate, burstiness=1.0)
    node.attach(GpuFacility(config, req, seed=seed, lock=node.lock, now=node.now, origin=0.0))
    return node


def test_keeps_the_node_under_budget_where_uncapped_it_stays_over_for_long() -> None:
    free = simulate(NoopAgent(), duration=600.0, backend=_node())
    capped = simulate(GpuPowerAgent(), duration=600.0, backend=_node())
    assert not capped.errors()
    f, c = free.ground_truth, capped.ground_truth
    assert f["gpu.budget_longest_excursion_s"] >= 5.0 and f["gpu.budget_violation_s"] >= 30.0
    assert c["gpu.budget_longest_excursion_s"] <= 1.0  # the enforcement delay
    assert c["gpu.budget_violation_s"] < 0.3 * f["gpu.budget_violation_s"]
    # it caps only part of the time, lifting caps when the budget allows
    assert 0.0 < c["gpu.capped_gpu_s"] < 0.5 * 600.0 * 4
    assert {p.source for _, p in capped.actions} >= {"model"}


def test_lifts_every_cap_when_the_budget_covers_every_gpu_at_full_power() -> None:
    result = simulate(GpuPowerAgent(), duration=300.0, backend=_node(budget_share=1.0))
    model = [p.value for _, p in result.actions if p.source == "model"]
    assert model and all(v == (400_000,) * 4 for v in model)
    assert result.ground_truth["gpu.capped_gpu_s"] == 0.0


def test_follows_a_budget_that_changes_while_it_runs() -> None:
    node = _node(budget_share=1.0)
    agent = GpuPowerAgent()
    limits: list[tuple[float, tuple[int, ...]]] = []
    original = agent.act

    def act(prediction: Prediction) -> None:
        original(prediction)
        limits.append((agent.ctx.clock.now(), tuple(prediction.value)))

    agent.act = act  # type: ignore[method-assign]
    node.advance(100.0)
    gpu = node._facilities["gpu"]  # type: ignore[attr-defined]
    gpu.set_budget_w(600.0)  # a power emergency: 150 W a GPU
    result = simulate(agent, duration=200.0, backend=node)
    assert not result.errors()
    late = [sum(v) for t, v in limits if t > 120.0]
    assert late and max(late) <= 600_000 * 4  # caps now exist ...
    assert result.ground_truth["gpu.budget_longest_excursion_s"] <= 1.0


def test_static_cap_and_level_caps() -> None:
    assert static_cap_mw(1000.0, [100_000] * 4, [400_000] * 4, 0.0) == [250_000] * 4
    assert (
        static_cap_mw(200.0, [100_000] * 4, [400_000] * 4, 0.0) == [100_000] * 4
    )  # floors: all a limit can do
    assert static_cap_mw(None, [100_000] * 2, [400_000] * 2, 0.02) == [400_000] * 2
    caps = level_caps([400.0] * 4, [100.0] * 4, [400.0] * 4, [1.0, 1.0, 0.5, 0.5], 1000.0)
    assert sum(caps) == pytest.approx(1000.0, abs=0.5) and caps[0] == pytest.approx(2 * caps[2])
    # a GPU predicted quiet is not held to its prediction: it keeps the common level
    caps = level_caps([400.0, 400.0, 120.0], [100.0] * 3, [400.0] * 3, [1.0] * 3, 800.0)
    assert caps[2] == pytest.approx(caps[0]) == pytest.approx(340.0, abs=0.5)


# -- the safeguards -----------------------------------------------------------------------


def _ready(node: SimNode | None = None, **params: Any) -> tuple[GpuPowerAgent, SimNode]:
    node = node or _node()
    agent = GpuPowerAgent()
    ctx = Context(
        clock=SimpleNamespace(now=node.now, consume=lambda s: None),
        log=None,
        sensors=node.sensors,
        actuators=node.actuators,
        config=Params(**params),
    )
    agent.setup(ctx)
    return agent, node


def _window(agent: GpuPowerAgent, t: float, power: float | list[float], **kw: Any) -> GpuWindow:
    n = agent.n
    watts = [power] * n if isinstance(power, (int, float)) else power
    return GpuWindow(
        t=t,
        power_w=tuple(float(w) for w in watts),
        enforced_w=kw.get("enforced", (400.0,) * n),
        temperature_c=kw.get("temperature", (50.0,) * n),
        serving=kw.get("serving"),
        budget_w=kw.get("budget", 1200.0),
    )


@pytest.mark.parametrize(
    ("power", "reason"),
    [(math.nan, "draws nan"), (-5.0, "draws -5"), (900.0, "outside [0, 800] W"), (math.inf, "draws inf")],
)
def test_validate_rejects_power_outside_zero_to_twice_tdp(power: float, reason: str) -> None:
    agent, _ = _ready()
    verdict = agent.validate(_window(agent, 1.0, [100.0, 100.0, power, 100.0]))
    assert not verdict and reason in (verdict.reason or "")


def test_validate_rejects_a_gpu_that_disappeared() -> None:
    agent, _ = _ready()
    verdict = agent.validate(_window(agent, 1.0, [100.0] * 3))
    assert not verdict and "3 GPUs read, 4 at setup" in (verdict.reason or "")
    agent.gpu = SimpleNamespace(count=lambda: 3)  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="a GPU lost"):
        agent.collect()


def test_validate_rejects_power_frozen_while_the_server_works() -> None:
    agent, _ = _ready()
    verdicts = []
    for k in range(12):
        serving = tuple(ServingStats(float(k), k % 3, k % 2, 100.0 * k, 10.0 * k) for _ in range(4))
        obs = _window(agent, float(k), 250.0, serving=serving)
        verdicts.append(bool(agent.validate(obs)))
        agent.last = obs
    assert verdicts[:9] == [True] * 9 and not verdicts[-1]
    # the same draw at the GPUs' limit is a cap holding, not a frozen sensor
    agent, _ = _ready()
    for k in range(12):
        serving = tuple(ServingStats(float(k), k % 3, k % 2, 100.0 * k, 10.0 * k) for _ in range(4))
        obs = _window(agent, float(k), 250.0, serving=serving, enforced=(250.0,) * 4)
        assert agent.validate(obs)
        agent.last = obs


def test_assess_model_fails_when_the_draw_is_under_predicted_too_often() -> None:
    agent, _ = _ready()
    assert agent.assess_model()
    agent.under.extend([True] * 8 + [False] * 32)
    assert agent.assess_model()  # 20 % of 40: at the limit
    agent.under.clear()
    agent.under.extend([True] * 15 + [False] * 25)
    verdict = agent.assess_model()
    assert not verdict and "under-predicted" in (verdict.reason or "")


def test_the_model_learns_from_capped_windows_only_upwards() -> None:
    agent, _ = _ready()
    feats = [{"p": 0.5, "p1": 0.5, "temp": 0.5}] * 4
    agent.pending.append((feats, [0.9] * 4, False))
    agent.pending.append((feats, [0.9] * 4, False))
    before = agent.model.n_seen
    # held at a 250 W limit, reading 250 W: the demand is unknown above the cap
    agent.learn(_window(agent, 3.0, 250.0, enforced=(250.0,) * 4))
    assert agent.model.n_seen == before
    agent.pending.clear()
    agent.pending.extend([(feats, [0.3] * 4, False)] * 2)
    agent.learn(_window(agent, 4.0, 250.0, enforced=(250.0,) * 4))  # above the prediction: learnt
    assert agent.model.n_seen == before + 4


def test_assess_performance_fails_on_an_excursion_longer_than_the_enforcement_delay() -> None:
    agent, _ = _ready()
    for k, watts in enumerate([300.0, 350.0, 350.0, 300.0]):  # 1,400 W twice against 1,200 W
        agent._track(_window(agent, float(k), watts))
    verdict = agent.assess_performance()
    assert not verdict and "2 windows in a row" in (verdict.reason or "")
    agent._track(_window(agent, 5.0, 350.0))  # one window over: within the delay
    agent._track(_window(agent, 6.0, 250.0))
    assert agent.assess_performance()


def test_assess_performance_fails_when_short_excursions_add_up() -> None:
    agent, _ = _ready()
    for k in range(40):  # every other window over budget, none longer than one window
        agent._track(_window(agent, float(k), 350.0 if k % 2 else 250.0))
    verdict = agent.assess_performance()
    assert not verdict and "in 50% of the last windows" in (verdict.reason or "")
    for k in range(40):  # one window in 20: within the 10 % allowed
        agent._track(_window(agent, float(k), 350.0 if k % 20 == 10 else 250.0))
    assert agent.assess_performance()


def test_assess_performance_fails_when_caps_slow_prompts_more_than_the_static_cap() -> None:
    agent, _ = _ready()
    serving = tuple(ServingStats(0.0, 4, 3, 0.0, 0.0) for _ in range(4))
    for k in range(6):  # every GPU prefilling under a 150 W limit; the static cap is 294 W
        agent._track(_window(agent, float(k), 150.0, enforced=(150.0,) * 4, serving=serving))
    verdict = agent.assess_performance()
    assert not verdict and "slowed prompts" in (verdict.reason or "")
    for k in range(6):  # at the static cap itself: not worse than the fallback
        agent._track(_window(agent, float(k), 290.0, enforced=(290.0,) * 4, serving=serving))
    assert agent.assess_performance()


def test_mitigate_and_default_are_the_safe_static_cap() -> None:
    agent, node = _ready()
    static = (290_000,) * 4  # 1,200 W less 2 % headroom, in 5 W steps
    assert agent.default_predict() == static
    agent.mitigate()
    agent.mitigate()  # idempotent
    assert [node.sensors.gpu.power_limit_mw(i) for i in range(4)] == list(static)
    assert sum(static) <= 1_200_000
    agent.clean_up()
    assert [node.sensors.gpu.power_limit_mw(i) for i in range(4)] == [400_000] * 4


def _model(value: tuple[int, ...]) -> Prediction:
    return Prediction(value=value, source="model", reason=None, created_at=0.0, expires_at=math.inf)


def test_a_board_that_refuses_power_limits_is_held_by_locked_clocks() -> None:
    agent, node = _ready()
    facility = node._facilities["gpu"]  # type: ignore[attr-defined]

    def refuse(index: int, mw: int) -> None:
        raise WriteError(
            "NVML NoPermission", target=f"GPU-{index}", reason="write-failed", errno_name="EPERM"
        )

    agent.out = SimpleNamespace(  # type: ignore[assignment]
        set_power_limit=refuse,
        lock_clocks=node.actuators.gpu.lock_clocks,
        reset_clocks=node.actuators.gpu.reset_clocks,
    )
    agent.act(_model((200_000,) * 4))
    assert agent.limits_refused is not None and "NoPermission" in agent.limits_refused
    assert all(0.2 < c < 1.0 for c in facility._clock_set)
    agent.act(_model((400_000,) * 4))  # caps lifted: clocks reset
    assert facility._clock_set == [1.0] * 4


def test_a_refusal_after_limits_were_taken_is_an_error_for_the_runtime() -> None:
    agent, node = _ready()
    agent.act(_model((300_000,) * 4))
    calls = []

    def refuse(index: int, mw: int) -> None:
        calls.append(index)
        raise WriteError(
            "NVML NoPermission", target=f"GPU-{index}", reason="write-failed", errno_name="EPERM"
        )

    agent.out = SimpleNamespace(  # type: ignore[assignment]
        set_power_limit=refuse,
        lock_clocks=node.actuators.gpu.lock_clocks,
        reset_clocks=node.actuators.gpu.reset_clocks,
    )
    with pytest.raises(WriteError, match="NoPermission"):
        agent.act(_model((250_000,) * 4))
    assert agent.limits_refused is None and calls == [0]


def test_a_reading_nvml_cannot_give_is_an_error_and_the_default_is_the_static_cap() -> None:
    agent, node = _ready()
    gpu = node.sensors.gpu

    class Lost:
        def __getattr__(self, name: str) -> Any:
            if name == "temperature_c":

                def fail(index: int) -> int:
                    raise SensorError("nvml:GPU-2:temperature", "NVMLError_GpuIsLost: GPU is lost")

                return fail
            return getattr(gpu, name)

    agent.gpu = Lost()  # type: ignore[assignment]
    with pytest.raises(SensorError, match="GpuIsLost"):
        agent.collect()
    assert agent.default_predict() == (290_000,) * 4


def test_after_a_window_over_budget_the_brake_locks_clocks_until_limits_are_enforced() -> None:
    node = _node(count=2, budget_share=0.6)
    agent, _ = _ready(node)
    facility = node._facilities["gpu"]  # type: ignore[attr-defined]
    agent.last = _window(agent, node.now(), [400.0, 400.0], budget=480.0)  # 800 W over 480 W
    agent.act(_model((400_000, 400_000)))
    assert [node.sensors.gpu.power_limit_mw(i) for i in range(2)] == [235_000] * 2  # static share
    assert all(c < 0.8 for c in facility._clock_set)
    node.advance(2.0)
    agent.last = _window(agent, node.now(), [200.0, 200.0], enforced=(235.0, 235.0), budget=480.0)
    agent.act(_model((235_000, 235_000)))
    assert facility._clock_set == [1.0, 1.0]  # the limits hold now


def test_the_brake_counts_a_lift_the_board_is_about_to_enforce() -> None:
    node = _node(count=2, budget_share=0.6)
    agent, _ = _ready(node)
    facility = node._facilities["gpu"]  # type: ignore[attr-defined]
    agent.act(_model((200_000, 200_000)))
    node.advance(2.0)
    agent.act(_model((400_000, 400_000)))  # a lift, enforced at the next step
    node.advance(3.0)
    # the window just read was over budget and enforced the old 200 W limits: the lift set
    # a window ago governs the next window, so both boards are braked
    agent.last = _window(agent, node.now(), [250.0, 250.0], enforced=(200.0, 200.0), budget=480.0)
    agent.act(_model((400_000, 400_000)))
    assert all(c < 0.8 for c in facility._clock_set)


def test_the_thermal_guard_keeps_a_hot_inlet_from_throttling() -> None:
    hot = get_scenario("gpu-stress-hot")
    free = simulate(NoopAgent(), duration=900.0, backend=hot.build(1))
    guarded = simulate(
        GpuPowerAgent(),
        duration=900.0,
        backend=hot.build(1),
        params=Params(budget_w=1e6, thermal_limit_c=82.0),
    )
    f, g = free.ground_truth, guarded.ground_truth
    assert f["gpu.thermal_throttle_s"] > 50.0
    assert g["gpu.thermal_throttle_s"] < 0.2 * f["gpu.thermal_throttle_s"]
    assert g["gpu.temperature_max_c"] < f["gpu.temperature_max_c"]


def test_without_serving_metrics_it_predicts_from_nvml_alone() -> None:
    node = _node()
    gpu = node.sensors.gpu

    class NoServing:  # a host whose inference server exports nothing
        def __getattr__(self, name: str) -> Any:
            if name == "serving":
                raise AttributeError(name)
            return getattr(gpu, name)

    node.sensors.gpu = NoServing()  # type: ignore[assignment]
    result = simulate(GpuPowerAgent(), duration=300.0, backend=node)
    assert not result.errors() and result.ground_truth["gpu.budget_longest_excursion_s"] <= 1.0


def test_a_trace_of_requests_the_node_replays(tmp_path: Any) -> None:
    # a fixed request list (as the Azure trace is replayed): same seed, same decisions
    req = LlmRequests(
        arrival_s=np.linspace(0.0, 100.0, 200),
        prompt_tokens=np.full(200, 3000, dtype=np.int64),
        output_tokens=np.full(200, 40, dtype=np.int64),
        span_s=100.0,
    )

    def build() -> SimNode:
        node = SimNode()
        node.attach(
            GpuFacility(
                GpuConfig(count=2, budget_w=560.0), req, seed=3, lock=node.lock, now=node.now, origin=0.0
            )
        )
        return node

    a = simulate(GpuPowerAgent(), duration=200.0, backend=build())
    b = simulate(GpuPowerAgent(), duration=200.0, backend=build())
    assert [p.value for _, p in a.actions] == [p.value for _, p in b.actions]
