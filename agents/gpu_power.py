"""``gpu_power``: more GPUs under the same power budget (POLCA, TAPAS, Splitwise).

A node's GPUs share a power budget (watts: ``budget_w``, or the node's own, which on Linux is
``[linux.gpu] power_budget_w`` or a budget file a rack controller rewrites, re-read when it
changes). Provisioning every GPU for its peak wastes most of the budget: an inference GPU
draws its TDP only while it prefills prompts. Every window (1 s by default) the agent predicts
each GPU's draw for the window its next power limit will govern and caps only when the sum
would pass the budget::

    lift every limit    if  sum(predicted) * (1 + margin) <= budget * (1 - headroom)
    otherwise           cut the predicted peaks to a common level, scaled per GPU by what a
                        cut costs it, until sum(min(predicted, limit)) fits the budget

The story, from sensor to actuator (docs/agents/gpu_power.md has the long version):

* **What is observed.** Per GPU, NVML's board power, enforced limit and temperature, and the
  serving engine's metrics where the node has them (``serving(i)``: requests running and
  waiting, prompt and generated token counters; in the simulator the engine itself, on a
  host vLLM's or TGI's Prometheus endpoint, ``sol.linux.serving``). NVML's utilisation is
  not used: it reads 100 % whenever a kernel runs, prefill or decode alike.
* **What is learnt.** One online quantile regression shared by the GPUs predicts the draw
  (a share of the board's maximum limit) ``horizon`` windows ahead, the window a limit set
  now governs once the board enforces it: from the last two draws, the prompt queue, the
  prompt and token rates, the batch and the temperature. Prompt prefill is compute bound
  and draws the TDP; token generation is memory bound (Splitwise). A capped window shows the
  cap, not the demand: it only teaches the model upward (a censored sample). The
  enforcement delay is measured online: a limit counts as enforced when NVML's enforced
  limit reads it.
* **What keeps it honest.** An adaptive conformal margin (ACI) on the node's sum is steered
  from outcomes so that windows over the budget happen at ``target_miss_rate``, whatever the
  model's quality.
* **Where a cap costs least.** The level a decoding GPU is cut to is ``decode_level`` of a
  prefilling one's (decode is memory bound and barely slows under a cap), a low-priority
  GPU's ``low_priority_level`` of a high-priority one's (POLCA caps low-priority work
  first). No GPU is held to its own prediction: a cap is never below its level, so the caps
  may sum past the budget when a GPU predicted quiet surprises (then the brake below). Caps
  are lifted the first window the budget allows.
* **Too slow or refused.** A power limit takes the enforcement delay to act. When the node
  was over its budget in the last window, the agent locks the clocks of the GPUs it caps at
  the clock that holds their new limit (``brake``), for the windows until the limit is
  enforced; where the board refuses power limits from the first write on (``NO_PERMISSION``,
  ``NOT_SUPPORTED``: virtualised GPUs) it holds every cap by locked clocks instead (a refusal
  after limits were taken is an error for the runtime: mitigate, then quarantine).
* **Thermal.** A GPU at ``thermal_limit_c`` or hotter is capped further, by
  ``thermal_step_w`` per degree over each window, and released slowly below it (TAPAS).
* **Safety.** ``validate`` drops readings with a draw outside [0, 2x the maximum limit],
  frozen readings and a GPU count that changed (a GPU lost); a reading NVML cannot give is
  an error (the runtime serves the default; errors that persist end in quarantine).
  ``assess_model`` fails when the draw is under-predicted by more than ``under_bound`` of
  the maximum too often; ``assess_performance`` when the node stayed over its budget longer
  than the enforcement delay, or over it in more than ``max_over_share`` of the last
  minute's windows, or when the caps' estimated prompt slowdown is over ``max_latency_loss``
  and clearly worse than the safe static cap's would have been (by 10 % and 2 points); ``mitigate``
  sets every GPU to the safe static cap (``budget / GPUs``, which keeps the node under budget
  once enforced); ``default_predict`` is that cap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sol.facilities import ServingStats
from sol.kernel.errors import Unsupported
from sol.predictors.conformal import AdaptiveMargin
from sol.predictors.quantile import QuantileRegressor
from sol.sdk import Agent, Context, ParamError, Prediction, Schedule, Verdict, bounds, check_fields

__all__ = ["GpuPowerAgent", "GpuWindow", "Params", "level_caps", "static_cap_mw"]

_SHARE = bounds(ge=0, le=1)
_POSITIVE = bounds(gt=0)
#: caps are rounded down to this many mW, so a limit is rewritten only when it moves
CAP_QUANTUM_MW = 5_000
#: a window counts as held by its limit when the draw came within this share of it
CENSOR_SHARE = 0.03
#: identical power readings of a serving GPU, not at its limit, that make a frozen sensor
FROZEN_WINDOWS = 10
#: the same without the serving engine's metrics: a steady load can read steady for a while
FROZEN_WINDOWS_BLIND = 30
#: windows (the last minute at 1 s) over which the share of windows over budget is judged
OVER_WINDOWS = 60
#: windows of history kept for the assessments
HISTORY = 120


@dataclass(frozen=True, slots=True)
class Params:
    #: the node's GPU power budget in watts; unset: the node's own (power_budget_mw(), which
    #: on Linux follows [linux.gpu] power_budget_w or its budget file)
    budget_w: float | None = field(default=None, metadata=_POSITIVE)
    #: share of the budget kept free of caps' arithmetic (meters and rounding)
    headroom: float = field(default=0.02, metadata=bounds(ge=0, lt=0.5))
    #: the quantile of each GPU's draw the model predicts
    quantile: float = field(default=0.8, metadata=bounds(gt=0, lt=1))
    lr: float = field(default=0.02, metadata=_POSITIVE)
    #: windows with limits lifted whose node draw may pass the budget, in the long run (ACI)
    target_miss_rate: float = field(default=0.01, metadata=bounds(gt=0, lt=1))
    margin_step: float = field(default=0.05, metadata=_POSITIVE)
    margin_max: float = field(default=1.0, metadata=_POSITIVE)
    #: GPU indices serving low-priority work: capped first
    low_priority: tuple[int, ...] = ()
    #: a capped GPU's limit relative to a high-priority prefilling GPU's: low priority, and
    #: decoding (memory bound: a cap costs it little, Splitwise)
    low_priority_level: float = field(default=0.85, metadata=bounds(gt=0, le=1))
    decode_level: float = field(default=0.8, metadata=bounds(gt=0, le=1))
    #: lock the clocks of newly capped GPUs while their limits wait to be enforced, after a
    #: window over the budget
    brake: bool = True
    #: the exponent of clock in a board's draw above idle (P ~ f ** x), to pick a locked
    #: clock for a limit; lower is safer (a lower clock for the same limit). 1.8 fits
    #: Splitwise's power-capped H100 prompts (docs/simulator.md); DVFS theory (P ~ f V^2)
    #: puts real boards at 2-3, where 1.8 locks a little lower than needed
    clock_power_exponent: float = field(default=1.8, metadata=bounds(gt=0.5, le=4))
    #: thermal guard (TAPAS): cap a GPU at this temperature or above
    thermal_limit_c: float = field(default=83.0, metadata=bounds(gt=0, lt=120))
    thermal_step_w: float = field(default=15.0, metadata=_POSITIVE)
    #: assess_model: a draw more than ``under_bound`` of the maximum above its prediction is an
    #: under-prediction; fail above ``max_under_rate`` of the last windows
    under_bound: float = field(default=0.25, metadata=_SHARE)
    max_under_rate: float = field(default=0.2, metadata=_SHARE)
    #: assess_performance: the caps' estimated prompt-phase slowdown allowed before the safe
    #: static cap is preferred (and only when that cap would have slowed less)
    max_latency_loss: float = field(default=0.10, metadata=bounds(ge=0))
    #: assess_performance: the share of the last minute's windows the node may spend over its
    #: budget, however short each excursion (a model that keeps lifting caps into the brake)
    max_over_share: float = field(default=0.10, metadata=_SHARE)
    #: the enforcement delay assumed until one is measured (s)
    enforce_delay_s: float = field(default=1.0, metadata=bounds(ge=0, le=60))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class GpuWindow:
    """One window's readings of every GPU (watts and degrees)."""

    t: float
    power_w: tuple[float, ...]
    enforced_w: tuple[float, ...]
    temperature_c: tuple[float, ...]
    serving: tuple[ServingStats, ...] | None
    budget_w: float | None

    @property
    def node_w(self) -> float:
        return sum(self.power_w)


def static_cap_mw(
    budget_w: float | None, lo_mw: Sequence[int], hi_mw: Sequence[int], headroom: float
) -> list[int]:
    """The safe static cap: the budget shared equally, inside each board's constraints (the
    lowest settable limit if the budget is below their sum: all a limit can do)."""
    n = len(hi_mw)
    if budget_w is None:
        return list(hi_mw)
    share = budget_w * (1.0 - headroom) * 1000.0 / n
    return [max(lo, min(hi, _quantize(share))) for lo, hi in zip(lo_mw, hi_mw, strict=True)]


def _quantize(mw: float) -> int:
    return int(mw // CAP_QUANTUM_MW) * CAP_QUANTUM_MW


def level_caps(
    demand: Sequence[float], floor: Sequence[float], top: Sequence[float], level: Sequence[float], room: float
) -> list[float]:
    """Caps ``c_i = clamp(lam * level_i, floor_i, top_i)`` with the largest ``lam`` for which
    the predicted draws under them fit: ``sum(min(demand_i, c_i)) <= room``. The peaks are cut
    to a common level (scaled per GPU by ``level``: what its cut costs); a GPU predicted under
    its level is not held to its prediction, so a cap is never below ``lam * level_i``, and a
    GPU that surprises may use its level (the brake catches the rare window over budget).

    >>> [round(c) for c in level_caps([400, 400, 100], [100] * 3, [400] * 3, [1.0, 0.5, 1.0], 700)]
    [400, 200, 400]
    >>> [round(c) for c in level_caps([400, 400, 400], [100] * 3, [400] * 3, [1.0, 1.0, 1.0], 900)]
    [300, 300, 300]
    """

    def caps(lam: float) -> list[float]:
        return [max(f, min(t, lam * v)) for f, t, v in zip(floor, top, level, strict=True)]

    def used(lam: float) -> float:
        return sum(min(d, c) for d, c in zip(demand, caps(lam), strict=True))

    hi = max(t / v for t, v in zip(top, level, strict=True))
    if used(hi) <= room:
        return caps(hi)
    lo = 0.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if used(mid) > room:
            hi = mid
        else:
            lo = mid
    return caps(lo)


class GpuPowerAgent(Agent):
    """Keeps the node's GPUs under a power budget, capping where a cap costs least."""

    name = "gpu_power"
    #: 1 s windows: NVML's power reading is a ~1 s mean and the board settles on a new limit
    #: over about a second; the daemon's cost is a few NVML reads per GPU a second
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)
    Params = Params
    #: for the fault harness (sol.fault_injection.profiles)
    harm_metric = "gpu.budget_violation_s"
    benefit_metric = "gpu.throughput_tokens_per_s"
    fault_scenario = "gpu-stress"

    @classmethod
    def check_params(cls, params: object, schedule: Schedule) -> Sequence[ParamError]:
        p = params if isinstance(params, Params) else Params()
        bad = [i for i in p.low_priority if i < 0]
        if bad:
            return (ParamError("low_priority", f"GPU indices must be >= 0, got {bad}"),)
        return ()

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        self.gpu = ctx.sensors.require("gpu")  # FacilityMissing on a node without GPUs
        self.out = ctx.actuators.require("gpu")
        self.n = int(self.gpu.count())
        if self.n < 1:
            raise ValueError("the node reports no GPU")
        cons = [self.gpu.power_limit_constraints_mw(i) for i in range(self.n)]
        self.lo_mw = [int(lo) for lo, _ in cons]
        self.hi_mw = [int(hi) for _, hi in cons]
        self.tdp_w = [hi / 1000.0 for hi in self.hi_mw]
        #: the limits found at setup, put back by clean_up
        self.original_mw = [int(self.gpu.power_limit_mw(i)) for i in range(self.n)]
        self.serving_fn: Callable[[int], ServingStats] | None = getattr(self.gpu, "serving", None)
        self.serving_problem: str | None = None
        self.clock_range: Callable[[int], tuple[int, int]] | None = getattr(self.gpu, "clock_range_mhz", None)
        self.model = QuantileRegressor(q=self.p.quantile, lr=self.p.lr, initial=1.0)
        self.margin = AdaptiveMargin(
            rate=self.p.target_miss_rate, step=self.p.margin_step, initial=0.1, lo=0.0, hi=self.p.margin_max
        )
        self.low = frozenset(i for i in self.p.low_priority if i < self.n)
        self.horizon = 1 + max(1, math.ceil(self.p.enforce_delay_s / self.schedule.act_every - 1e-9))
        self.last: GpuWindow | None = None
        self.prev: GpuWindow | None = None
        self.prompt_ref = 1.0  # highest prompt-token rate seen per GPU (tokens/s)
        self.gen_ref = 1.0
        self.idle_share = 0.2  # lowest draw seen, a share of the maximum (learnt)
        # features (per GPU) and predictions (per GPU, node) made ``horizon`` windows ago
        self.pending: deque[tuple[list[dict[str, float]], list[float], bool]] = deque(maxlen=8)
        self.features: list[dict[str, float]] = []
        self.under: deque[bool] = deque(maxlen=HISTORY)
        self.over_streak = 0
        self.longest_over = 0
        self.over_recent: deque[bool] = deque(maxlen=OVER_WINDOWS)
        self.losses: deque[tuple[float, float]] = deque(maxlen=HISTORY)  # (agent's, static's)
        self.thermal_mw = list(self.hi_mw)
        self.applied_mw: list[int | None] = [None] * self.n
        self.clock_locked: list[int | None] = [None] * self.n
        self.limits_refused: str | None = None
        self.set_at: list[tuple[float, int] | None] = [None] * self.n
        self.delay_s = self.p.enforce_delay_s
        self.repeats = [0] * self.n
        self.limits_taken = False  # a power limit was set at least once

    # -- the model side -------------------------------------------------------------------
    def budget_w(self) -> float | None:
        if self.p.budget_w is not None:
            return self.p.budget_w
        mw = self.gpu.power_budget_mw()
        return None if mw is None else mw / 1000.0

    def collect(self) -> GpuWindow:
        g = self.gpu
        n = g.count()
        if n != self.n:
            raise RuntimeError(f"the node reports {n} GPUs, {self.n} at setup (a GPU lost?)")
        serving = None
        if self.serving_fn is not None:
            fn = self.serving_fn
            try:
                serving = tuple(fn(i) for i in range(n))
                self.serving_problem = None
            except Exception as exc:  # the endpoint is optional: NVML alone still works
                problem = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, Unsupported):
                    self.serving_fn = None  # none configured: not asked again
                if problem != self.serving_problem and self.ctx.log is not None:
                    self.ctx.log.warning("gpu_power.serving_unavailable", error=problem)
                self.serving_problem = problem
                serving = None
        # a reading NVML cannot give (GPU_IS_LOST, ...) raises: the runtime counts the error
        # and serves the default (the safe static cap); errors that persist end in quarantine
        return GpuWindow(
            t=self.ctx.clock.now(),
            power_w=tuple(g.power_usage_mw(i) / 1000.0 for i in range(n)),
            enforced_w=tuple(g.enforced_power_limit_mw(i) / 1000.0 for i in range(n)),
            temperature_c=tuple(float(g.temperature_c(i)) for i in range(n)),
            serving=serving,
            budget_w=self.budget_w(),
        )

    def validate(self, obs: GpuWindow) -> Verdict:
        if len(obs.power_w) != self.n:
            return Verdict.fail(f"{len(obs.power_w)} GPUs read, {self.n} at setup (a GPU lost?)")
        for i, (w, tdp) in enumerate(zip(obs.power_w, self.tdp_w, strict=True)):
            if not (math.isfinite(w) and 0.0 <= w <= 2.0 * tdp):
                return Verdict.fail(f"GPU {i} draws {w} W, outside [0, {2 * tdp:g}] W")
        for i, c in enumerate(obs.temperature_c):
            if not (math.isfinite(c) and -40.0 <= c <= 150.0):
                return Verdict.fail(f"GPU {i} reads {c} C")
        last = self.last
        if last is not None and obs.t > last.t:
            for i in range(self.n):
                w = obs.power_w[i]
                at_limit = w >= (1.0 - CENSOR_SHARE) * obs.enforced_w[i]
                if w != last.power_w[i] or at_limit:  # a GPU held at its limit reads the limit
                    self.repeats[i] = 0
                    continue
                if obs.serving is not None and last.serving is not None:
                    # the server's batch or queue changed and the draw did not move to the mW
                    a, b = obs.serving[i], last.serving[i]
                    busy = (a.running, a.waiting) != (b.running, b.waiting)
                else:
                    # no engine metrics: a draw above idle that never moves
                    busy = w > 1.05 * self.idle_share * self.tdp_w[i]
                self.repeats[i] = self.repeats[i] + 1 if busy else 0
                need = FROZEN_WINDOWS if obs.serving is not None else FROZEN_WINDOWS_BLIND
                if self.repeats[i] >= need - 1:
                    return Verdict.fail(
                        f"GPU {i} power stuck at {w:g} W for {self.repeats[i] + 1} windows while it served"
                    )
        if obs.budget_w is not None and not (math.isfinite(obs.budget_w) and obs.budget_w > 0):
            return Verdict.fail(f"power budget {obs.budget_w} W")
        return Verdict.ok()

    def _features(self, obs: GpuWindow, prev: GpuWindow | None) -> list[dict[str, float]]:
        out = []
        dt = obs.t - prev.t if prev is not None and obs.t > prev.t else None
        for i in range(self.n):
            tdp = self.tdp_w[i]
            x = {
                "p": obs.power_w[i] / tdp,
                "p1": (prev.power_w[i] if prev is not None else obs.power_w[i]) / tdp,
                "temp": obs.temperature_c[i] / 100.0,
            }
            s = obs.serving
            if s is not None:
                x["wait"] = min(s[i].waiting, 8) / 8.0
                x["queued"] = 1.0 if s[i].waiting > 0 else 0.0
                x["batch"] = math.log1p(max(s[i].running, 0)) / math.log(129.0)
                if dt is not None and prev is not None and prev.serving is not None:
                    pr = max(0.0, s[i].prompt_tokens_total - prev.serving[i].prompt_tokens_total) / dt
                    gr = max(0.0, s[i].generation_tokens_total - prev.serving[i].generation_tokens_total) / dt
                    self.prompt_ref = max(self.prompt_ref, pr)
                    self.gen_ref = max(self.gen_ref, gr)
                    x["prompt"] = pr / self.prompt_ref
                    x["gen"] = gr / self.gen_ref
            out.append(x)
        return out

    def learn(self, obs: GpuWindow) -> None:
        low = min(w / t for w, t in zip(obs.power_w, self.tdp_w, strict=True))
        self.idle_share = min(self.idle_share, max(low, 0.02))
        # what a decision made ``horizon`` windows ago governed: this window
        if len(self.pending) >= self.horizon:
            feats, preds, lifted = self.pending[-self.horizon]
            for i, (x, pred) in enumerate(zip(feats, preds, strict=True)):
                y = obs.power_w[i] / self.tdp_w[i]
                held = (
                    obs.enforced_w[i] < 0.99 * self.tdp_w[i]
                    and obs.power_w[i] >= (1.0 - CENSOR_SHARE) * obs.enforced_w[i]
                )
                if held and y <= pred:
                    continue  # a capped window shows the cap, not the demand
                self.model.learn_one(x, y)
                self.under.append(y - pred > self.p.under_bound)
            budget = obs.budget_w
            if lifted and budget is not None:
                self.margin.learn_one({}, 1.0 if obs.node_w > budget * (1.0 - self.p.headroom) else 0.0)
        self._track(obs)
        self.features = self._features(obs, self.last)
        self.prev, self.last = self.last, obs

    def _track(self, obs: GpuWindow) -> None:
        """Excursions over the budget, the estimated slowdown of the caps, enforcement delays."""
        budget = obs.budget_w
        self.over_recent.append(budget is not None and obs.node_w > budget)
        if budget is not None and obs.node_w > budget:
            self.over_streak += 1
            self.longest_over = max(self.longest_over, self.over_streak)
        else:
            self.over_streak = 0
        for i in range(self.n):
            pending = self.set_at[i]
            if pending is not None and abs(obs.enforced_w[i] * 1000.0 - pending[1]) < 1000.0:
                self.delay_s = max(self.delay_s, obs.t - pending[0] - self.schedule.act_every)
                self.set_at[i] = None
        if obs.serving is not None and budget is not None:
            static = static_cap_mw(budget, self.lo_mw, self.hi_mw, self.p.headroom)
            mine = other = weight = 0.0
            for i in range(self.n):
                if obs.serving[i].waiting <= 0 and obs.power_w[i] < 0.9 * self.tdp_w[i]:
                    continue  # prompts are what a cap slows
                weight += 1.0
                mine += self._slowdown(obs.enforced_w[i], i)
                other += self._slowdown(static[i] / 1000.0, i)
            if weight:
                self.losses.append((mine / weight, other / weight))

    def _slowdown(self, limit_w: float, i: int) -> float:
        """Estimated extra prompt time under ``limit_w`` (prefill draws the maximum)."""
        tdp = self.tdp_w[i]
        idle = self.idle_share * tdp
        if limit_w >= tdp:
            return 0.0
        room = max(limit_w - idle, 1e-3) / max(tdp - idle, 1e-3)
        return float(room ** (-1.0 / 1.79) - 1.0)

    def predict(self) -> tuple[int, ...]:
        budget = self.last.budget_w if self.last is not None else self.budget_w()
        feats = self.features
        if not feats:
            return tuple(self.default_predict())
        preds = [min(1.2, max(self.idle_share, self.model.predict_one(x))) for x in feats]
        demand = [p * t for p, t in zip(preds, self.tdp_w, strict=True)]
        lifted = True
        caps_mw = list(self.hi_mw)
        if budget is not None and sum(self.tdp_w) > budget:  # else every GPU fits at its maximum
            room = budget * (1.0 - self.p.headroom)
            if sum(demand) * (1.0 + self.margin.predict_one({})) > room:
                lifted = False
                level = []
                for i, x in enumerate(feats):
                    prompt = min(1.0, x.get("prompt", 0.0) + x.get("queued", 0.0)) if "wait" in x else x["p"]
                    v = self.p.decode_level + (1.0 - self.p.decode_level) * prompt
                    level.append(v * (self.p.low_priority_level if i in self.low else 1.0))
                caps = level_caps(demand, [lo / 1000.0 for lo in self.lo_mw], self.tdp_w, level, room)
                caps_mw = [
                    max(lo, min(hi, _quantize(c * 1000.0)))
                    for c, lo, hi in zip(caps, self.lo_mw, self.hi_mw, strict=True)
                ]
        self.pending.append((feats, preds, lifted))
        return tuple(caps_mw)

    def assess_model(self) -> Verdict:
        if len(self.under) < 30:
            return Verdict.ok()
        rate = sum(self.under) / len(self.under)
        if rate > self.p.max_under_rate:
            return Verdict.fail(
                f"draw under-predicted by more than {self.p.under_bound:.0%} of the maximum in "
                f"{rate:.0%} of the last {len(self.under)} GPU-windows (limit {self.p.max_under_rate:.0%})"
            )
        return Verdict.ok()

    def default_predict(self) -> tuple[int, ...]:
        return tuple(static_cap_mw(self.budget_w(), self.lo_mw, self.hi_mw, self.p.headroom))

    def fault_aggressive(self) -> tuple[int, ...]:
        """Every limit lifted: the most an adversarial model could ask for."""
        return tuple(self.hi_mw)

    # -- the actuator side ------------------------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        caps = [int(c) for c in prediction.value]
        if len(caps) != self.n:
            raise ValueError(f"{len(caps)} limits for {self.n} GPUs")
        obs = self.last
        now = self.ctx.clock.now()
        fresh = obs is not None and now - obs.t <= 0.5 * self.schedule.act_every
        if not fresh:
            # the model side has no reading of this window (rejected, late, failing): the brake
            # and the thermal guard read the boards themselves
            obs = self._read_now(now)
            fresh = obs is not None
        if fresh and obs is not None:
            self._thermal(obs)
        caps = [max(lo, min(c, t)) for c, t, lo in zip(caps, self.thermal_mw, self.lo_mw, strict=True)]
        over = fresh and obs is not None and obs.budget_w is not None and obs.node_w > obs.budget_w
        if over and obs is not None:
            # the last window passed the budget: the next must not, whatever was predicted
            guard = static_cap_mw(obs.budget_w, self.lo_mw, self.hi_mw, self.p.headroom)
            caps = [min(c, g) for c, g in zip(caps, guard, strict=True)]
        for i, mw in enumerate(caps):
            # the limit that governs the next window: the one enforced now, or one set a window
            # ago that the board is about to enforce, whichever is higher
            before = self.applied_mw[i]
            enforced = obs.enforced_w[i] * 1000.0 if obs is not None else float(self.hi_mw[i])
            next_limit = max(enforced, float(before) if before is not None else enforced)
            if self.limits_refused is None:
                self._set_limit(i, mw, now)
            if self.limits_refused is not None:
                self._clock_for(i, mw)  # limits refused: clocks hold every cap
            elif self.p.brake and over and next_limit > mw + 1000.0:
                self._clock_for(i, mw)  # until the board enforces the new limit
            elif self.clock_locked[i] is not None and (next_limit <= mw + 1000.0 or mw >= self.hi_mw[i]):
                self._reset_clock(i)

    def _read_now(self, now: float) -> GpuWindow | None:
        g = self.gpu
        try:
            return GpuWindow(
                t=now,
                power_w=tuple(g.power_usage_mw(i) / 1000.0 for i in range(self.n)),
                enforced_w=tuple(g.enforced_power_limit_mw(i) / 1000.0 for i in range(self.n)),
                temperature_c=tuple(float(g.temperature_c(i)) for i in range(self.n)),
                serving=None,
                budget_w=self.budget_w(),
            )
        except Exception:  # the act goes on with its caps; the model side reports the sensor
            return None

    def _set_limit(self, i: int, mw: int, now: float) -> None:
        if self.applied_mw[i] == mw:
            return
        try:
            self.out.set_power_limit(i, mw)
        except Exception as exc:
            errno_name = getattr(exc, "errno_name", None)
            refused = errno_name in ("EPERM", "EACCES", "EOPNOTSUPP")
            # refused from the first write on (a virtualised GPU): clocks instead; refused after
            # limits were taken is a fault for the runtime (mitigate, then quarantine)
            if refused and not self.limits_taken and self._clocks_available():
                self.limits_refused = f"{type(exc).__name__}: {exc}"
                if self.ctx.log is not None:
                    self.ctx.log.warning("gpu_power.limits_refused", gpu=i, error=self.limits_refused)
                return
            raise
        self.applied_mw[i] = mw
        self.set_at[i] = (now, mw)
        self.limits_taken = True

    def _clocks_available(self) -> bool:
        if self.clock_range is None or not hasattr(self.out, "lock_clocks"):
            return False
        try:
            self.clock_range(0)
        except Exception:  # no clock range (NVML NotSupported): no clocks to lock
            return False
        return True

    def _clock_for(self, i: int, mw: int) -> None:
        """Lock GPU ``i``'s clock at the one that holds a draw of ``mw`` (reset at the maximum)."""
        if self.clock_range is None or not hasattr(self.out, "lock_clocks"):
            return
        if mw >= self.hi_mw[i]:
            self._reset_clock(i)
            return
        lo, hi = self.clock_range(i)
        idle = self.idle_share * self.hi_mw[i]
        room = max(mw - idle, 0.0) / max(self.hi_mw[i] - idle, 1.0)
        mhz = max(lo, min(hi, int(hi * room ** (1.0 / self.p.clock_power_exponent))))
        if self.clock_locked[i] != mhz:
            self.out.lock_clocks(i, lo, mhz)
            self.clock_locked[i] = mhz

    def _reset_clock(self, i: int) -> None:
        if self.clock_locked[i] is not None and hasattr(self.out, "reset_clocks"):
            self.out.reset_clocks(i)
        self.clock_locked[i] = None

    def _thermal(self, obs: GpuWindow) -> None:
        limit, step = self.p.thermal_limit_c, self.p.thermal_step_w * 1000.0
        for i, c in enumerate(obs.temperature_c):
            if c >= limit:
                now_mw = min(self.thermal_mw[i], int(obs.power_w[i] * 1000.0))
                self.thermal_mw[i] = max(self.lo_mw[i], _quantize(now_mw - step * (c - limit + 1.0)))
            elif c < limit - 3.0 and self.thermal_mw[i] < self.hi_mw[i]:
                self.thermal_mw[i] = min(self.hi_mw[i], self.thermal_mw[i] + int(step))

    def assess_performance(self) -> Verdict:
        delay_windows = max(1, math.ceil(self.delay_s / self.schedule.act_every - 1e-9))
        longest, self.longest_over = self.longest_over, self.over_streak
        if longest > delay_windows:
            return Verdict.fail(
                f"the node stayed over its power budget for {longest} windows in a row, longer than "
                f"the enforcement delay ({self.delay_s:g} s)"
            )
        recent = self.over_recent
        if len(recent) >= OVER_WINDOWS // 3:
            share = sum(recent) / len(recent)
            if share > self.p.max_over_share:
                recent.clear()
                return Verdict.fail(
                    f"the node was over its power budget in {share:.0%} of the last windows "
                    f"(limit {self.p.max_over_share:.0%}), each excursion within the enforcement delay"
                )
        if len(self.losses) >= 5:
            mine = sum(a for a, _ in self.losses) / len(self.losses)
            static = sum(b for _, b in self.losses) / len(self.losses)
            if mine > self.p.max_latency_loss and mine > 1.1 * static + 0.02:
                self.losses.clear()
                return Verdict.fail(
                    f"the caps slowed prompts by an estimated {mine:.0%} (limit "
                    f"{self.p.max_latency_loss:.0%}; the static cap would have {static:.0%})"
                )
        return Verdict.ok()

    def mitigate(self) -> None:
        now = self.ctx.clock.now()
        for i, mw in enumerate(self.default_predict()):
            if self.limits_refused is None:
                self._set_limit(i, mw, now)
            if self.limits_refused is not None:
                self._clock_for(i, mw)

    def clean_up(self) -> None:
        errors: list[str] = []
        for i in range(self.n):
            try:
                self._reset_clock(i)
                if self.limits_refused is None and self.applied_mw[i] is not None:
                    self.out.set_power_limit(i, self.original_mw[i])
                    self.applied_mw[i] = None
            except Exception as exc:  # every GPU gets its try; the journal restores the rest
                errors.append(f"GPU {i}: {type(exc).__name__}: {exc}")
        if errors:
            raise RuntimeError("; ".join(errors))
