"""``cpu_harvest``: lend the primaries' idle cores to a harvest group, safely.

Primary workloads (VMs, cgroups) own the node's cores; a harvest group runs batch work on
whatever it is lent. Every window (200 ms by default) the agent predicts the primaries' *peak*
core need over the next window and lends the rest::

    harvest = total - ceil(predicted peak * (1 + margin) + buffer_cores),  never below 0

The story, from sensor to actuator (docs/agents/cpu_harvest.md has the long version):

* **What is observed.** Each window the primaries' CPU time and run-queue delay, as deltas of
  the cumulative counters (so other readers of the same sensor do not disturb us). Their sum
  is the need: cores used plus cores wanted but not had (a task waiting for a CPU for 1 s per
  second wants one more core). A window is *short* when the waiting exceeds
  ``short_delay_share`` of the need -- the primaries were short of cores.
* **What is learnt.** A cost-sensitive online learner from ``sol.predictors`` predicts a high
  quantile of the next window's jump in peak need from the recent past: the level, rolling
  maxima, the recent distribution of jumps and, as in Coach (ASPLOS'25), what the need
  usually reaches at this time of the day, learnt over days. Under-prediction costs
  ``under_cost`` per core, over-prediction ``over_cost``; the decision is their critical
  quantile. Two learners are available: quantile regression on the pinball loss
  (``learner = "quantile"``, the default) and SmartHarvest-style (EuroSys'21) cost-sensitive
  classification over core counts (``learner = "classifier"``). benchmarks/cpu_harvest.py
  measured the same harvest at the same short rate for both; the regression costs ~5x less
  per window.
* **What keeps it honest.** An adaptive conformal margin (ACI) multiplies the prediction and
  is steered from outcomes so that short windows happen at ``target_short_rate`` in the long
  run, whatever the model's quality; it also absorbs the burstiness inside a window that a
  per-window mean cannot show.
* **Safety.** ``validate`` drops readings that are out of range, stale, frozen, inconsistent
  or incomplete, and those of a usage counter that stands still while the primaries' tasks
  wait for a CPU: it reads as idle primaries (``UsageFreeze``). ``assess_model`` fails when
  the learner under-predicts or the primaries run short too often; ``assess_performance``
  fails on the primaries' CPU pressure (PSI, where the kernel keeps it for their groups) or
  run-queue delay while cores are lent; ``mitigate`` gives every core back at once (the
  runtime then backs off); ``default_predict`` lends nothing (or, if configured, keeps a
  conservative static buffer).

Also here, not registered: ``StaticBufferHarvest``, the koordlet-style baseline that keeps a
fixed number of idle cores above the last observed need (benchmarks/cpu_harvest.py).
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from sol.facilities import CpuUsage, RunQueueDelay
from sol.predictors.base import Features
from sol.predictors.conformal import AdaptiveMargin
from sol.predictors.cost_sensitive import CostSensitiveClassifier
from sol.predictors.quantile import QuantileRegressor, cost_quantile
from sol.predictors.seasonal import TimeOfDayProfile
from sol.safety.validators import Fresh, NotFrozen, all_of, finite, in_range
from sol.sdk import Agent, Context, ParamError, Prediction, Schedule, Verdict, bounds, check_fields

#: windows with nothing lent whose waiting makes the noise floor (``short_delay_floor``)
NOISE_WINDOWS = 200
#: the noise floor over the 95th percentile of those windows' waiting (wake-ups come in bursts)
NOISE_MULT = 3.0
#: run-queue readings measured (each a waiting rate over its own interval) before the first
#: core is lent, so the floor is learnt from waiting seen, not assumed. A host may serve one
#: reading for seconds (sol.linux.cpu, a thread scan): on the build VM, idle, one every
#: ~1.7 s, from 0.00005 to 0.003 cores of waiting, so a few readings miss the loud ones. A
#: simulated node reads every window: there this is within ``warmup_windows``.
NOISE_READINGS = 20
#: waiting (core-seconds) of the primaries' tasks, since their usage counter last moved, that
#: says they ran: far above rounding in the counters, far below one wake-up storm's waiting
FREEZE_WAIT_S = 1e-4
#: how long after that waiting was read the usage counter may still stand before it is called
#: frozen: the kernel charges a running task's time to its cgroup at every tick (1-10 ms) and
#: every switch, so a live counter has moved by then
FREEZE_CONFIRM_S = 0.1

__all__ = [
    "CpuHarvestAgent",
    "HarvestObservation",
    "Params",
    "PeakForecaster",
    "StaticBufferHarvest",
    "StaticParams",
    "UsageFreeze",
    "WindowOutcome",
]

Learner = Literal["quantile", "classifier"]
#: the long-term profile's file in the agent's state directory
PROFILE_FILE = "tod_profile.json"


#: field metadata of the ranges below (sol.sdk.bounds): every number is also finite
_SHARE = bounds(ge=0, le=1)
_POSITIVE = bounds(gt=0)
_NON_NEGATIVE = bounds(ge=0)
_COUNT = bounds(ge=1)


@dataclass(frozen=True, slots=True)
class Params:
    #: the cost-sensitive learner: "quantile" (pinball-loss regression) or "classifier"
    #: (cost-sensitive classification over core counts)
    learner: str = "quantile"
    #: cost of one core short for a window, relative to ``over_cost`` for one core idle; the
    #: learner targets the critical quantile under / (under + over)
    under_cost: float = field(default=99.0, metadata=_POSITIVE)
    over_cost: float = field(default=1.0, metadata=_POSITIVE)
    #: the share of short windows the adaptive margin steers towards
    target_short_rate: float = field(default=0.005, metadata=bounds(gt=0, lt=1))
    #: the adaptive margin: start, step per outcome, bounds (a fraction of the predicted peak)
    margin_initial: float = 0.5
    margin_step: float = field(default=0.02, metadata=_POSITIVE)
    margin_min: float = field(default=-0.25, metadata=bounds(gt=-1))  # -1: predicts no need at all
    margin_max: float = 3.0
    #: cores always left to the primaries above the prediction (a static extra buffer)
    buffer_cores: float = field(default=0.0, metadata=_NON_NEGATIVE)
    #: the primaries' guarantee: never lend so many that fewer than this many remain
    min_primary_cores: int = field(default=1, metadata=_NON_NEGATIVE)
    #: never lend more than this (None: total - min_primary_cores)
    max_harvest_cores: int | None = field(default=None, metadata=_NON_NEGATIVE)
    #: readings per decision window (collect_every = act_every / samples_per_window)
    samples_per_window: int = field(default=1, metadata=_COUNT)
    #: a window is short when run-queue delay exceeds this share of the need, plus the host's
    #: noise floor while the primaries have a core to spare. Every wake-up waits a little for
    #: its CPU: that is noise, not a shortage. The floor is learnt from windows in which
    #: nothing was lent and a core stayed free (three times the 95th percentile of their
    #: waiting, in cores), at most
    #: ``short_delay_floor``. Measured on the 2-vCPU build VM: idle, the whole host waits
    #: 0.0008 cores for 0.002 busy (40 %); sol itself at 20 Hz waits 0.006 for 0.02 busy,
    #: in bursts. Without a floor an idle host read short in ~90 % of windows and nothing was
    #: lent (tests/daemon/test_daemon_systemd_live.py found it). A simulated node has no
    #: such noise: its floor stays 0.
    short_delay_share: float = field(default=0.01, metadata=bounds(ge=0, lt=1))
    short_delay_floor: float = field(default=0.05, metadata=_NON_NEGATIVE)
    #: share of the node that must sit idle all through a window (nothing lent) for its
    #: waiting to teach the noise floor. Wake-up noise waits whatever the load; a busy node's
    #: primaries also wait for each other within a window (bursts shorter than a window), and
    #: that is a shortage the floor must not absorb: on an overcommitted simulated node
    #: (--overcommit 3) a floor learnt at any spare core reached its 0.05 cap and the agent
    #: ran 2.8 % short against its 0.5 % target (docs/agents/cpu_harvest.md).
    noise_headroom: float = field(default=0.5, metadata=_SHARE)
    #: windows observed before the first core is lent
    warmup_windows: int = field(default=20, metadata=_COUNT)
    #: seconds of history for the rolling features
    short_horizon_s: float = field(default=1.0, metadata=_POSITIVE)
    long_horizon_s: float = field(default=60.0, metadata=_POSITIVE)
    #: the time-of-day profile (Coach): on/off, buckets per day, the length of a day (s);
    #: kept in the agent's state directory across restarts, saved every ``profile_save_s``
    time_of_day: bool = True
    tod_buckets: int = field(default=48, metadata=_COUNT)
    day_s: float = field(default=86400.0, metadata=_POSITIVE)
    persist_profile: bool = True
    profile_save_s: float = field(default=600.0, metadata=_POSITIVE)
    #: learning rate of the quantile regression
    lr: float = field(default=0.02, metadata=_POSITIVE)
    #: validate: sample age limit (s), repeated-reading limit, relative usage tolerance
    max_sample_age_s: float = field(default=0.5, metadata=_POSITIVE)
    frozen_samples: int = field(default=20, metadata=bounds(ge=2))  # one repeat is no run
    usage_tolerance: float = field(default=0.05, metadata=_NON_NEGATIVE)
    #: assess_model: over the last ``assess_windows`` windows of the last ``assess_horizon_s``
    #: seconds (the model is judged afresh once its old outcomes have aged out), fail above
    #: these rates
    assess_windows: int = field(default=400, metadata=_COUNT)
    assess_horizon_s: float = field(default=60.0, metadata=_POSITIVE)
    max_under_rate: float = field(default=0.2, metadata=_SHARE)
    max_short_rate: float = field(default=0.05, metadata=_SHARE)
    #: assess_performance: fail when the primaries' PSI "some" avg10 exceeds this (>= 1 turns
    #: the PSI check off), or when their run-queue delay over the assess period exceeds this
    #: share of their CPU time
    max_primary_pressure: float = field(default=0.5, metadata=_NON_NEGATIVE)
    max_primary_delay_share: float = field(default=0.05, metadata=_SHARE)
    #: default_predict: None lends nothing; k keeps k cores idle above the peak need seen
    #: over the last ``default_history_s`` (only while that history is fresh)
    default_buffer_cores: float | None = field(default=None, metadata=_NON_NEGATIVE)
    default_history_s: float = field(default=10.0, metadata=_POSITIVE)

    def __post_init__(self) -> None:
        if self.learner not in ("quantile", "classifier"):
            raise ValueError(f"learner must be 'quantile' or 'classifier', got {self.learner!r}")
        cost_quantile(self.under_cost, self.over_cost)  # validates the costs
        # every number finite and in the range declared next to it (NaN compares false, so a
        # NaN threshold made its check never fail)
        check_fields(self)
        if not self.margin_min <= self.margin_initial <= self.margin_max:
            raise ValueError("need margin_min <= margin_initial <= margin_max")
        if not self.short_horizon_s <= self.long_horizon_s:
            raise ValueError("need 0 < short_horizon_s <= long_horizon_s")


# ---------------------------------------------------------------------------------------
# observations
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HarvestObservation:
    """One reading: the primaries' CPU time and run-queue delay, and the cores lent then."""

    t: float
    usage: CpuUsage
    delay: RunQueueDelay
    harvest: int


@dataclass(frozen=True, slots=True)
class WindowOutcome:
    """What one decision window turned out to be."""

    t: float
    #: the primaries' peak need in the window (cores): used + waiting
    need: float
    #: the primaries were short of cores (run-queue delay above the threshold)
    short: bool
    #: cores were lent during the window (so the outcome says something about our margin)
    lent: bool


class UsageFreeze:
    """Tells a frozen usage counter from idle primaries: it stands still while they wait.

    A cgroup's CPU-time counter (v1 ``cpuacct.usage``, v2 ``cpu.stat`` ``usage_usec``) that
    stops moving reads as primaries gone idle, and the agent would lend them out of their
    cores. Idle primaries leave it still too, but idle tasks wait for no CPU. schedstat
    charges a task's run-queue wait when the task gets a CPU (``sched_info_arrive``); from then
    it runs, and its time reaches the group's counter within a tick. So waiting that grew
    after the counter last moved, with the counter still unmoved ``FREEZE_CONFIRM_S`` after
    that waiting was read, is a stuck counter. Per-group PSI would show it too, but a cgroup v1
    host has only host-wide PSI; the run-queue delay (per-thread schedstat or taskstats, or
    ``/proc/schedstat`` minus the harvest's threads) is there on both.

    The waiting is counted from the first run-queue reading taken after the counter last
    moved: a reading served again from before (sol.linux.cpu reuses costly ones) may hold
    waiting whose CPU time the counter has already charged.

    >>> from sol.facilities import CpuUsage, RunQueueDelay
    >>> freeze = UsageFreeze()
    >>> def read(t, used_s, wait_s):
    ...     usage = CpuUsage(t, "primary", 0.0, 0.05, used_s)
    ...     return freeze.check(usage, RunQueueDelay(t, "primary", wait_s, 0.0, 0.05))
    >>> [read(t, 5.0, 1.0) for t in (1.0, 1.05, 1.1)]  # idle: nothing runs, nothing waits
    [None, None, None]
    >>> [read(t, 5.0, w) is None for t, w in ((1.15, 1.2), (1.2, 1.4), (1.25, 1.6))]
    [True, True, False]
    >>> read(1.3, 5.1, 1.8) is None  # it moves again
    True
    """

    def __init__(self) -> None:
        #: the counter's value, and since when it has held it
        self.total: float | None = None
        self.since = 0.0
        #: the first run-queue reading (time, total) taken since then, and when waiting beyond
        #: it was first read
        self.base: tuple[float, float] | None = None
        self.waited_at: float | None = None

    def check(self, usage: CpuUsage, delay: RunQueueDelay) -> str | None:
        """Why the counter is frozen, or None (one call per reading, in order)."""
        if usage.total_core_s != self.total:
            self.total, self.since = usage.total_core_s, usage.t
            self.base = (delay.t, delay.total_s) if delay.t >= usage.t else None
            self.waited_at = None
            return None
        if self.base is None:
            if delay.t >= self.since:
                self.base = (delay.t, delay.total_s)
            return None
        waited = delay.total_s - self.base[1]
        if self.waited_at is None and waited > FREEZE_WAIT_S:
            self.waited_at = delay.t
        if self.waited_at is None or usage.t - self.waited_at < FREEZE_CONFIRM_S - 1e-9:
            return None
        return (
            f"the primaries' CPU usage counter stands at {usage.total_core_s:.6g} core-s for "
            f"{usage.t - self.since:.3g} s while their tasks waited {waited:.3g} s for a CPU: a frozen "
            "counter (cpuacct.usage / cpu.stat usage_usec), not idle primaries"
        )


class _RollingMax:
    """The maximum of the values of the last ``horizon`` seconds (monotonic deque, O(1))."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t: float, v: float) -> float:
        q = self._q
        while q and q[-1][1] <= v:
            q.pop()
        q.append((t, v))
        while q[0][0] < t - self.horizon:
            q.popleft()
        return q[0][1]


class _RollingRate:
    """The share of true outcomes among the last ``n`` of the last ``horizon`` seconds (O(1))."""

    def __init__(self, n: int, horizon: float) -> None:
        self.n = n
        self.horizon = horizon
        self._q: deque[tuple[float, bool]] = deque()
        self._true = 0

    def add(self, t: float, hit: bool) -> None:
        self._q.append((t, hit))
        self._true += hit
        self.prune(t)

    def prune(self, now: float) -> None:
        q = self._q
        while q and (len(q) > self.n or q[0][0] < now - self.horizon):
            self._true -= q.popleft()[1]

    def replace(self, items: list[tuple[float, bool]], now: float) -> None:
        """Start over from these (time, outcome) pairs, oldest first, as of ``now``."""
        self._q = deque(items)
        self._true = sum(hit for _, hit in items)
        self.prune(now)

    def __len__(self) -> int:
        return len(self._q)

    @property
    def rate(self) -> float:
        return self._true / len(self._q) if self._q else 0.0

    @property
    def count(self) -> int:
        return self._true


class _RollingJumps:
    """Upper quantiles of the changes of the last ``horizon`` seconds (sorted window)."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._q: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []

    def add(self, t: float, v: float) -> None:
        self._q.append((t, v))
        bisect.insort(self._sorted, v)
        while self._q[0][0] < t - self.horizon:
            _, old = self._q.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def quantile(self, q: float) -> float:
        s = self._sorted
        if not s:
            return 0.0
        return s[min(len(s) - 1, int(q * len(s)))]


# ---------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------


class PeakForecaster:
    """Predicts the primaries' peak need over the next window; runtime-free.

    ``update(outcome)`` once per window, in order; ``cores_needed()`` is what to leave to the
    primaries for the next window (prediction times the adaptive margin, plus the buffer).
    Everything the agent learns lives here, so benchmarks and tests can drive it directly.
    """

    def __init__(self, p: Params, total: int) -> None:
        self.p = p
        self.total = total
        self.scale = float(max(total, 1))
        q = cost_quantile(p.under_cost, p.over_cost)
        if p.learner == "classifier":
            self.learner: Any = CostSensitiveClassifier(
                under_cost=p.under_cost, over_cost=p.over_cost, step=0.5, lo=-2 * total, hi=2 * total
            )
        else:
            self.learner = QuantileRegressor(q=q, lr=p.lr)
        self.q = q
        self.profile = TimeOfDayProfile(period=p.day_s, buckets=p.tod_buckets, q=0.95)
        self.margin = AdaptiveMargin(
            rate=p.target_short_rate,
            step=p.margin_step,
            initial=p.margin_initial,
            lo=p.margin_min,
            hi=p.margin_max,
        )
        #: under-predictions of the peak (before the margin), and short windows with cores lent
        self.under = _RollingRate(p.assess_windows, p.assess_horizon_s)
        self.shorts = _RollingRate(p.assess_windows, p.assess_horizon_s)
        self.max_recent = 0.0
        self._max_short = _RollingMax(p.short_horizon_s)
        self._max_long = _RollingMax(p.long_horizon_s)
        self._jumps = _RollingJumps(p.long_horizon_s)
        self.level = 0.0
        self._ewma = 0.0
        self.windows = 0
        self._x: Features | None = None
        #: the predicted peak need for the next window (cores), before the margin
        self.peak = 0.0
        self.t = -math.inf

    @property
    def ready(self) -> bool:
        return self.windows >= self.p.warmup_windows

    def _features(self, t: float, max_short: float, max_long: float) -> Features:
        s, lvl = self.scale, self.level
        tod = 0.0
        if self.p.time_of_day and self.profile.days_seen(t) > 0:
            tod = (self.profile.predict_one({"t": t}) - lvl) / s
        return {
            "level": lvl / s,
            "ewma": (self._ewma - lvl) / s,
            "max_short": (max_short - lvl) / s,
            "max_long": (max_long - lvl) / s,
            "jump90": self._jumps.quantile(0.9) / s,
            "jump99": self._jumps.quantile(0.99) / s,
            "tod": tod,
        }

    def update(self, o: WindowOutcome) -> None:
        need = o.need
        if self._x is not None:
            # the previous window's features, labelled with what happened next
            self.learner.learn_one(self._x, need - self.level)
            self.under.add(o.t, need > self.peak)
            self._jumps.add(o.t, need - self.level)
        if o.lent:
            self.margin.learn_one({}, 1.0 if o.short else 0.0)
            self.shorts.add(o.t, o.short)
        else:
            self.shorts.prune(o.t)
        if self.p.time_of_day:
            self.profile.learn_one({"t": o.t}, need)
        self._ewma = need if self.windows == 0 else 0.8 * self._ewma + 0.2 * need
        self.level = need
        self.windows += 1
        self.t = o.t
        max_short = self._max_short.add(o.t, need)
        max_long = self._max_long.add(o.t, need)
        x = self._features(o.t, max_short, max_long)
        self._x = x
        jump = self.learner.predict_one(x)
        self.peak = need + max(0.0, jump)
        self.max_recent = max_long

    def cores_needed(self) -> float:
        return self.peak * (1.0 + self.margin.value) + self.p.buffer_cores

    def short_rate(self) -> float:
        return self.shorts.rate

    def verdict(self) -> Verdict:
        """Fails when the primaries ran short, or the peak was under-predicted, too often lately."""
        enough = min(100, self.p.assess_windows)
        if len(self.shorts) >= enough and self.shorts.rate > self.p.max_short_rate:
            return Verdict.fail(
                f"primaries short of cores in {self.shorts.count} of the last {len(self.shorts)} windows "
                f"with cores lent ({self.shorts.rate:.1%}, max {self.p.max_short_rate:.1%})"
            )
        if len(self.under) >= enough and self.under.rate > self.p.max_under_rate:
            return Verdict.fail(
                f"under-predicted the peak in {self.under.count} of the last {len(self.under)} windows "
                f"({self.under.rate:.0%}, max {self.p.max_under_rate:.0%})"
            )
        return Verdict.ok()


# ---------------------------------------------------------------------------------------
# the agent
# ---------------------------------------------------------------------------------------


class CpuHarvestAgent(Agent):
    """Lends the primaries' idle cores to the harvest group, predicting their peak need."""

    name = "cpu_harvest"
    #: The window trades the daemon's CPU (each window's steps run cold after a sleep) for
    #: reaction (a spike gets its cores back a window later) and harvest (a longer window
    #: needs a larger margin for the same short rate). 200 ms is the shortest window with which
    #: the daemon and every built-in agent keep within 1 % of a core on a small VM:
    #: docs/agents/cpu_harvest.md, "The default window". prediction_ttl: three windows.
    schedule = Schedule(
        collect_every=0.2,
        act_every=0.2,
        prediction_ttl=0.6,
        assess_every=1.0,
        backoff_initial=2.0,
        backoff_max=60.0,
        cpu_budget=0.2,
    )
    Params = Params
    #: for the fault harness (sol.fault_injection.profiles): what hurts, what is gained, where
    harm_metric = "cpu.primary_unserved_windows"
    benefit_metric = "cpu.harvested_core_s"

    @classmethod
    def check_params(cls, params: object, schedule: Schedule) -> Sequence[ParamError]:
        # setup's model, built as setup builds it (its learners check their own arguments);
        # the core count only sizes it, and the host is not read here
        PeakForecaster(cast(Params, params), total=1)
        return ()

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        # a node without them is not one this agent applies to (FacilityMissing); on Linux the
        # harvest actuator needs the cpu, cpuacct and cpuset cgroup controllers
        self.cpu = ctx.sensors.require("cpu")
        self.harvest = ctx.actuators.require("cpu")
        self.total = int(self.cpu.total_cores())
        if self.total < 1:
            raise RuntimeError(f"the cpu facility reports {self.total} cores")
        cap = self.total - self.p.min_primary_cores
        if self.p.max_harvest_cores is not None:
            cap = min(cap, self.p.max_harvest_cores)
        self.max_lend = max(0, cap)
        self.model = PeakForecaster(self.p, self.total)
        self.fresh = Fresh(max_age=self.p.max_sample_age_s, future_tolerance=self.p.max_sample_age_s)
        self.frozen = NotFrozen(self.p.frozen_samples, what="primary cpu reading")
        self.usage_freeze = UsageFreeze()
        self._usage_frozen = False
        # model side: the previous valid reading, and the window being accumulated
        self._prev: HarvestObservation | None = None
        self._wait_rate = 0.0
        #: waiting rates measured so far; whether the one in use was measured over an interval
        #: with nothing lent (so it may teach the noise floor); cores lent since that reading
        self.wait_readings = 0
        self._wait_clean = False
        self._lent_since_reading = False
        self._win_need = 0.0
        self._win_used = 0.0
        self._win_wait = 0.0
        self._win_free = 0.0
        #: the least idle share of the node over this window (see ``noise_headroom``)
        self._win_idle = 1.0
        self._win_lent = False
        self._win_clean = True
        self._win_samples = 0
        #: waiting (cores) of the last windows in which nothing was lent, and the floor from it
        self._noise: deque[float] = deque(maxlen=NOISE_WINDOWS)
        self._noise_ranked: list[float] = []  # the same values, sorted
        self.noise_floor = 0.0
        #: the windows with cores lent behind ``model.shorts`` (time, waiting, need, cores
        #: free; core-seconds), so they can be judged again when the floor moves, and the
        #: floor they were last judged against
        self._lent_windows: deque[tuple[float, float, float, float]] = deque(maxlen=self.p.assess_windows)
        self._judged_floor = self.noise_floor
        # actuator side: the counters at the previous assessment (usage t and total, delay t
        # and total), and whether any core was lent since then
        self._perf_prev: tuple[float, float, float, float] | None = None
        self._lent_since_assess = False
        self._psi_host_told = False
        # the long-term profile survives restarts (days of learning); the runtime gives each
        # agent its own state directory, and none (".") in tests and simulations without one
        self._profile_path: Path | None = None
        self._profile_saved = ctx.clock.now()
        if self.p.time_of_day and self.p.persist_profile and Path(ctx.state_dir) != Path("."):
            self._profile_path = Path(ctx.state_dir) / PROFILE_FILE
            self._load_profile()

    # -- the long-term profile on disk ---------------------------------------------------
    def _log(self, event: str, **kw: Any) -> None:
        if self.ctx.log is not None:
            self.ctx.log.warning(event, **kw)

    def _load_profile(self) -> None:
        path = self._profile_path
        if path is None or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            if saved.get("version") != 1:
                raise ValueError(f"unknown version {saved.get('version')!r}")
            if float(saved["saved_at"]) > self.ctx.clock.now():
                # the clock is monotonic: a save "from the future" means the host rebooted and
                # the day's buckets no longer line up with this clock
                raise ValueError("saved before the clock's origin (host rebooted?)")
            self.model.profile.load_state(saved["profile"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._log("cpu_harvest.profile_discarded", path=str(path), reason=f"{type(exc).__name__}: {exc}")

    def _save_profile(self) -> None:
        path = self._profile_path
        if path is None:
            return
        now = self.ctx.clock.now()
        self._profile_saved = now
        state = {"version": 1, "saved_at": now, "profile": self.model.profile.state()}
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, path)  # atomic: a crash leaves the old profile or the new one
        except OSError as exc:
            self._log("cpu_harvest.profile_not_saved", path=str(path), error=str(exc))

    # -- model side -------------------------------------------------------------------
    def collect(self) -> HarvestObservation:
        usage: CpuUsage = self.cpu.usage("primary")
        delay: RunQueueDelay = self.cpu.run_queue_delay("primary")
        return HarvestObservation(usage.t, usage, delay, int(self.harvest.harvest_cores()))

    def validate(self, obs: HarvestObservation) -> Verdict:
        if not isinstance(obs, HarvestObservation) or obs.usage is None or obs.delay is None:
            return Verdict.fail(f"incomplete observation: {obs!r}")
        u, d = obs.usage, obs.delay
        verdict = all_of(
            finite((u.cores, u.total_core_s, u.interval, d.total_s, d.rate, obs.t), "primary cpu reading"),
            in_range(u.cores, 0.0, self.total * (1.0 + self.p.usage_tolerance), "primary cores"),
            in_range(d.rate, 0.0, None, "primary run-queue delay rate"),
            in_range(obs.harvest, 0, self.total, "harvest cores"),
            self.fresh.check(obs.t, self.ctx.clock.now()),
        )
        if not verdict:
            return verdict
        if u.group != "primary" or d.group != "primary":
            return Verdict.fail(f"incomplete observation: groups {u.group!r}/{d.group!r}, expected 'primary'")
        prev = self._prev
        if prev is not None:
            if obs.t <= prev.t:
                return Verdict.fail(f"reading at t={obs.t:g} is not newer than the last one (t={prev.t:g})")
            if u.total_core_s < prev.usage.total_core_s or d.total_s < prev.delay.total_s:
                # The counter restarted (a cgroup removed and made again) or dipped: this
                # reading's interval means nothing, but it is the new base. Keeping the old
                # one would reject every reading until the counter climbed back past it, which
                # on a lightly loaded node is a lockout of minutes (seen on held-out traces).
                self._prev = obs
                if self.ctx.log is not None:
                    self.ctx.log.info(
                        "cpu_harvest.counter_rebased",
                        usage_total_s=u.total_core_s,
                        was=prev.usage.total_core_s,
                        delay_total_s=d.total_s,
                        delay_was=prev.delay.total_s,
                    )
                return Verdict.fail(
                    "a cumulative CPU counter went backwards (cgroup recreated?); taken as the new base"
                )
            if u.cores > 0.0 and u.total_core_s == prev.usage.total_core_s:
                return Verdict.fail("primary usage reported without CPU time accruing (frozen sensor?)")
        frozen = self.usage_freeze.check(u, d)
        if frozen is not None:
            if not self._usage_frozen and self.ctx.log is not None:
                self.ctx.log.warning("cpu_harvest.usage_frozen", reason=frozen)
            self._usage_frozen = True
            return Verdict.fail(frozen)
        if self._usage_frozen:
            self._usage_frozen = False
            if self.ctx.log is not None:
                self.ctx.log.info("cpu_harvest.usage_moving", total_core_s=u.total_core_s)
        if u.cores > 0.0:
            # busy primaries move the counters: a reading that repeats whole is a stuck sensor
            # (idle primaries legitimately repeat theirs)
            return self.frozen.check((u.cores, u.total_core_s, d.total_s))
        return Verdict.ok()

    def learn(self, obs: HarvestObservation) -> None:
        prev, self._prev = self._prev, obs
        if prev is None:
            return
        dt = obs.t - prev.t
        used = (obs.usage.total_core_s - prev.usage.total_core_s) / dt
        # The run-queue reading has its own time: a host sensor may serve one reading to
        # several windows when a fresh one costs too much (sol.linux.cpu, a thread scan). A
        # fresh reading gives the waiting rate over its own interval; until the next one,
        # the windows keep that rate -- waiting seen is assumed to go on (the safe side).
        d, d_prev = obs.delay, prev.delay
        # The cores lent over the interval since ``prev``: ``obs.harvest`` is read at its end,
        # before this instant's act, so it is what the act at its start set; ``prev.harvest``
        # held until that act (live, the act trails its model tick by up to 5 ms) and is still
        # set when a mitigation inside the interval gave the cores back. Either one lent means
        # the interval was lent. (``prev.harvest`` alone is the interval before: the first
        # interval of every lending then read as nothing lent, and its waiting as noise.)
        lent = max(prev.harvest, obs.harvest)
        self._lent_since_reading = self._lent_since_reading or lent > 0
        if d.t > d_prev.t:
            self._wait_rate = (d.total_s - d_prev.total_s) / (d.t - d_prev.t)
            self.wait_readings += 1
            self._wait_clean = not self._lent_since_reading
            self._lent_since_reading = False
            if self.wait_readings == NOISE_READINGS and self.ctx.log is not None:
                # an operator sees why nothing was lent until now (seconds on a host that
                # scans threads for run-queue delay), and what waiting will not count as harm
                self.ctx.log.info(
                    "cpu_harvest.noise_measured",
                    readings=self.wait_readings,
                    noise_floor=round(self.noise_floor, 5),
                )
        # clamp what a counter hiccup could produce: no more cores than the node has
        used = min(max(used, 0.0), float(self.total))
        wait = min(max(self._wait_rate, 0.0), 4.0 * self.total)
        self._win_need = max(self._win_need, used + wait)
        self._win_used += used * dt
        self._win_wait += wait * dt
        # cores neither used by the primaries nor lent: while at least one is free, waiting
        # is wake-up noise rather than a shortage (the floor below)
        idle = max(0.0, self.total - lent - used)
        self._win_free += min(1.0, idle) * dt
        self._win_idle = min(self._win_idle, idle / self.total)
        self._win_lent = self._win_lent or lent > 0
        self._win_clean = self._win_clean and self._wait_clean
        self._win_samples += 1
        if self._win_samples < self.p.samples_per_window:
            return
        need_s = self._win_used + self._win_wait
        window_s = dt * self._win_samples
        quiet = self._win_idle >= self.p.noise_headroom and self._win_free >= 0.999 * window_s
        if not self._win_lent and self._win_clean and quiet:
            # nothing lent, much of the node idle all along, and the waiting measured (not
            # assumed) over a time with nothing lent: what they waited was noise
            self._learn_noise(self._win_wait / window_s)
        short = self._short(self._win_wait, need_s, self._win_free)
        if self._win_lent:
            self._lent_windows.append((obs.t, self._win_wait, need_s, self._win_free))
        self.model.update(WindowOutcome(obs.t, self._win_need, short, self._win_lent))
        self._win_need = self._win_used = self._win_wait = self._win_free = 0.0
        self._win_idle = 1.0
        self._win_lent = False
        self._win_clean = True
        self._win_samples = 0
        if self._profile_path is not None and obs.t - self._profile_saved >= self.p.profile_save_s:
            self._save_profile()

    def _short(self, wait_s: float, need_s: float, free_s: float) -> bool:
        """A window was short: its waiting (core-seconds) is above ``short_delay_share`` of its
        need, plus the noise floor for the time a core sat free."""
        return wait_s > self.p.short_delay_share * need_s + self.noise_floor * free_s

    def _rejudge(self) -> None:
        """Judge the recent windows with cores lent again, against the floor as it is now.

        The floor is learnt only while nothing is lent. When the primaries change (a service
        starts, its wake-ups add waiting) after lending began, their new waiting reads short
        against the floor of the old, quieter host, and the model is rejected; the floor is
        then learnt afresh while nothing is lent. Judged again against it, waiting that was
        only the new wake-up noise stops counting, and the model may lend again at once
        instead of after ``assess_horizon_s``; waiting well above what the same primaries
        wait with nothing lent stays short.
        """
        shorts = self.model.shorts
        before = shorts.count
        shorts.replace([(t, self._short(w, n, f)) for t, w, n, f in self._lent_windows], self.model.t)
        self._judged_floor = self.noise_floor
        if shorts.count != before and self.ctx.log is not None:
            self.ctx.log.info(
                "cpu_harvest.rejudged",
                noise_floor=round(self.noise_floor, 5),
                short_before=before,
                short_now=shorts.count,
                windows=len(shorts),
            )

    def _learn_noise(self, waiting: float) -> None:
        """One more window with nothing lent: what its primaries waited is the host's noise."""
        noise, ranked = self._noise, self._noise_ranked
        if len(noise) == noise.maxlen:
            del ranked[bisect.bisect_left(ranked, noise[0])]
        noise.append(waiting)
        bisect.insort(ranked, waiting)
        p95 = ranked[int(0.95 * (len(ranked) - 1))]
        self.noise_floor = min(self.p.short_delay_floor, NOISE_MULT * p95)

    def predict(self) -> int:
        if not self.model.ready or self.wait_readings < NOISE_READINGS:
            return 0  # warming up, or the host's wake-up noise not measured yet
        keep = math.ceil(self.model.cores_needed() - 1e-9)
        return int(min(self.max_lend, max(0, self.total - max(keep, self.p.min_primary_cores))))

    def assess_model(self) -> Verdict:
        if self.noise_floor != self._judged_floor:
            self._rejudge()
        m = self.ctx.metrics
        if m is not None:
            m.gauge("margin", self.model.margin.value, "adaptive margin over the predicted peak (fraction)")
            m.gauge(
                "short_rate",
                self.model.short_rate(),
                "share of recent windows with cores lent that ran short",
            )
            m.gauge("noise_floor", self.noise_floor, "waiting taken as wake-up noise, not a shortage (cores)")
            m.gauge(
                "wait_readings",
                min(self.wait_readings, NOISE_READINGS),
                f"run-queue readings measured, up to the {NOISE_READINGS} needed before any core is lent",
            )
        return self.model.verdict()

    def default_predict(self) -> int:
        k, model = self.p.default_buffer_cores, self.model
        if k is None or not model.ready:
            return 0
        if self.ctx.clock.now() - model.t > self.p.default_history_s:
            return 0  # the history is stale: nothing to size a buffer from
        keep = math.ceil(model.max_recent + k - 1e-9)
        return int(min(self.max_lend, max(0, self.total - max(keep, self.p.min_primary_cores))))

    def fault_aggressive(self) -> int:
        """The decision an adversarial model would make (fault harness): lend all it may."""
        return int(self.max_lend)

    # -- actuator side ----------------------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        cores = int(prediction.value)
        cores = min(max(cores, 0), self.max_lend)
        if cores != self.harvest.harvest_cores():
            self.harvest.set_harvest_cores(cores)
        self._lent_since_assess = self._lent_since_assess or cores > 0

    def assess_performance(self) -> Verdict:
        p = self.p
        usage = self.cpu.usage("primary")
        delay = self.cpu.run_queue_delay("primary")
        prev, self._perf_prev = self._perf_prev, (usage.t, usage.total_core_s, delay.t, delay.total_s)
        lent = self._lent_since_assess or self.harvest.harvest_cores() > 0
        self._lent_since_assess = False
        if not lent:
            # Nothing was lent over the period: whatever the primaries suffer (other tenants,
            # their own threads), it is not our doing, and giving back cores we do not hold
            # cannot help. Judging it as harm would only back the agent off for nothing.
            return Verdict.ok()
        if p.max_primary_pressure < 1.0:
            pressure = self.cpu.pressure("primary")
            if pressure.scope == "group":
                stall = pressure.some_avg10
                limit = p.max_primary_pressure
                if stall > limit:
                    why = f"primaries stalled on CPU {stall:.0%} of the last 10 s, max {limit:.0%}"
                    return Verdict.fail(why)
            elif not self._psi_host_told:
                # Host-wide PSI counts the harvest group's own batch tasks waiting for the cores
                # they were lent: two burners on one lent core read ~100 % "some" by themselves.
                # Judged as the primaries' stall, it backed the agent off at every lend (seen on
                # this VM). The run-queue delay below leaves the harvest's threads out.
                self._psi_host_told = True
                if self.ctx.log is not None:
                    self.ctx.log.info(
                        "cpu_harvest.psi_not_used",
                        reason="only host-wide CPU pressure here, which counts the harvest group's "
                        "own waiting; harm to the primaries is judged on their run-queue delay",
                    )
        if prev is None or usage.t <= prev[0] or delay.t <= prev[2]:
            return Verdict.ok()  # no new run-queue reading since the last assessment
        # rates over each reading's own interval (a host may reuse run-queue readings)
        span = delay.t - prev[2]
        used = (usage.total_core_s - prev[1]) / (usage.t - prev[0])
        waited = (delay.total_s - prev[3]) / span
        # below 0.01 cores, or the host's wake-up noise (learnt by the model side), waiting is
        # not harm whatever its share of a small need
        if waited > p.max_primary_delay_share * (used + waited) and waited > max(0.01, self.noise_floor):
            return Verdict.fail(
                f"primaries waited for a CPU {waited / max(used + waited, 1e-9):.1%} of their CPU time "
                f"over the last {span:.2g} s (max {p.max_primary_delay_share:.0%})"
            )
        return Verdict.ok()

    def mitigate(self) -> None:
        self.harvest.set_harvest_cores(0)

    def clean_up(self) -> None:
        self.mitigate()
        if self._profile_path is not None:
            self._save_profile()


# ---------------------------------------------------------------------------------------
# the baseline
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaticParams:
    #: idle cores kept above the last window's need (koordlet-style static buffer)
    buffer_cores: float = field(default=3.0, metadata=_NON_NEGATIVE)
    min_primary_cores: int = field(default=1, metadata=_NON_NEGATIVE)

    def __post_init__(self) -> None:
        check_fields(self)


class StaticBufferHarvest(Agent):
    """The static baseline: keep ``buffer_cores`` idle above the last window's need.

    The reactive static buffer of koordlet's CPU suppression (lend ``threshold * total -
    used``) and of SmartHarvest's fixed-buffer baseline, at the same window as the agent and
    with the same view of the need (used + waiting). No learning, no margin; lends nothing
    when it cannot see.
    """

    name = "cpu_harvest_static"
    schedule = CpuHarvestAgent.schedule
    Params = StaticParams

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: StaticParams = ctx.config
        self.cpu = ctx.sensors.require("cpu")
        self.harvest = ctx.actuators.require("cpu")
        self.total = int(self.cpu.total_cores())
        self._prev: tuple[float, float, float] | None = None
        self.need: float | None = None

    def collect(self) -> tuple[float, float, float]:
        u = self.cpu.usage("primary")
        d = self.cpu.run_queue_delay("primary")
        return (u.t, u.total_core_s, d.total_s)

    def validate(self, obs: tuple[float, float, float]) -> Verdict:
        return finite(obs, "primary cpu reading")

    def learn(self, obs: tuple[float, float, float]) -> None:
        prev, self._prev = self._prev, obs
        if prev is not None and obs[0] > prev[0]:
            self.need = max(0.0, (obs[1] - prev[1] + obs[2] - prev[2]) / (obs[0] - prev[0]))

    def predict(self) -> int:
        if self.need is None:
            return 0
        keep = max(math.ceil(self.need + self.p.buffer_cores - 1e-9), self.p.min_primary_cores)
        return max(0, self.total - keep)

    def default_predict(self) -> int:
        return 0

    def act(self, prediction: Prediction) -> None:
        cores = int(prediction.value)
        if cores != self.harvest.harvest_cores():
            self.harvest.set_harvest_cores(cores)

    def mitigate(self) -> None:
        self.harvest.set_harvest_cores(0)

    def clean_up(self) -> None:
        self.mitigate()
