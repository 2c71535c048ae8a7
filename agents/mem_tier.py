"""``mem_tier``: keep each workload's hot memory local and its cold memory on the far tier.

A node has a local tier (DRAM next to the CPUs) and a far tier (a CXL memory expander or a
memory-only NUMA node): far memory is cheaper but every access to it costs ~80 ns more. Each
interval (2 s by default, twenty DAMON aggregation intervals) the agent reads the workload's DAMON
regions and moves whole regions between the tiers::

    demote: local regions predicted to stay untouched over the next ``horizon_s``
    promote: far regions found touched, densest first
    within: ``migrate_mb_s`` of copies per second, and the workload's ``slowdown_budget``

The story, from sensor to actuator (docs/agents/mem_tier.md has the long version and figures):

* **What is observed.** Each interval DAMON's snapshot of the last aggregation interval: per
  region ``nr_accesses`` out of ``max_nr_accesses`` (a 100 ms sample of a 2 s interval), and,
  where the facility has it, the workload's memory stall (``pressure()``: the simulator's exact
  extra time; on Linux the cgroup's memory PSI, or the host's, marked as such). Where each
  region lies comes from the agent's own moves, checked against ``placement()`` every
  ``placement_refresh_s``.
* **What is learnt.** (1) *Which regions stay cold*: an online survival model of idleness.
  Every region carries the time since DAMON last saw it touched; per idle-age bucket (1, 2,
  4 ... 512 s) the agent keeps the bytes-seconds regions spent idle at that age and the bytes
  that woke up, with a forgetting half-life, so ``1 - exp(-hazard * horizon_s)`` is the
  probability that a region idle that long is touched within the horizon. Like Pond's
  untouched-memory predictor it learns how much of the workload stays untouched, here per
  region and age. (2) *How sensitive the workload is*: its stall per unit of the access share
  that goes to the far tier (the slowdown it would have with every access far), a regression
  through the origin of the measured stall on the far access share DAMON shows, shrunk towards
  ``prior_sensitivity`` (the top of Pond's distribution), from intervals with no copy in flight;
  those with copies teach what the copies cost (slowdown per GiB/s). Reported also as slowdown
  per far GiB.
* **What is decided.** The predicted slowdown over the next horizon is the sensitivity times
  (the far regions' current access share + for every cold far region, its wake-up probability
  times its share once awake times the time to bring it back). Demotions go in order of
  expected benefit (the least likely to wake first, larger first on ties) while that stays
  under ``budget_use`` of the budget, the copies of the last horizon included; promotions go
  densest first until it does again. Then warm regions, least accessed per byte first, while
  the prediction stays under 70 % of that: a sensitive workload gets only its surely-cold
  regions demoted, an insensitive one also its warm ones, and the first few are what the
  sensitivity is learnt from. Promotions come before demotions within the cap; a full local
  tier first sends cold regions out (a swap).
* **Safety.** ``validate`` rejects snapshots with unsorted or overlapping regions,
  ``nr_accesses`` above the maximum, a stale aggregation interval, or none at all (the target
  is gone). ``assess_model`` fails when too many of the demoted bytes were touched within
  ``horizon_s`` of their move (false cold): more than ``max_false_cold_rate``, or more than
  ``false_cold_slack`` above the wake-up probability the model gave them. ``assess_performance``
  fails when the workload's stall over the last assessment interval passes its budget above
  what the tiers cost anyway (the least of the last 30), while its own demotions are recent.
  ``mitigate`` promotes what it demoted most recently first, within the cap; the following
  default acts go on promoting the rest of the recent demotions at the cap. ``default_predict``
  moves nothing. On Linux every page range moved is journaled first: ``sol restore`` puts it
  back after a crash.

* **What workloads say** (``ctx.hints``, docs/hints.md). A workload whose hints say
  ``far_memory_ok = false`` gets nothing demoted and its far memory promoted, densest first;
  ``far_memory_ok = true`` starts its sensitivity from the bottom of Pond's distribution
  (``FAR_OK_PRIOR``), so it is demoted first, and what is measured corrects it either way;
  ``priority = "high"`` halves its slowdown budget, ``"low"`` raises it by half.
* **Several workloads.** Where the facility names several (``targets()``: the simulator's
  ``MultiMemoryFacility``, on Linux every ``[linux.memory] targets`` entry), the agent keeps all
  of the above per workload (a ``WorkloadTier``: regions, hazard, sensitivity, budget, stall
  history, demotions, false-cold record) and shares what the node has one of: the migration
  cap (one token bucket) and the tiers' free bytes. Each workload plans as above, the most
  sensitive first (its promotions take the free local bytes first); the plans are merged,
  promotions first, each kind by expected benefit across workloads (promotions: slowdown
  relieved per byte; demotions: far bytes per unit of predicted slowdown, so an insensitive
  workload's demotions go first), a workload's own moves keeping their order, and the act
  keeps to the one cap. A plan entry then carries the workload's index. ``validate`` judges
  each workload's snapshot: a bad one (a workload gone, a stale read) is counted and left out
  of learning, the others go on; the interval is rejected only when none is usable.
  ``assess_model`` and ``assess_performance`` fail when any workload's does (the reason names
  it); ``mitigate`` promotes the failing workloads' recent demotions first, then the others'.
  With one workload nothing is named and every decision is what it was.

Also here, for benchmarks/mem_tier.py: ``StaticSplit`` (Pond's static share), ``DamosThreshold``
(the kernel's ``migrate_cold``/``migrate_hot`` schemes) and ``TppLike`` (demote by age of last
access, promote on access seen).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sol.facilities import DamonSnapshot, FacilityMissing, MemoryActuators, MemorySensors, NumaNode
from sol.hints import Hints, HintView
from sol.kernel.errors import SensorError, Unsupported
from sol.sdk import Agent, Context, Prediction, Schedule, Verdict, bounds, check_fields

if TYPE_CHECKING:
    import numpy as np
else:  # the daemon imports every configured agent; numpy (~15 MiB) only once one runs
    from sol.lazy import LazyModule

    np = LazyModule("numpy")

__all__ = [
    "DamosThreshold",
    "IdleHazard",
    "MemTierAgent",
    "MemTierObservation",
    "MemTierObservations",
    "Params",
    "StaticSplit",
    "TppLike",
]

#: idle-age bucket edges, seconds (a region idle ``a`` seconds is in bucket ``searchsorted(a)``)
IDLE_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)
#: a move: ``(start, end, to_node)``, or ``(start, end, to_node, workload index)`` when the
#: facility names several workloads
Move = tuple[int, ...]
#: a plan: its moves in the order to make them
Plan = tuple[Move, ...]
#: free memory the plan leaves on each tier (as the Linux mover keeps)
RESERVE_BYTES = 64 << 20
GIB = float(1 << 30)
#: how fast the learnt migration cost follows each interval with copies
MIGRATION_COST_ALPHA = 0.05
#: the prior sensitivity of a workload whose hints say far memory is acceptable: the bottom
#: of Pond's distribution (most workloads lose under 5 % with all their memory far)
FAR_OK_PRIOR = 0.02
#: the far access share of the prior's pseudo-observations (see ``MemTierAgent.sensitivity``)
PRIOR_FAR_SHARE = 0.01
#: warm regions go far only while the predicted slowdown stays under this share of the limit
WARM_MARGIN = 0.7
#: assessments over which the least slowdown is what the tiers cost anyway
FLOOR_ASSESSMENTS = 30
#: the largest range one move takes (a longer one is cut; the rest waits for a later plan)
MAX_MOVE_BYTES = 1 << 30
#: the node ids of the two tiers in a plan, whatever the host numbers them
LOCAL, FAR = 0, 1

_SHARE = bounds(ge=0, le=1)
_POSITIVE = bounds(gt=0)


@dataclass(frozen=True, slots=True)
class Params:
    #: the workload's slowdown budget (0.02: at most 2 % slower than all local)
    slowdown_budget: float = field(default=0.02, metadata=bounds(gt=0, le=1))
    #: share of the budget the plan may fill; the rest absorbs sampling error and migration cost
    budget_use: float = field(default=0.5, metadata=bounds(gt=0, le=1))
    #: migration cap, MB/s of copies (memtierd's bandwidth setting)
    migrate_mb_s: float = field(default=200.0, metadata=_POSITIVE)
    #: the "next interval" over which a demoted region must stay cold, seconds
    horizon_s: float = field(default=10.0, metadata=_POSITIVE)
    #: a region is a demotion candidate once DAMON saw it untouched this long
    min_idle_s: float = field(default=4.0, metadata=bounds(ge=0))
    #: ... and when its wake-up probability over the horizon is at most this
    max_wake_prob: float = field(default=0.2, metadata=bounds(gt=0, le=1))
    #: the slowdown with every access far, before it is learnt (Pond: a quarter of workloads
    #: lose more than 25 %; 60 % is the top of its distribution)
    prior_sensitivity: float = field(default=0.6, metadata=bounds(ge=0, le=5))
    #: the workload's slowdown per GiB/s of copies, before it is learnt (the simulator's
    #: sensitive workloads lose ~0.15: 4 KiB pages cost ~1.3 s of kernel time per GiB)
    prior_migration_cost: float = field(default=0.15, metadata=bounds(ge=0, le=10))
    #: the prior's weight: as many quiet intervals at a 1 % far access share as this
    sensitivity_samples: int = field(default=30, metadata=bounds(ge=1))
    #: intervals with more far access share than this count in ``sensitivity_samples`` (status)
    min_far_share_to_learn: float = field(default=0.005, metadata=_SHARE)
    #: half-life of what the idleness model and the sensitivity remember, seconds
    forget_s: float = field(default=600.0, metadata=_POSITIVE)
    #: assess_model: the false-cold share of demoted bytes it tolerates, over the last
    #: ``false_cold_window`` judged demotions of the last ``false_cold_memory_s``, from
    #: ``false_cold_min`` of them; and by how much it may exceed what the model predicted
    max_false_cold_rate: float = field(default=0.5, metadata=_SHARE)
    false_cold_slack: float = field(default=0.2, metadata=_SHARE)
    false_cold_window: int = field(default=50, metadata=bounds(ge=1))
    false_cold_min: int = field(default=10, metadata=bounds(ge=1))
    false_cold_memory_s: float = field(default=300.0, metadata=_POSITIVE)
    #: mitigate promotes demotions younger than this, newest first
    recent_s: float = field(default=120.0, metadata=_POSITIVE)
    #: never put more than this share of the workload's bytes on the far tier
    max_far_share: float = field(default=0.9, metadata=_SHARE)
    #: how often the agent checks its idea of where each region lies against placement()
    placement_refresh_s: float = field(default=60.0, metadata=_POSITIVE)
    #: a snapshot whose aggregation interval ended longer ago than this is stale, seconds
    max_snapshot_age_s: float = field(default=5.0, metadata=_POSITIVE)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class MemTierObservation:
    """One interval: the DAMON snapshot and the workload's cumulative stall (None: no sensor)."""

    t: float
    snapshot: DamonSnapshot
    stall_total_s: float | None
    stall_scope: str | None
    #: the workload's name (None: the facility's only one)
    target: str | None = None


class IdleHazard:
    """How likely a region idle for ``a`` seconds is to be touched within ``h`` seconds.

    Per idle-age bucket: bytes-seconds of exposure and bytes that woke up, both decayed with
    half-life ``forget_s``. A bucket starts with one pseudo-region of ``prior_bytes`` that
    wakes within ``prior_wake_s`` on average (unknown ages are presumed risky).
    """

    def __init__(self, *, forget_s: float, prior_bytes: float, prior_wake_s: float) -> None:
        n = len(IDLE_EDGES) + 1
        self.forget_s = forget_s
        self.exposure = np.full(n, prior_bytes * prior_wake_s)
        self.woke = np.full(n, prior_bytes)

    @staticmethod
    def bucket(idle_s: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.searchsorted(IDLE_EDGES, idle_s, side="right")
        return out

    def update(self, idle_s: np.ndarray, size: np.ndarray, woke: np.ndarray, dt: float) -> None:
        """Regions that were idle ``idle_s`` (> 0) at the last read, their sizes, and which were
        seen touched now, ``dt`` seconds later."""
        keep = math.exp(-dt * math.log(2.0) / self.forget_s)
        self.exposure *= keep
        self.woke *= keep
        b = self.bucket(idle_s)
        n = self.exposure.size
        self.exposure += np.bincount(b, weights=size * dt, minlength=n)
        self.woke += np.bincount(b, weights=size * woke, minlength=n)

    def wake_prob(self, idle_s: np.ndarray, horizon_s: float) -> np.ndarray:
        rate = self.woke / self.exposure
        # an older region is never presumed safer than the safest younger bucket learnt says
        # nothing about: use the hazard of its own bucket, but not below the oldest buckets'
        prob: np.ndarray = 1.0 - np.exp(-rate[self.bucket(idle_s)] * horizon_s)
        return prob


class WorkloadTier:
    """One workload's model and record: its regions, idleness hazard, sensitivity, slowdown
    history and demotions. ``MemTierAgent`` holds one per workload and shares among them the
    migration cap (its credit) and the tiers' free bytes."""

    def __init__(
        self, agent: MemTierAgent, index: int, target: str | None, first: DamonSnapshot | None
    ) -> None:
        self.agent = agent
        self.index = index
        #: the workload's name in the facility (None: the facility's only one, never named)
        self.target = target
        self.kw: dict[str, str] = {} if target is None else {"target": target}
        self.ctx = agent.ctx
        self.p = agent.p
        self.schedule = agent.schedule
        self.local_node, self.far_node = agent.local_node, agent.far_node
        fn = getattr(agent.mem, "pressure", None)
        self.pressure_fn: Any = None if fn is None else (lambda: fn(**self.kw))
        sizes = [r.size for r in first.regions] if first is not None else []
        sizes = sizes or [1 << 20]
        self.hazard = IdleHazard(
            forget_s=self.p.forget_s, prior_bytes=float(np.mean(sizes)), prior_wake_s=self.p.horizon_s
        )
        # per region (by start address): arrays aligned to the last snapshot's regions
        self.start = np.zeros(0, dtype=np.int64)
        self.end = np.zeros(0, dtype=np.int64)
        self.idle_s = np.zeros(0)
        self.density = np.zeros(0)  # EWMA of nr_accesses / max
        self.far = np.zeros(0)  # share of each region on the far tier, as the agent believes
        self.last_t: float | None = None
        self.last_window: float | None = None
        self.last_stall: tuple[float, float] | None = None
        self.stall_scope: str | None = None
        # sensitivity: sums of the regression of stall on far access share (decayed)
        self.sxy = 0.0
        self.sxx = 0.0
        self.learn_n = 0
        self.far_share_est = 0.0
        #: the workload's slowdown per GiB/s of copies (learnt from intervals with copies)
        self.migration_cost = self.p.prior_migration_cost
        self.last_moved = 0
        #: (time, bytes) of the copies of the last horizon (the actuator side appends)
        self.copies: deque[tuple[float, int]] = deque(maxlen=4096)
        self.next_refresh = 0.0
        # the actuator side's record: moves done (t, start, end, node, bytes); learn reads them
        self.moves: deque[tuple[float, int, int, int, int]] = deque(maxlen=4096)
        self.demoted: deque[tuple[float, int, int]] = deque(maxlen=4096)  # mitigate's list
        self.pending_judge: deque[tuple[float, int, int, float]] = deque(maxlen=4096)
        #: (judged at, bytes, predicted wake probability, touched within the horizon)
        self.judged: deque[tuple[float, int, float, bool]] = deque(maxlen=self.p.false_cold_window)
        #: the wake probability predict gave each region it plans to demote (by start)
        self.planned_wake: dict[int, float] = {}
        #: when the last copy the agent started is done (the actuator side sets it)
        self.busy_until = -math.inf
        self.assess_stall: tuple[float, float] | None = None
        self.slow_history: deque[float] = deque(maxlen=FLOOR_ASSESSMENTS)
        self.counts = {"moves": 0, "bytes_moved": 0, "bytes_failed": 0, "move_errors": 0}

    def hints(self) -> Hints:
        """What the workload says it tolerates (docs/hints.md): its target is named as the
        config describes it ("cgroup PATH", "pid N") on Linux, by its name in the simulator."""
        view: HintView | None = getattr(self.ctx, "hints", None)
        if view is None or self.target is None:
            return Hints()
        kind, _, rest = self.target.partition(" ")
        if kind == "pid" and rest.isdigit():
            return view(pid=int(rest))
        return view(cgroup=rest if kind == "cgroup" and rest else self.target)

    @property
    def budget(self) -> float:
        """The slowdown budget, by the workload's priority hint: half for ``high``, 1.5x for
        ``low`` (it is the first to give memory up)."""
        return min(1.0, self.p.slowdown_budget * (1.5, 1.0, 0.5)[self.hints().rank])

    def item(self, start: int, end: int, node: int) -> tuple[int, ...]:
        """A plan entry: ``(start, end, node)``, with the workload's index when there are several."""
        return (start, end, node) if self.target is None else (start, end, node, self.index)

    def label(self, text: str) -> str:
        return text if self.target is None else f"{self.target}: {text}"

    # -- model side -----------------------------------------------------------------
    def collect(self) -> MemTierObservation:
        snap = self.agent.mem.regions(**self.kw)
        stall: float | None = None
        scope: str | None = None
        if self.pressure_fn is not None:
            try:
                pr = self.pressure_fn()
                stall, scope = float(pr.stall_total_s), str(pr.scope)
            except Unsupported:
                self.pressure_fn = None
        return MemTierObservation(
            t=self.ctx.clock.now(), snapshot=snap, stall_total_s=stall, stall_scope=scope, target=self.target
        )

    def validate(self, obs: MemTierObservation) -> Verdict:
        s = obs.snapshot
        if not s.regions:
            return Verdict.fail("DAMON has no regions: the monitored target is gone")
        if s.max_nr_accesses <= 0:
            return Verdict.fail(f"max_nr_accesses {s.max_nr_accesses} is not positive")
        age = obs.t - s.t_end
        if s.t_end <= s.t_start and obs.t - s.t_end > self.p.max_snapshot_age_s:
            return Verdict.fail("no complete aggregation interval yet")
        if age > self.p.max_snapshot_age_s:
            return Verdict.fail(f"stale snapshot: its aggregation interval ended {age:.1f} s ago")
        if self.last_window is not None and s.t_end < self.last_window:
            return Verdict.fail("the aggregation interval went backwards")
        prev_end = -1
        for r in s.regions:
            if r.end <= r.start:
                return Verdict.fail(f"empty region [{r.start:#x}, {r.end:#x})")
            if r.start < prev_end:
                return Verdict.fail(f"regions unsorted or overlapping at {r.start:#x}")
            if not 0 <= r.nr_accesses <= s.max_nr_accesses:
                return Verdict.fail(
                    f"nr_accesses {r.nr_accesses} outside 0..{s.max_nr_accesses} at {r.start:#x}"
                )
            prev_end = r.end
        if obs.stall_total_s is not None and not math.isfinite(obs.stall_total_s):
            return Verdict.fail("memory stall is not finite")
        return Verdict.ok()

    def _align(self, start: np.ndarray, end: np.ndarray) -> None:
        """Carry each region's state over to the new snapshot's regions (by start address; a
        region DAMON split or merged starts afresh: idle 0, placement asked)."""
        if np.array_equal(start, self.start) and np.array_equal(end, self.end):
            return
        n = start.size
        idle, dens, far = np.zeros(n), np.zeros(n), np.full(n, np.nan)
        if self.start.size:
            i = np.searchsorted(self.start, start)
            i = np.minimum(i, self.start.size - 1)
            same = (self.start[i] == start) & (self.end[i] == end)
            idle[same] = self.idle_s[i[same]]
            dens[same] = self.density[i[same]]
            far[same] = self.far[i[same]]
        for k in np.flatnonzero(np.isnan(far)).tolist():
            far[k] = self._far_share_of(int(start[k]), int(end[k]))
        self.start, self.end, self.idle_s, self.density, self.far = start, end, idle, dens, far

    def _far_share_of(self, start: int, end: int) -> float:
        try:
            where = self.agent.mem.placement(start, end, **self.kw)
        except (Unsupported, OSError, ValueError):
            return 0.0
        total = sum(where.values())
        return where.get(self.far_node, 0) / total if total > 0 else 0.0

    def learn(self, obs: MemTierObservation) -> None:
        s = obs.snapshot
        regions = s.regions
        start = np.fromiter((r.start for r in regions), dtype=np.int64, count=len(regions))
        end = np.fromiter((r.end for r in regions), dtype=np.int64, count=len(regions))
        nr = np.fromiter((r.nr_accesses for r in regions), dtype=np.float64, count=len(regions))
        self._align(start, end)
        self._apply_moves()
        now = obs.t
        if now >= self.next_refresh:
            self.far = np.array(
                [
                    self._far_share_of(int(a), int(b))
                    for a, b in zip(start.tolist(), end.tolist(), strict=True)
                ]
            )
            self.next_refresh = now + self.p.placement_refresh_s
        size = (end - start).astype(np.float64)
        touched = nr > 0
        dt = 0.0 if self.last_t is None else max(0.0, now - self.last_t)
        if dt > 0:
            idle = self.idle_s > 0
            self.hazard.update(self.idle_s[idle], size[idle], touched[idle].astype(np.float64), dt)
        self.idle_s = np.where(touched, 0.0, self.idle_s + (dt if dt > 0 else s.t_end - s.t_start))
        self.density = 0.7 * self.density + 0.3 * (nr / s.max_nr_accesses)
        self._judge(now, start, end, touched)
        # sensitivity: the stall per unit of far access share (DAMON's view of it)
        weight = nr * size
        total = float(weight.sum())
        share = float(weight @ self.far) / total if total > 0 else 0.0
        self.far_share_est = 0.8 * self.far_share_est + 0.2 * share
        if obs.stall_total_s is not None:
            # intervals with a copy in flight measure the migration, not the far tier: skipped
            quiet = self.last_stall is not None and self.busy_until <= self.last_stall[0]
            moved = self.counts["bytes_moved"]
            if self.last_stall is not None and dt > 0:
                span = now - self.last_stall[0]
                slow = max(0.0, (obs.stall_total_s - self.last_stall[1]) / span) if span > 0 else 0.0
                x = self.far_share_est
                if quiet:
                    keep = math.exp(-dt * math.log(2.0) / self.p.forget_s)
                    self.sxy = self.sxy * keep + x * slow
                    self.sxx = self.sxx * keep + x * x
                    if x > self.p.min_far_share_to_learn:
                        self.learn_n += 1
                elif moved > self.last_moved and span > 0:
                    # what the copies cost: the stall beyond the far tier's, per GiB/s moved
                    rate = (moved - self.last_moved) / GIB / span
                    cost = max(0.0, slow - self.sensitivity * x) / rate
                    self.migration_cost += MIGRATION_COST_ALPHA * (min(cost, 10.0) - self.migration_cost)
            self.last_moved = moved
            self.last_stall = (now, obs.stall_total_s)
            self.stall_scope = obs.stall_scope
        self.last_t = now
        self.last_window = s.t_end

    def _apply_moves(self) -> None:
        """Fold the actuator side's completed moves into the agent's idea of placement."""
        while self.moves:
            _, a, b, node, nbytes = self.moves.popleft()
            if nbytes <= 0 or self.start.size == 0:
                continue
            i = int(np.searchsorted(self.start, a, side="right")) - 1
            if 0 <= i < self.start.size and self.start[i] == a and self.end[i] == b:
                size = float(b - a)
                delta = min(1.0, nbytes / size)
                self.far[i] = (
                    min(1.0, self.far[i] + delta) if node == self.far_node else max(0.0, self.far[i] - delta)
                )

    def _judge(self, now: float, start: np.ndarray, end: np.ndarray, touched: np.ndarray) -> None:
        """Demotions whose horizon is over: false cold when the region was seen touched in it."""
        h = self.p.horizon_s
        touched_starts = set(start[touched].tolist())
        keep: deque[tuple[float, int, int, float]] = deque(maxlen=self.pending_judge.maxlen)
        for t, a, b, q in self.pending_judge:
            if a in touched_starts and now - t <= h:
                self.judged.append((now, b - a, q, True))
            elif now - t > h:
                self.judged.append((now, b - a, q, False))
            else:
                keep.append((t, a, b, q))
        self.pending_judge = keep

    @property
    def sensitivity(self) -> float:
        """The learnt slowdown with every access far: a regression through the origin of the
        stall on the far access share, shrunk towards the prior as if ``sensitivity_samples``
        intervals at a far share of ``PRIOR_FAR_SHARE`` had read exactly the prior."""
        weight = self.p.sensitivity_samples * PRIOR_FAR_SHARE**2
        # a workload that says far memory is fine starts from the bottom of Pond's distribution
        # (most workloads lose under 5 % fully far), so it is the first demoted; what is
        # measured then corrects it either way
        prior = FAR_OK_PRIOR if self.hints().far_memory_ok else self.p.prior_sensitivity
        kappa = (self.sxy + prior * weight) / (self.sxx + weight)
        return min(5.0, max(0.0, kappa))

    def predict(self, room: dict[str, float]) -> tuple[list[tuple[float, Move]], list[tuple[float, Move]]]:
        """This workload's promotions and demotions, each with its expected benefit (promotions:
        slowdown relieved per byte; demotions: far bytes per unit of predicted slowdown), in
        the order it would make them. ``room`` holds what the workloads share: the cap's bytes
        (each workload may plan up to all of it; the act keeps to it) and the tiers' free
        bytes, which this plan takes from."""
        p = self.p
        if self.start.size == 0:
            return [], []
        size = (self.end - self.start).astype(np.float64)
        kappa = self.sensitivity
        weight = self.density * size
        total_w = float(weight.sum())
        share = weight / total_w if total_w > 0 else np.zeros_like(weight)
        # what a region that wakes up weighs: the mean density of the awake regions
        awake = self.density > 0.05
        wake_density = float(self.density[awake].mean()) if awake.any() else 0.5
        wake_share = wake_density * size / max(total_w, wake_density * float(size.sum()) * 0.01, 1.0)
        wake = self.hazard.wake_prob(self.idle_s, p.horizon_s)
        # time a woken far region costs before it is back: one interval plus its copy at the cap
        back_s = self.schedule.act_every + size / (p.migrate_mb_s * 1e6)
        risk = wake * wake_share * np.minimum(1.0, back_s / p.horizon_s)
        is_far = self.far > 0.5
        cold = self.idle_s >= p.min_idle_s
        limit = p.budget_use * self.budget
        # a workload that says far memory is not acceptable: nothing of it goes far, and what
        # is far (first touch, or demoted before it said so) comes back, densest first
        keep_local = self.hints().far_memory_ok is False
        load = kappa * float(share[is_far].sum() + risk[is_far & cold].sum())
        cap = room["cap"]
        local_free = room["local_free"]
        far_free = room["far_free"]
        far_bytes = float((size * self.far).sum())
        max_far = p.max_far_share * float(size.sum())
        # demotion candidates: cold local regions, least likely to wake first, larger on ties
        cand = np.flatnonzero(~is_far & cold & (wake <= p.max_wake_prob) & (not keep_local))
        queue = deque(cand[np.lexsort((-size[cand], wake[cand]))].tolist())
        demote: list[tuple[float, Move]] = []
        promote: list[tuple[float, Move]] = []
        planned: dict[int, float] = {}
        # the interval's slowdown from its copies (learnt cost per GiB/s); demotions keep it and
        # the far tier's predicted cost within the limit, promotions are never held back by it
        # over the horizon: what was copied in the last horizon_s, spread over it
        now = self.ctx.clock.now()
        while self.copies and now - self.copies[0][0] > p.horizon_s:
            self.copies.popleft()
        per_byte = self.migration_cost / GIB / p.horizon_s
        mig = per_byte * sum(b for _, b in self.copies)

        def take_demotion(
            j: int, called_cold: bool = True, gate: float = math.inf, extra: float = 0.0
        ) -> float:
            nonlocal cap, far_free, far_bytes, mig
            nb = float(size[j] * (1.0 - self.far[j]))
            if cap <= 0 or nb > far_free or far_bytes + nb > max_far:
                return 0.0
            copy = per_byte * nb
            if mig + copy > gate:
                return 0.0
            mig += copy
            demote.append(
                (nb / (extra + 1e-9), self.item(int(self.start[j]), int(self.end[j]), self.far_node))
            )
            if called_cold:
                planned[int(self.start[j])] = float(wake[j])
            cap -= nb
            far_free -= nb
            far_bytes += nb
            return nb

        # promotions: touched far regions, densest first, while the plan is over its limit (a
        # region touched in most samples always comes back). A full local tier first sends cold
        # regions out (a swap); the hot one follows once their copies are done
        hot_far = np.flatnonzero(is_far & (True if keep_local else ~cold & (self.density > 0)))
        hot_far = hot_far[np.argsort(-self.density[hot_far], kind="stable")]
        freeing = 0.0
        for j in hot_far.tolist():
            if cap <= 0:
                break
            if load <= limit and not keep_local:
                break
            nb = float(size[j] * self.far[j])
            if nb > local_free:
                while queue and freeing < nb and cap > 0:
                    k = queue.popleft()
                    moved = take_demotion(k, extra=kappa * float(risk[k] + share[k]))
                    freeing += moved
                    load += kappa * float(risk[k] + share[k]) if moved else 0.0
                freeing -= nb
                continue
            promote.append(
                (
                    kappa * float(share[j]) / nb,
                    self.item(int(self.start[j]), int(self.end[j]), self.local_node),
                )
            )
            cap -= nb
            local_free -= nb
            load -= kappa * float(share[j])
        # demotions: the rest of the candidates while the predicted slowdown stays in the limit
        while queue:
            j = queue.popleft()
            extra = kappa * float(risk[j] + share[j])
            if load + extra > limit:
                break
            if take_demotion(j, gate=limit - load - extra, extra=extra):
                load += extra
        else:
            # then warm regions, least accessed per byte first, while their accesses fit in the
            # limit (less a margin, so that sampling noise does not move them back and forth):
            # a workload found insensitive gets warm memory far too, and the first few such
            # regions are what the sensitivity is learnt from
            warm = np.flatnonzero(~is_far & ~cold & (self.density > 0) & (not keep_local))
            warm = warm[np.argsort(share[warm] / size[warm], kind="stable")]
            for j in warm.tolist():
                extra = kappa * float(share[j])
                if load + extra > WARM_MARGIN * limit:
                    break
                if take_demotion(j, called_cold=False, gate=WARM_MARGIN * limit - load - extra, extra=extra):
                    load += extra
        self.planned_wake = planned
        room["local_free"] = local_free
        room["far_free"] = far_free
        return promote, demote

    def assess_model(self) -> Verdict:
        p = self.p
        now = self.ctx.clock.now()
        # judgements age out, so a model that stopped demoting is trusted again in time
        recent = [j for j in self.judged if now - j[0] <= p.false_cold_memory_s]
        n = len(recent)
        if n < p.false_cold_min:
            return Verdict.ok()
        total = sum(b for _, b, _, _ in recent)
        wrong = sum(b for _, b, _, bad in recent if bad)
        predicted = sum(b * q for _, b, q, _ in recent) / total if total > 0 else 0.0
        rate = wrong / total if total > 0 else 0.0
        limit = min(p.max_false_cold_rate, predicted + p.false_cold_slack)
        if rate > limit:
            return Verdict.fail(
                self.label(
                    f"false cold: {rate:.0%} of the {n} last demotions' bytes were touched within "
                    f"{p.horizon_s:g} s (the model said {predicted:.0%}; limit {limit:.0%})"
                )
            )
        return Verdict.ok()

    # -- actuator side ----------------------------------------------------------------
    def move(self, now: float, start: int, end: int, node: int) -> None:
        """One move of the plan (the agent checks the cap's credit); errors are counted."""
        a = self.agent
        if end <= start or node not in (self.local_node, self.far_node):
            self.counts["move_errors"] += 1
            return
        end = min(end, start + MAX_MOVE_BYTES)
        try:
            m = a.mover.migrate(start, end, node, **self.kw)
        except (OSError, ValueError, Unsupported) as exc:
            self.counts["move_errors"] += 1
            self.ctx.log.info(
                "mem_tier.move_failed", start=start, end=end, node=node, error=str(exc), target=self.target
            )
            return
        a.credit -= m.bytes_moved
        if m.bytes_moved > 0:
            self.busy_until = max(self.busy_until, m.done_at)
            self.copies.append((now, m.bytes_moved))
        self.counts["moves"] += 1
        self.counts["bytes_moved"] += m.bytes_moved
        self.counts["bytes_failed"] += m.bytes_failed
        self.moves.append((now, start, end, node, m.bytes_moved + m.bytes_already))
        if node == self.far_node and m.bytes_moved > 0:
            self.demoted.append((now, start, end))
            q = self.planned_wake.get(start)
            if q is not None:  # called cold (a warm region sent far knowingly is not judged)
                self.pending_judge.append((m.done_at, start, end, q))

    def promote_recent(self) -> None:
        """Newest demotions younger than ``recent_s`` back to the local tier, within the cap."""
        agent = self.agent
        now = self.ctx.clock.now()
        agent._refill(now)
        while self.demoted and agent.credit > 0:
            t, a, b = self.demoted[-1]
            if now - t > self.p.recent_s:
                self.demoted.clear()
                break
            self.demoted.pop()
            agent._run((self.item(a, b, self.local_node),))

    def assess_performance(self) -> Verdict:
        if self.pressure_fn is None:
            return Verdict.ok()
        try:
            pr = self.pressure_fn()
        except Unsupported:
            return Verdict.ok()
        now = float(pr.t)
        before = self.assess_stall
        self.assess_stall = (now, float(pr.stall_total_s))
        if before is None or now <= before[0]:
            return Verdict.ok()
        slow = (float(pr.stall_total_s) - before[1]) / (now - before[0])
        # the least slowdown of the last assessments: what the node's tiers cost the workload
        # whatever the agent does (a local tier too small for its hot set); the budget is
        # for what the agent adds to it
        floor = min(self.slow_history) if self.slow_history else 0.0
        self.slow_history.append(slow)
        if not self._recently_demoted(now):
            # far memory the agent did not put there (first touch, another policy): promoting
            # its hot regions is the model's job, and mitigating would undo nothing
            return Verdict.ok()
        # the host's memory PSI counts every task's stalls (reclaim, swap): judged, but marked
        what = "host memory stall (no PSI for the workload's cgroup)" if pr.scope == "host" else "slowdown"
        budget = self.budget
        if slow > floor + budget:
            return Verdict.fail(
                self.label(
                    f"{what} {slow:.1%} over the last interval > budget {budget:.1%}"
                    + (f" over the {floor:.1%} the tiers cost anyway" if floor > 0.001 else "")
                )
            )
        return Verdict.ok()

    def _recently_demoted(self, now: float) -> bool:
        return bool(self.demoted) and now - self.demoted[-1][0] <= self.p.recent_s

    def fault_aggressive(self) -> list[tuple[int, ...]]:
        return [
            self.item(int(a), int(b), self.far_node)
            for a, b in zip(self.start.tolist(), self.end.tolist(), strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        size = (self.end - self.start).astype(np.float64)
        far = float((size * self.far).sum())
        return {
            "regions": int(self.start.size),
            "far_share": far / float(size.sum()) if size.size else 0.0,
            "sensitivity": self.sensitivity,
            "sensitivity_samples": self.learn_n,
            "migration_cost_per_gib_s": self.migration_cost,
            "slowdown_per_far_gib": self.sensitivity * self.far_share_est / max(far / (1 << 30), 1e-9),
            "stall_scope": self.stall_scope,
            **self.counts,
        }


@dataclass(frozen=True, slots=True)
class MemTierObservations:
    """One interval of a node with several workloads: each one's observation, or None where
    reading it failed (the reason in ``problems``)."""

    t: float
    items: tuple[MemTierObservation | None, ...]
    problems: tuple[str | None, ...]


class MemTierAgent(Agent):
    """Keeps hot memory local and cold memory on the far tier (DAMON, bandwidth-capped moves),
    for every workload the memory facility names (``targets()``)."""

    name = "mem_tier"
    schedule = Schedule(
        collect_every=2.0, act_every=2.0, prediction_ttl=6.0, assess_every=10.0, cpu_budget=0.02
    )
    Params = Params
    harm_metric = "mem.extra_time_s"
    benefit_metric = "mem.far_bytes_mean"
    fault_scenario = "default"

    def __init__(self) -> None:
        self.p = Params()

    # -- setup ----------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p = ctx.config
        self.mem: MemorySensors = ctx.sensors.require("memory")
        self.mover: MemoryActuators = ctx.actuators.require("memory")
        targets_fn = getattr(self.mem, "targets", None)
        names: tuple[str, ...] = ()
        if targets_fn is not None:
            try:
                names = tuple(targets_fn())
            except Unsupported as exc:
                raise FacilityMissing("memory", "sensors", f"no workloads: {exc.reason}") from exc
        #: the workloads' names; None: the facility's one workload, never named in its calls
        targets: tuple[str | None, ...] = names if len(names) > 1 else (None,)
        firsts: list[DamonSnapshot | None] = []
        problems: list[str] = []
        for t in targets:
            try:
                firsts.append(self.mem.regions() if t is None else self.mem.regions(target=t))
            except (Unsupported, SensorError, OSError, ValueError) as exc:
                if t is None:
                    if isinstance(exc, Unsupported):
                        raise FacilityMissing("memory", "sensors", f"no DAMON regions: {exc.reason}") from exc
                    raise
                firsts.append(None)
                problems.append(f"{t}: {exc.reason if isinstance(exc, Unsupported) else exc}")
        if all(f is None for f in firsts):
            raise FacilityMissing("memory", "sensors", f"no DAMON regions: {'; '.join(problems)}")
        self.local_node, self.far_node = self._tiers(self.mem.nodes())
        self.cap_bytes = self.p.migrate_mb_s * 1e6 * self.schedule.act_every
        # the cap is an average (memtierd's): a token bucket of one interval's bytes, which a
        # region larger than it overdraws, the next intervals paying the debt back. One bucket
        # for every workload: the node's mover is one
        self.credit = self.cap_bytes
        self.credit_t = ctx.clock.now()
        self.workloads = [
            WorkloadTier(self, i, t, f) for i, (t, f) in enumerate(zip(targets, firsts, strict=True))
        ]
        self.mitigating = False
        #: the workloads whose slowdown passed their budget at the last assessment
        self.failing: list[WorkloadTier] = []
        #: snapshots rejected per workload (several workloads: one bad one stops only itself)
        self.rejected = [0] * len(self.workloads)

    def _tiers(self, nodes: tuple[NumaNode, ...]) -> tuple[int, int]:
        local = [n.node for n in nodes if n.tier == "local"]
        far = [n.node for n in nodes if n.tier == "far"]
        if not local or not far:
            raise FacilityMissing(
                "memory",
                "actuators",
                f"needs a local and a far tier, nodes: {[(n.node, n.tier) for n in nodes]}",
            )
        return local[0], far[0]

    @property
    def multi(self) -> bool:
        return self.workloads[0].target is not None

    # the one workload's state, where there is one (tests and status read these)
    @property
    def sensitivity(self) -> float:
        return self.workloads[0].sensitivity

    @property
    def pending_judge(self) -> deque[tuple[float, int, int, float]]:
        return self.workloads[0].pending_judge

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workloads:
            for k, v in w.counts.items():
                out[k] = out.get(k, 0) + v
        return out

    # -- model side -----------------------------------------------------------------
    def collect(self) -> MemTierObservation | MemTierObservations:
        if not self.multi:
            return self.workloads[0].collect()
        items: list[MemTierObservation | None] = []
        problems: list[str | None] = []
        for w in self.workloads:
            try:
                items.append(w.collect())
                problems.append(None)
            except (Unsupported, SensorError, OSError, ValueError) as exc:
                items.append(None)
                problems.append(exc.reason if isinstance(exc, Unsupported) else str(exc))
        return MemTierObservations(t=self.ctx.clock.now(), items=tuple(items), problems=tuple(problems))

    def _verdicts(self, obs: MemTierObservations) -> list[Verdict]:
        out = []
        for w, o, why in zip(self.workloads, obs.items, obs.problems, strict=True):
            out.append(Verdict.fail(w.label(f"cannot read it: {why}")) if o is None else w.validate(o))
        return out

    def validate(self, obs: MemTierObservation | MemTierObservations) -> Verdict:
        if isinstance(obs, MemTierObservation):
            return self.workloads[0].validate(obs)
        # per workload: a bad snapshot (a workload gone, a stale one) is left out of learning
        # and counted; the interval is rejected only when no workload's is usable
        verdicts = self._verdicts(obs)
        for i, v in enumerate(verdicts):
            if not v:
                self.rejected[i] += 1
                self.ctx.log.info("mem_tier.snapshot_rejected", reason=v.reason)
        if any(verdicts):
            return Verdict.ok()
        return Verdict.fail("; ".join(str(v.reason) for v in verdicts))

    def learn(self, obs: MemTierObservation | MemTierObservations) -> None:
        if isinstance(obs, MemTierObservation):
            self.workloads[0].learn(obs)
            return
        for w, o, v in zip(self.workloads, obs.items, self._verdicts(obs), strict=True):
            if o is not None and v:
                w.learn(o)

    def predict(self) -> Plan:
        """Every workload's moves, promotions first, each kind merged across workloads by
        expected benefit (a workload's own moves keep its order)."""
        nodes = {n.node: n for n in self.mem.nodes()}
        room = {
            "cap": self.credit + self.cap_bytes,
            "local_free": float(nodes[self.local_node].free_bytes) - RESERVE_BYTES,
            "far_free": float(nodes[self.far_node].free_bytes) - RESERVE_BYTES,
        }
        promotions: list[list[tuple[float, Move]]] = []
        demotions: list[list[tuple[float, Move]]] = []
        # the most sensitive workload plans first: its promotions take the free local bytes
        for w in sorted(self.workloads, key=lambda w: -w.sensitivity):
            cap = room["cap"]
            pro, de = w.predict(room)
            room["cap"] = cap  # each plans up to the whole cap; the merged order decides
            promotions.append(pro)
            demotions.append(de)
        plan = [m for _, m in heapq.merge(*promotions, key=lambda x: -x[0])]
        plan += [m for _, m in heapq.merge(*demotions, key=lambda x: -x[0])]
        return tuple(plan)

    def assess_model(self) -> Verdict:
        bad = [v for v in (w.assess_model() for w in self.workloads) if not v]
        return Verdict.fail("; ".join(str(v.reason) for v in bad)) if bad else Verdict.ok()

    def default_predict(self) -> Plan:
        return ()

    # -- actuator side ----------------------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        plan: Plan = tuple(prediction.value or ())
        if prediction.source != "model" and self.mitigating:
            self._promote_recent()
            return
        self.mitigating = False
        self._run(plan)

    def _refill(self, now: float) -> None:
        rate = self.cap_bytes / self.schedule.act_every
        self.credit = min(self.cap_bytes, self.credit + rate * max(0.0, now - self.credit_t))
        self.credit_t = now

    def _run(self, plan: Plan) -> None:
        """Apply moves in order while the cap's credit lasts; errors are counted, never raised.
        An entry is ``(start, end, node)``, or ``(start, end, node, workload index)``."""
        now = self.ctx.clock.now()
        self._refill(now)
        for item in plan:
            if self.credit <= 0:
                break
            w = self.workloads[0]
            try:
                start, end, node, *rest = (int(x) for x in item)
                if rest:
                    (i,) = rest
                    if not 0 <= i < len(self.workloads):
                        raise ValueError(f"no workload {i}")
                    w = self.workloads[i]
            except (TypeError, ValueError):
                w.counts["move_errors"] += 1
                continue
            w.move(now, start, end, node)

    def _promote_recent(self) -> None:
        """Recent demotions back, newest first, within the cap: the workloads found over their
        budget first, then the others."""
        failing = [w for w in self.failing if w in self.workloads]
        for w in failing + [w for w in self.workloads if w not in failing]:
            w.promote_recent()
        if not any(w.demoted for w in self.workloads):
            self.mitigating = False

    def assess_performance(self) -> Verdict:
        verdicts = [(w, w.assess_performance()) for w in self.workloads]
        self.failing = [w for w, v in verdicts if not v]
        bad = [str(v.reason) for _, v in verdicts if not v]
        return Verdict.fail("; ".join(bad)) if bad else Verdict.ok()

    def mitigate(self) -> None:
        self.mitigating = True
        self._promote_recent()

    def clean_up(self) -> None:
        # the journal restores page ranges on Linux; here, the newest demotions come back
        self.mitigating = False
        self._promote_recent()

    # -- fault harness and status ------------------------------------------------------
    def fault_aggressive(self) -> Plan:
        """Every region of every workload to the far tier (the act still keeps to the cap)."""
        return tuple(m for w in self.workloads for m in w.fault_aggressive())

    def describe(self) -> dict[str, Any]:
        if not self.multi:
            return self.workloads[0].describe()
        per = {str(w.target): w.describe() for w in self.workloads}
        for w, n in zip(self.workloads, self.rejected, strict=True):
            per[str(w.target)]["snapshots_rejected"] = n
        return {"workloads": per, **self.counts}


# ---------------------------------------------------------------------------------------
# baselines (benchmarks/mem_tier.py)
# ---------------------------------------------------------------------------------------


class _Baseline(Agent):
    """A policy of whole regions, same sensor, same capped mover, no safeguards of its own;
    it reads DAMON every second (the agent every two)."""

    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=10.0)
    Params = Params

    def __init__(self) -> None:
        self.p = Params()

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.mem = ctx.sensors.require("memory")
        self.mover = ctx.actuators.require("memory")
        nodes = self.mem.nodes()
        self.local_node = next(n.node for n in nodes if n.tier == "local")
        self.far_node = next(n.node for n in nodes if n.tier == "far")
        self.cap_bytes = ctx.config.migrate_mb_s * 1e6 * self.schedule.act_every
        self.credit = self.cap_bytes
        self.credit_t = ctx.clock.now()
        self.snap: DamonSnapshot | None = None
        self.far: dict[int, bool] = {}
        self.init()

    def init(self) -> None:
        pass

    def collect(self) -> DamonSnapshot:
        return self.mem.regions()

    def learn(self, obs: DamonSnapshot) -> None:
        self.snap = obs
        self.observe(obs)

    def observe(self, obs: DamonSnapshot) -> None:
        pass

    def default_predict(self) -> Plan:
        return ()

    def act(self, prediction: Prediction) -> None:
        # the same average cap as the agent's: a bucket of one interval's bytes, overdrawn by
        # a region larger than it and paid back by the next intervals
        now = self.ctx.clock.now()
        rate = self.cap_bytes / self.schedule.act_every
        self.credit = min(self.cap_bytes, self.credit + rate * (now - self.credit_t))
        self.credit_t = now
        for start, end, node in prediction.value or ():
            if self.credit <= 0:
                break
            m = self.mover.migrate(start, end, node)
            self.credit -= m.bytes_moved
            if m.bytes_moved + m.bytes_already > 0:
                self.far[start] = node == self.far_node

    def _is_far(self, start: int, end: int) -> bool:
        if start not in self.far:
            where = self.mem.placement(start, end)
            self.far[start] = where.get(self.far_node, 0) > where.get(self.local_node, 0)
        return self.far[start]


class StaticSplit(_Baseline):
    """Pond's static baseline: a fixed share of the footprint on the far tier, chosen once
    (the highest addresses, as first-touch leaves them), never moved again."""

    name = "static"
    share = 0.25

    def init(self) -> None:
        self.done = False

    def predict(self) -> Plan:
        if self.done or self.snap is None:
            return ()
        self.done = True
        regions = self.snap.regions
        total = sum(r.size for r in regions)
        want = self.share * total
        plan = []
        for r in reversed(regions):
            if want <= 0:
                break
            plan.append((r.start, r.end, self.far_node))
            want -= r.size
        return tuple(plan)

    def act(self, prediction: Prediction) -> None:
        # the static split is placed at start, not at the cap: it stands for first-touch
        for start, end, node in prediction.value or ():
            self.mover.migrate(start, end, node)


class DamosThreshold(_Baseline):
    """The kernel's DAMOS ``migrate_cold`` / ``migrate_hot``: demote a region idle
    (``nr_accesses == 0``) for at least ``A`` aggregation intervals, promote on any access."""

    name = "damos"
    min_age = 50

    def init(self) -> None:
        self.idle: dict[int, int] = {}

    def observe(self, obs: DamonSnapshot) -> None:
        # DAMON's own age of a region at nr_accesses 0 counts the aggregation intervals it stayed
        # there; our snapshots are one aggregation interval a second, so count ours too
        per_read = max(1, round(self.schedule.collect_every / max(obs.t_end - obs.t_start, 1e-6)))
        idle = {}
        for r in obs.regions:
            idle[r.start] = 0 if r.nr_accesses > 0 else self.idle.get(r.start, 0) + per_read
        self.idle = idle

    def predict(self) -> Plan:
        if self.snap is None:
            return ()
        plan = []
        for r in self.snap.regions:
            far = self._is_far(r.start, r.end)
            if r.nr_accesses > 0 and far:
                plan.append((r.start, r.end, self.local_node))
        for r in self.snap.regions:
            if not self._is_far(r.start, r.end) and self.idle.get(r.start, 0) >= self.min_age:
                plan.append((r.start, r.end, self.far_node))
        return tuple(plan)


class TppLike(_Baseline):
    """TPP (ASPLOS'23): demote by age of last access (the inactive LRU's oldest first, while
    the local tier is above its watermark), promote a far page on the access seen.
    Here: demote local regions whose last seen access is older than ``min_idle_s``, oldest
    first, keeping ``free_target`` of the local tier free; promote on any access."""

    name = "tpp"
    min_idle_s = 10.0
    free_target = 0.0

    def init(self) -> None:
        self.last_access: dict[int, float] = {}

    def observe(self, obs: DamonSnapshot) -> None:
        for r in obs.regions:
            if r.nr_accesses > 0 or r.start not in self.last_access:
                self.last_access[r.start] = obs.t

    def predict(self) -> Plan:
        if self.snap is None:
            return ()
        now = self.snap.t
        plan = []
        for r in self.snap.regions:
            if r.nr_accesses > 0 and self._is_far(r.start, r.end):
                plan.append((r.start, r.end, self.local_node))
        old = [
            r
            for r in self.snap.regions
            if not self._is_far(r.start, r.end)
            and now - self.last_access.get(r.start, now) >= self.min_idle_s
        ]
        old.sort(key=lambda r: self.last_access.get(r.start, now))
        plan += [(r.start, r.end, self.far_node) for r in old]
        return tuple(plan)
