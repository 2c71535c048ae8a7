"""``faas_prewarm``: load a function's cache object just before it is needed, drop it after.

A FaaS node keeps each application's package and data (its cache object) in memory for a fixed
keep-alive after each invocation (Azure Functions: 10 minutes when the 2019 trace was taken).
Too short and invocations start cold (seconds: transfer, then the runtime's start-up); too long
and memory holds objects nobody calls. This agent replaces the fixed window with one chosen per
object from what it has learnt, as the hybrid histogram policy of "Serverless in the Wild"
(ATC'20) does, but priced: docs/agents/faas_prewarm.md has the long version and the figures.

* **What is observed.** The platform's invocation log (``faas.invocations(since)``): time,
  function, object. Each window (2 s) the new records are checked and learnt.
* **What is learnt.** Per object (an application: its functions share it), the distribution of
  idle times between invocations, as a decayed histogram over log-spaced bins from 1 s to 4 h
  (``range_s``; longer idle times go to an overflow bin). A rarely seen object borrows from
  similar ones: its histogram is shrunk towards the pool of its group (functions whose names
  share ``group_pattern``'s match, e.g. a trigger prefix; the objects' first idle times only,
  so that the pool says what a rarely seen object does, not what the busy ones do). With
  ``time_of_day``, each object's invocations per hour of the day rescale its idle times (a busy
  hour shortens them) once a day of them has been seen.
* **What is decided.** After each invocation the object is resident over a window ``[a, b)`` of
  the time since it, chosen to minimise the expected cost under the learnt distribution::

      cost(a, b) = size_gb * E[resident seconds] + cold_start_gb_s * P(the next call misses [a, b))

  ``a = 0`` keeps the object from the invocation on; ``a > 0`` unloads it after the invocation
  and loads it again ``lead`` seconds before ``a`` (its transfer and start-up, plus a window).
  ``cold_start_gb_s`` is the stated cost ratio: how many GB-seconds of memory one cold start is
  worth. Past the platform's keep-alive the agent touches the object (a prewarm of a warm object)
  to keep it; at ``b`` it unloads it.
* **Safety.** ``validate`` drops records out of order, from the future, duplicated, naming an
  object the cache does not hold or a function that changed its object, and those the log could
  not parse (Linux: counted by the facility); too many in one window fail it. ``assess_model``
  fails when calls the model predicted warm start cold, when prewarms go unused, or when the
  actuator keeps failing (missing objects, a full disk). ``assess_performance`` fails when the
  node's memory pushes back while prewarms are resident (prewarms refused, prewarmed objects
  reclaimed before use, or the memory facility's free share low); ``mitigate`` unloads what the
  agent prewarmed; ``default_predict`` is the platform's fixed keep-alive: the agent loads
  nothing and unloads only what it loaded itself, ``keepalive_s`` after its last use.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sol.facilities import Invocation
from sol.kernel.errors import SensorError
from sol.sdk import Agent, Context, Prediction, Schedule, Verdict, bounds, check_fields

if TYPE_CHECKING:
    import numpy as np
else:  # the daemon imports every configured agent; numpy (~15 MiB) only once one runs
    from sol.lazy import LazyModule

    np = LazyModule("numpy")

_POSITIVE = bounds(gt=0)
_NON_NEGATIVE = bounds(ge=0)
_SHARE = bounds(ge=0, le=1)
_COUNT = bounds(ge=1)
GB = 1e9


@dataclass(frozen=True, slots=True)
class Params:
    #: the cost ratio: GB-seconds of memory one cold start is worth. 160 GB-s is what a 267 MB
    #: object holds over ten minutes. Chosen on faas-azure2019 seed 1, hour 2 (the smallest
    #: ratio at which the agent had half the 10-minute keep-alive's cold starts; 100: 0.95x
    #: as many at 0.81x the memory); docs/agents/faas_prewarm.md has the sweep and the seeds
    #: and streams it was not tuned on
    cold_start_gb_s: float = field(default=160.0, metadata=_POSITIVE)
    #: the platform's fixed keep-alive (s): default_predict, and when a kept object needs a touch
    keepalive_s: float = field(default=600.0, metadata=_POSITIVE)
    #: idle-time histogram: bins from ``min_idle_s`` to ``range_s`` (log-spaced), overflow above
    range_s: float = field(default=4 * 3600.0, metadata=_POSITIVE)
    min_idle_s: float = field(default=1.0, metadata=_POSITIVE)
    bins: int = field(default=48, metadata=bounds(ge=4, le=400))
    #: weight kept by the histogram at each new idle time (0.99: about the last 100 count)
    decay: float = field(default=0.99, metadata=bounds(gt=0, le=1))
    #: pseudo-counts of the group's pool in a rarely seen object's histogram
    prior_samples: float = field(default=3.0, metadata=_NON_NEGATIVE)
    #: idle times an object needs of its own, or its group's pool, before its window may be
    #: shorter than the platform's keep-alive (before, what is known may only lengthen it)
    min_samples: int = field(default=4, metadata=_NON_NEGATIVE)
    min_pool_samples: int = field(default=200, metadata=_NON_NEGATIVE)
    #: an object's first idle times that teach its group's pool
    pool_samples: int = field(default=8, metadata=_COUNT)
    #: the part of a function's name that names its group (regular expression, first match);
    #: "" pools every object together
    group_pattern: str = r"^[^0-9]*"
    #: time-of-day rescaling of idle times (after ``day_s`` of an object's calls)
    time_of_day: bool = True
    day_s: float = field(default=86400.0, metadata=_POSITIVE)
    #: the shortest unloaded gap worth an unload and reload (s)
    min_gap_s: float = field(default=60.0, metadata=_NON_NEGATIVE)
    #: assumed load rate (bytes/s) and start-up (s) of a prewarm: how far ahead it starts
    load_bps: float = field(default=200e6, metadata=_POSITIVE)
    startup_s: float = field(default=3.0, metadata=_NON_NEGATIVE)
    #: never hold more than this of prewarmed objects at once (GB)
    max_prewarmed_gb: float = field(default=64.0, metadata=_POSITIVE)
    #: validate: a record this far ahead of the clock is from the future (s)
    future_tolerance_s: float = field(default=1.0, metadata=_NON_NEGATIVE)
    #: validate fails when more than this share of a window's records is bad (and 3 or more)
    max_bad_share: float = field(default=0.2, metadata=_SHARE)
    #: seconds between re-reads of the cache's catalogue of objects
    catalogue_every_s: float = field(default=60.0, metadata=_POSITIVE)
    #: assess_model over the last ``assess_events`` calls / prewarms / actions: fail above these
    assess_events: int = field(default=400, metadata=_COUNT)
    min_assess_events: int = field(default=30, metadata=_COUNT)
    max_warm_miss_share: float = field(default=0.25, metadata=_SHARE)
    max_unused_prewarm_share: float = field(default=0.9, metadata=_SHARE)
    max_failed_action_share: float = field(default=0.5, metadata=_SHARE)
    #: assess_performance: fail when this share of the period's prewarms (at least
    #: ``min_pressure_events``) was refused or reclaimed before use, or the memory facility's
    #: free share is below ``min_free_share`` while prewarms are resident
    max_pushed_back_share: float = field(default=0.3, metadata=_SHARE)
    min_pressure_events: int = field(default=5, metadata=_COUNT)
    min_free_share: float = field(default=0.05, metadata=_SHARE)
    #: resident prewarmed objects checked per assessment (a residency read each)
    residency_checks: int = field(default=64, metadata=_COUNT)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.min_idle_s < self.range_s:
            raise ValueError("need min_idle_s < range_s")
        re.compile(self.group_pattern)


@dataclass(frozen=True, slots=True)
class Batch:
    """One window's new invocation records, and the log's problems seen since the last."""

    t: float
    records: tuple[Invocation, ...]
    #: (kind, count) of log problems the facility reported in this window (Linux)
    log_problems: tuple[tuple[str, int], ...] = ()
    #: the log cannot be read at all (deleted, unreadable): the reason
    log_unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``act`` does this window. ``keepalive``: the platform's fixed keep-alive (the
    default): load nothing, unload what the agent loaded once unused for ``keepalive_s``."""

    seq: int = 0
    prewarm: tuple[str, ...] = ()
    evict: tuple[str, ...] = ()
    keepalive: bool = False


KEEPALIVE = Plan(keepalive=True)


def _bin_edges(p: Params) -> np.ndarray:
    inner = np.geomspace(p.min_idle_s, p.range_s, p.bins)
    return np.concatenate([[0.0], inner])  # bins + 1 edges; bin i is [e_i, e_i+1), overflow past


class IdleModel:
    """Per object: decayed histogram of idle times, the pooled prior, the chosen window."""

    def __init__(self, p: Params) -> None:
        self.p = p
        self.edges = _bin_edges(p)
        e = self.edges
        # a representative idle time per bin (geometric middle; half the first edge for bin 0)
        self.rep = np.concatenate([[e[1] / 2], np.sqrt(e[1:-1] * e[2:])])
        self.n_bins = len(self.rep)  # + 1 overflow
        # constant parts of ``window``: min(bin's idle time, edge), and the pairs with k <= j
        self._min_rep_edge = np.minimum(self.rep[:, None], e[None, :])
        jj, kk = np.indices((len(e), len(e)))
        self._not_after = kk <= jj
        self.hist: dict[int, np.ndarray] = {}
        self.count: dict[int, float] = {}
        self.samples: dict[int, int] = {}
        self.pools: dict[str, np.ndarray] = {}

    def bin_of(self, idle: float) -> int:
        if idle >= self.p.range_s:
            return self.n_bins  # overflow
        return max(0, int(np.searchsorted(self.edges, idle, side="right")) - 1)

    def add(self, o: int, group: str, idle: float) -> None:
        b = self.bin_of(idle)
        h = self.hist.get(o)
        if h is None:
            h = self.hist[o] = np.zeros(self.n_bins + 1)
            self.count[o] = 0.0
            self.samples[o] = 0
        d = self.p.decay
        if d < 1.0:
            h *= d
        h[b] += 1.0
        self.count[o] = self.count[o] * d + 1.0
        self.samples[o] += 1
        if self.samples[o] <= self.p.pool_samples:
            pool = self.pools.get(group)
            if pool is None:
                pool = self.pools[group] = np.zeros(self.n_bins + 1)
            pool[b] += 1.0
            if group != "":
                glob = self.pools.get("")
                if glob is None:
                    glob = self.pools[""] = np.zeros(self.n_bins + 1)
                glob[b] += 1.0

    def pool_size(self, group: str) -> float:
        """Idle times in the pool a rarely seen object of ``group`` borrows from."""
        pool = self.pools.get(group)
        if pool is None or pool.sum() < 10:
            pool = self.pools.get("")
        return float(pool.sum()) if pool is not None else 0.0

    def distribution(self, o: int, group: str) -> np.ndarray | None:
        """P(idle in bin i), i < n_bins, and P(overflow) last; None: nothing to go on."""
        h = self.hist.get(o)
        n = self.count.get(o, 0.0)
        pool = self.pools.get(group)
        if pool is None or pool.sum() < 10:
            pool = self.pools.get("")
        w = self.p.prior_samples
        parts = []
        if h is not None and n > 0:
            parts.append(h)
        if pool is not None and pool.sum() > 0 and w > 0:
            parts.append(pool * (w / pool.sum()))
        if not parts:
            return None
        tot: np.ndarray = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        s = float(tot.sum())
        if not s > 0:
            return None
        out: np.ndarray = tot / s
        return out

    def window(self, dist: np.ndarray, size_gb: float, lead: float) -> tuple[float, float, float]:
        """The resident window ``[a, b)`` (s after a call) of least expected cost, and the
        probability that the next call falls in it."""
        p_bins, p_over = dist[:-1], float(dist[-1])
        e = self.edges
        rep = self.rep
        cdf = np.concatenate([[0.0], np.cumsum(p_bins)])  # F(e_j) = P(T < e_j), j = 0..B
        # E[min(T, x)] at every edge x, and at every edge less the lead
        mem_to = p_bins @ self._min_rep_edge + p_over * e
        start = np.maximum(e - lead, 0.0)
        mem_from = p_bins @ np.minimum(rep[:, None], start[None, :]) + p_over * start
        mem_from[0] = 0.0
        k_cost = self.p.cold_start_gb_s
        # cost[j, k]: resident [e_j - lead, e_k) (from the call when j = 0)
        miss = cdf[:, None] + (1.0 - cdf[None, :])
        cost = size_gb * (mem_to[None, :] - mem_from[:, None]) + k_cost * miss
        cost[self._not_after] = np.inf
        # an unload and reload saves too little to pay for the churn (a transfer on the node's
        # shared link, a refused eviction while the call still runs) under ``min_gap_s``
        cost[(start < self.p.min_gap_s) & (e > 0)] = np.inf
        # Ties are common: past the longest idle time an object has shown, every window end
        # costs the same under its histogram (the call has surely come by then), and which one
        # argmin returned was floating-point noise (the order of a sum moved the sample's cold
        # starts by 15 %). Among costs equal to a part in a million, the least resident time
        # is taken: the window that holds memory for no expected gain is the one to avoid.
        low = float(cost.min())
        near = cost <= low + 1e-6 * max(1.0, abs(low))
        span = np.where(near, (e[None, :] - start[:, None]), np.inf)
        j, k = divmod(int(np.argmin(span)), cost.shape[1])
        if not cost[j, k] < k_cost:  # never resident beats any window
            return 0.0, 0.0, 0.0
        return float(e[j]), float(e[k]), float(cdf[k] - cdf[j])


class FaasPrewarmAgent(Agent):
    """Pre-warms FaaS cache objects before predicted invocations, unloads them when idle."""

    name = "faas_prewarm"
    #: seconds are the facility's scale: a cold start takes seconds, idle times run to hours.
    #: One window reads the log's new lines and pops the decisions due; assessments every 30 s.
    schedule = Schedule(
        collect_every=2.0,
        act_every=2.0,
        prediction_ttl=6.0,
        assess_every=30.0,
        backoff_initial=30.0,
        backoff_max=600.0,
        cpu_budget=0.05,
    )
    Params = Params
    #: for the fault harness (sol.fault_injection.profiles)
    harm_metric = "faas.cold_start_wait_s"
    benefit_metric = None
    fault_scenario = "default"

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        self.faas = ctx.sensors.require("faas")
        self.out = ctx.actuators.require("faas")
        self.memory = ctx.sensors.memory  # optional: the node's free memory
        self._group_re = re.compile(self.p.group_pattern)
        self.model = IdleModel(self.p)
        now = ctx.clock.now()
        # catalogue: object name -> index, sizes
        self.index: dict[str, int] = {}
        self.names: list[str] = []
        self.size: list[int] = []
        self._catalogue_t = -math.inf
        self._refresh_catalogue(now)
        # model side: the log position, per-object state
        #: the first read takes the history the platform keeps (its log since the start)
        self._since = -math.inf
        self._edge: dict[tuple[float, str, str], int] = {}  # records read at exactly _since
        self._last_ok_t = -math.inf
        self.fn_object: dict[str, int] = {}
        self.obj_group: dict[int, str] = {}
        self.last_call: dict[int, float] = {}
        self.first_call: dict[int, float] = {}
        self.tod: dict[int, np.ndarray] = {}
        #: the plan after each object's last call: call, a, b (rescaled to this hour), p_in,
        #: touch due, stage (0 unload after the call, 1 prewarm, 2 keep/touch, 3 done), and
        #: a, b as learnt (before the time-of-day rescaling)
        self.win: dict[int, list[float]] = {}
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, float] = {}
        self._seq = 0
        self._unapplied: list[Plan] = []
        self._pending: tuple[float, list[tuple[float, int, int, str]]] | None = None
        self.counts: dict[str, int] = {
            "records": 0,
            "out_of_order": 0,
            "future": 0,
            "duplicated": 0,
            "unknown_object": 0,
            "unknown_function": 0,
            "log_malformed": 0,
            "log_problems": 0,
        }
        # judged outcomes (model side): 1 = a call predicted warm that started cold
        self._warm_calls: deque[int] = deque(maxlen=self.p.assess_events)
        # act side: objects it loaded (name -> [loaded at, ready at, used]), what it dropped,
        # evictions to retry while a call runs, outcomes of prewarms and actions
        self.held: dict[str, list[float]] = {}
        self.held_bytes = 0
        self.dropped_at: dict[int, float] = {}
        self.prewarm_ready: dict[int, float] = {}
        self._retry: dict[str, int] = {}
        self._applied_seq = -1
        self._prewarm_used: deque[int] = deque(maxlen=self.p.assess_events)
        self._action_failed: deque[int] = deque(maxlen=self.p.assess_events)
        self.act_counts: dict[str, int] = {
            "prewarms": 0,
            "touches": 0,
            "evictions": 0,
            "refused": 0,
            "reclaimed": 0,
            "failed": 0,
        }
        self._pushed_back = 0
        self._loads_since_assess = 0
        self._raise: Exception | None = None
        self._check_cursor = 0
        self._problem_logged: set[str] = set()

    # -- helpers -------------------------------------------------------------------------
    def _log(self, event: str, **kw: Any) -> None:
        if self.ctx.log is not None:
            self.ctx.log.warning(event, **kw)

    def _refresh_catalogue(self, now: float) -> None:
        self._catalogue_t = now
        for obj in self.faas.objects():
            if obj.name not in self.index:
                self.index[obj.name] = len(self.names)
                self.names.append(obj.name)
                self.size.append(int(obj.size_bytes))
            else:
                self.size[self.index[obj.name]] = int(obj.size_bytes)

    def _group(self, function: str) -> str:
        m = self._group_re.match(function) if self.p.group_pattern else None
        return m.group(0) if m else ""

    def _tod_factor(self, o: int, t: float) -> float:
        """How much busier than its average this hour of the day is for ``o`` (1: no profile)."""
        if not self.p.time_of_day:
            return 1.0
        hod = self.tod.get(o)
        first = self.first_call.get(o)
        if hod is None or first is None or t - first < self.p.day_s:
            return 1.0
        total = float(hod.sum())
        if total < 48:
            return 1.0
        h = int((t % self.p.day_s) / self.p.day_s * 24) % 24
        f = (24.0 * hod[h] + 24.0) / (total + 24.0 * 1.0)
        return float(min(4.0, max(0.25, f)))

    def _lead(self, o: int) -> float:
        return self.schedule.act_every + self.size[o] / self.p.load_bps + self.p.startup_s

    # -- model side ----------------------------------------------------------------------
    def collect(self) -> Batch:
        now = self.ctx.clock.now()
        if now - self._catalogue_t >= self.p.catalogue_every_s:
            self._refresh_catalogue(now)
        try:
            records = tuple(self.faas.invocations(self._since))
        except SensorError as exc:
            # malformed lines: the facility skipped and counted them (log_status below) and
            # kept the good ones, which a second read returns; anything else propagates
            if "bad invocation record" not in str(exc):
                raise
            records = tuple(self.faas.invocations(self._since))
        problems: tuple[tuple[str, int], ...] = ()
        unavailable = None
        status = getattr(self.faas, "log_status", None)
        if callable(status):
            st = status()
            problems = tuple(sorted((str(k), int(v)) for k, v in st.get("new_problems", {}).items()))
            unavailable = st.get("unavailable")
        return Batch(now, records, problems, unavailable)

    def _clean(self, batch: Batch) -> tuple[list[tuple[float, int, int, str]], int]:
        """The batch's usable records (t, object, function's group idx...), and how many bad."""
        out: list[tuple[float, int, int, str]] = []
        bad = 0
        edge = dict(self._edge)
        last = self._last_ok_t
        seen: set[tuple[float, str, str]] = set()
        limit = batch.t + self.p.future_tolerance_s
        c = self.counts
        for r in batch.records:
            key = (r.t, r.function, r.object)
            if edge.get(key, 0) > 0:  # read again at the edge of the last window: not new
                edge[key] -= 1
                continue
            c["records"] += 1
            t = r.t
            if not (isinstance(t, float | int) and math.isfinite(t)) or not r.function or not r.object:
                c["unknown_function"] += 1
                bad += 1
                continue
            if key in seen:
                c["duplicated"] += 1
                bad += 1
                continue
            seen.add(key)
            if t > limit:
                c["future"] += 1
                bad += 1
                continue
            if t < last - 1e-9:
                c["out_of_order"] += 1
                bad += 1
                continue
            o = self.index.get(r.object)
            if o is None:
                c["unknown_object"] += 1
                bad += 1
                self._catalogue_t = -math.inf  # look again next window
                continue
            known = self.fn_object.get(r.function)
            if known is not None and known != o:
                c["unknown_function"] += 1  # a function that changed its object
                bad += 1
                continue
            last = t
            out.append((float(t), o, 0, r.function))
        return out, bad

    def validate(self, obs: Batch) -> Verdict:
        if not isinstance(obs, Batch):
            return Verdict.fail(f"not an invocation batch: {type(obs).__name__}")
        for kind, n in obs.log_problems:
            self.counts["log_malformed" if kind == "malformed" else "log_problems"] += n
            if kind not in self._problem_logged:
                self._problem_logged.add(kind)
                self._log("faas_prewarm.log_problem", kind=kind, count=n)
        if obs.log_unavailable is not None:
            return Verdict.fail(f"invocation log unavailable: {obs.log_unavailable}")
        clean, bad = self._clean(obs)
        self._pending = (obs.t, clean)
        total = len(clean) + bad + sum(n for k, n in obs.log_problems if k == "malformed")
        bad_all = bad + sum(n for k, n in obs.log_problems if k == "malformed")
        if bad_all >= 3 and bad_all > self.p.max_bad_share * total:
            return Verdict.fail(
                f"{bad_all} of {total} invocation records bad (out of order, future, duplicated, "
                f"unknown or malformed): {self._bad_summary()}"
            )
        return Verdict.ok()

    def _bad_summary(self) -> str:
        keys = ("out_of_order", "future", "duplicated", "unknown_object", "unknown_function", "log_malformed")
        return ", ".join(f"{k} {self.counts[k]}" for k in keys if self.counts[k])

    def learn(self, obs: Batch) -> None:
        pending = self._pending
        if pending is None or pending[0] != obs.t:
            clean, _ = self._clean(obs)
        else:
            clean = pending[1]
        self._pending = None
        # the edge: records at the newest time, read again next window (since is inclusive)
        if obs.records:
            newest = max(r.t for r in obs.records if isinstance(r.t, float | int))
            if newest >= self._since:
                edge: dict[tuple[float, str, str], int] = {}
                for r in obs.records:
                    if r.t == newest:
                        k = (r.t, r.function, r.object)
                        edge[k] = edge.get(k, 0) + 1
                if newest > self._since:
                    self._edge = edge
                else:
                    for k, v in edge.items():
                        self._edge[k] = max(self._edge.get(k, 0), v)
                self._since = newest
        for t, o, _, fn in clean:
            self._call(t, o, fn)
            self._last_ok_t = t

    def _call(self, t: float, o: int, fn: str) -> None:
        self.fn_object.setdefault(fn, o)
        group = self.obj_group.setdefault(o, self._group(fn))
        prev = self.last_call.get(o)
        self.last_call[o] = t
        if o not in self.first_call:
            self.first_call[o] = t
        if self.p.time_of_day:
            hod = self.tod.get(o)
            if hod is None:
                hod = self.tod[o] = np.zeros(24)
            hod[int((t % self.p.day_s) / self.p.day_s * 24) % 24] += 1
        w = self.win.get(o)
        if prev is not None:
            factor = self._tod_factor(o, t)
            self._learn_idle(o, group, (t - prev) * factor)
            if w is not None:
                self._judge(o, t, w)
        # used: a prewarm it made
        name = self.names[o]
        held = self.held.get(name)
        if held is not None and not held[2]:
            held[2] = 1.0
            self._prewarm_used.append(1)
        # the window after this call; a new one only every few calls of a busy object
        n = self.model.samples.get(o, 0)
        if w is not None and n > 16 and n % 8:
            a, b, p_in = w[6], w[7], w[3]
        else:
            a, b, p_in = self._choose(o, group)
            if n < self.p.min_samples and self.model.pool_size(group) < self.p.min_pool_samples:
                # too few idle times of its own or its group's (the agent has just started):
                # what it knows may keep the object longer than the platform would, not shorter
                a, b = 0.0, max(b, self.p.keepalive_s)
        f = self._tod_factor(o, t)
        stage = 0.0 if (a > 0 or b <= 0) else 2.0
        w = [t, a / f, b / f, p_in, t + self.p.keepalive_s * 0.8, stage, a, b]
        self.win[o] = w
        self._schedule(o, t + (0.0 if stage == 0 else min(w[2], self.p.keepalive_s * 0.8)))

    def _learn_idle(self, o: int, group: str, idle: float) -> None:
        self.model.add(o, group, idle)

    def _choose(self, o: int, group: str) -> tuple[float, float, float]:
        """The resident window after a call of ``o`` (s, before the time-of-day rescaling)."""
        dist = self.model.distribution(o, group)
        if dist is None:
            return 0.0, self.p.keepalive_s, 1.0  # nothing known: the platform's own window
        return self.model.window(dist, self.size[o] / GB, self._lead(o))

    def _judge(self, o: int, t: float, w: list[float]) -> None:
        """Was this call, at ``t``, inside the window planned after the last one, and warm?"""
        call, a, b = w[0], w[1], w[2]
        if not (call + a <= t < call + b):
            return
        dropped = self.dropped_at.get(o, -math.inf)
        ready = self.prewarm_ready.get(o, -math.inf)
        cold = dropped > call and not (dropped < ready <= t)
        if a > 0:
            cold = cold or not (call < ready <= t)
        self._warm_calls.append(1 if cold else 0)

    def _schedule(self, o: int, due: float) -> None:
        cur = self._due.get(o)
        if cur is not None and cur <= due:
            return  # the entry already queued pops first and looks again
        self._due[o] = due
        heapq.heappush(self._heap, (due, o))

    def predict(self) -> Plan:
        now = self.ctx.clock.now()
        horizon = now + 0.5 * self.schedule.act_every
        prewarm: list[str] = []
        evict: list[str] = []
        heap = self._heap
        ka = self.p.keepalive_s * 0.8
        while heap and heap[0][0] <= horizon:
            due, o = heapq.heappop(heap)
            if self._due.get(o) != due:
                continue
            del self._due[o]
            w = self.win.get(o)
            if w is None:
                continue
            call, a, b, _, touch, stage = w[:6]
            nxt: float | None = None
            if stage == 0:
                evict.append(self.names[o])
                if b > a:
                    w[5] = 1
                    nxt = call + a - self._lead(o)
                else:
                    w[5] = 3
            elif stage == 1:
                if now < call + b:
                    prewarm.append(self.names[o])
                w[5] = 2
                w[4] = max(now, call + a) + ka
                nxt = min(w[4], call + b)
            elif stage == 2:
                if call + b <= horizon:
                    evict.append(self.names[o])
                    w[5] = 3
                elif touch <= horizon:
                    prewarm.append(self.names[o])
                    w[4] = now + ka
                    nxt = min(w[4], call + b)
                else:
                    nxt = min(touch, call + b)
            if nxt is not None:
                self._schedule(o, max(nxt, now))
        self._seq += 1
        return self._carry(Plan(self._seq, tuple(prewarm), tuple(evict)))

    def _carry(self, plan: Plan) -> Plan:
        """``plan`` with the actions of earlier plans ``act`` has not applied yet (live, an act
        may run on the default or on an older prediction while this side was busy: the actions
        it popped must not be lost). The last action on an object wins."""
        applied = self._applied_seq
        unapplied = [q for q in self._unapplied if q.seq > applied]
        unapplied.append(plan)
        self._unapplied = unapplied[-32:]
        if len(unapplied) == 1:
            return plan
        last: dict[str, bool] = {}
        for q in unapplied:
            for name in q.evict:
                last.pop(name, None)
                last[name] = False
            for name in q.prewarm:
                last.pop(name, None)
                last[name] = True
        return Plan(
            plan.seq,
            tuple(n for n, warm in last.items() if warm),
            tuple(n for n, warm in last.items() if not warm),
        )

    def assess_model(self) -> Verdict:
        p = self.p
        calls = self._warm_calls
        if len(calls) >= p.min_assess_events:
            share = sum(calls) / len(calls)
            if share > p.max_warm_miss_share:
                return Verdict.fail(
                    f"{share:.0%} of the last {len(calls)} calls predicted warm started cold "
                    f"(max {p.max_warm_miss_share:.0%})"
                )
        used = self._prewarm_used
        if len(used) >= p.min_assess_events:
            unused = 1.0 - sum(used) / len(used)
            if unused > p.max_unused_prewarm_share:
                return Verdict.fail(
                    f"{unused:.0%} of the last {len(used)} prewarms were never used "
                    f"(max {p.max_unused_prewarm_share:.0%})"
                )
        acts = self._action_failed
        if len(acts) >= p.min_assess_events:
            failed = sum(acts) / len(acts)
            if failed > p.max_failed_action_share:
                return Verdict.fail(
                    f"{failed:.0%} of the last {len(acts)} prewarms/unloads failed (max "
                    f"{p.max_failed_action_share:.0%}; missing or unreadable objects, a full disk?)"
                )
        return Verdict.ok()

    def default_predict(self) -> Plan:
        return KEEPALIVE

    def fault_aggressive(self) -> Plan:
        """The decision an adversarial model would make (fault harness): prewarm everything."""
        return Plan(-1, tuple(self.names), ())

    # -- actuator side ---------------------------------------------------------------------
    def _evict(self, name: str, now: float) -> int:
        try:
            dropped = int(self.out.evict(name))
        except Exception as exc:  # counted; a host write that failed is raised after the rest
            self._failed("evict", name, exc)
            return 0
        self._action_failed.append(0)
        self.act_counts["evictions"] += 1
        o = self.index.get(name)
        if o is not None:
            self.dropped_at[o] = now
        held = self.held.pop(name, None)
        if held is not None:
            self.held_bytes -= int(held[3])
            if not held[2]:
                self._prewarm_used.append(0)
        return dropped

    def _failed(self, what: str, name: str, exc: Exception) -> None:
        """Count a failed action. An object the facility does not know (``KeyError``: gone from
        the disk or the catalogue) is this object's problem: skipped, looked up again with the
        next catalogue. Anything else (the write refused: EPERM, EIO, ENOSPC on a full disk)
        is the host's: ``act`` finishes its other actions, then raises the first, and the
        runtime mitigates, backs off to the fixed keep-alive and, if it goes on, quarantines."""
        if isinstance(exc, KeyError):
            self._catalogue_t = -math.inf
        elif self._raise is None:
            self._raise = exc
        self.act_counts["failed"] += 1
        self._action_failed.append(1)
        kind = f"{what}:{type(exc).__name__}"
        if kind not in self._problem_logged:
            self._problem_logged.add(kind)
            self._log("faas_prewarm.action_failed", action=what, object=name, error=str(exc)[:200])

    def _prewarm(self, name: str, now: float) -> None:
        o = self.index.get(name)
        if o is None:
            return
        size = self.size[o]
        held = self.held.get(name)
        if held is None and self.held_bytes + size > self.p.max_prewarmed_gb * GB:
            return
        try:
            r = self.out.prewarm(name)
        except Exception as exc:
            self._failed("prewarm", name, exc)
            return
        self._action_failed.append(0)
        if r.bytes_queued > 0:
            self.act_counts["prewarms"] += 1
            self._loads_since_assess += 1
            if held is not None and not held[2] and held[1] <= now:
                # loaded by us, unused, and it had to be loaded again: its pages were taken
                self.act_counts["reclaimed"] += 1
                self._pushed_back += 1
            if held is None:
                self.held[name] = [now, float(r.ready_at), 0.0, float(size)]
                self.held_bytes += size
            self.prewarm_ready[o] = float(r.ready_at)
            return
        # nothing queued: warm already (a touch), or refused for want of memory
        try:
            warm = self.faas.residency(name).warm
        except Exception:
            warm = True
        if warm:
            self.act_counts["touches"] += 1
            self.prewarm_ready[o] = now
        else:
            self.act_counts["refused"] += 1
            self._loads_since_assess += 1
            self._pushed_back += 1

    def _raise_failure(self) -> None:
        exc, self._raise = self._raise, None
        if exc is not None:
            raise exc

    def act(self, prediction: Prediction) -> None:
        now = self.ctx.clock.now()
        plan = prediction.value
        self._raise = None
        if not isinstance(plan, Plan) or plan.keepalive or prediction.source != "model":
            self._keepalive(now)
            self._raise_failure()
            return
        if 0 < plan.seq <= self._applied_seq:
            return  # a plan applied already (the same prediction again)
        self._applied_seq = max(self._applied_seq, plan.seq)
        # evictions still owed (an object a call was running on)
        for name, tries in list(self._retry.items()):
            if self._evict(name, now) > 0 or tries >= 30 or not self._warm(name):
                self._retry.pop(name, None)
            else:
                self._retry[name] = tries + 1
        for name in plan.evict:
            if self._evict(name, now) == 0 and self._warm(name):
                self._retry[name] = 1
        for name in plan.prewarm:
            self._retry.pop(name, None)
            self._prewarm(name, now)
        self._raise_failure()

    def _warm(self, name: str) -> bool:
        try:
            return bool(self.faas.residency(name).warm)
        except Exception:
            return False

    def _keepalive(self, now: float) -> None:
        """The platform's fixed keep-alive: unload what the agent loaded, once unused for it."""
        self._retry.clear()
        ka = self.p.keepalive_s
        for name, held in list(self.held.items()):
            o = self.index.get(name)
            last = max(held[0], self.last_call.get(o, -math.inf) if o is not None else -math.inf)
            if now - last >= ka:
                self._evict(name, now)

    def assess_performance(self) -> Verdict:
        p = self.p
        if not self.held:
            self._pushed_back = 0
            self._loads_since_assess = 0
            return Verdict.ok()
        # prewarmed objects not yet used that lost their pages (reclaimed or evicted for room)
        names = list(self.held)
        k = min(p.residency_checks, len(names))
        start = self._check_cursor % len(names)
        self._check_cursor += k
        now = self.ctx.clock.now()
        for name in (names + names)[start : start + k]:
            held = self.held.get(name)
            if held is None or held[2] or held[1] > now:
                continue
            if not self._warm(name):
                self.act_counts["reclaimed"] += 1
                self._pushed_back += 1
                self.held.pop(name, None)
                self.held_bytes -= int(held[3])
                self._prewarm_used.append(0)
        pushed, tried = self._pushed_back, self._loads_since_assess
        self._pushed_back = 0
        self._loads_since_assess = 0
        if pushed >= p.min_pressure_events and pushed > p.max_pushed_back_share * max(tried, 1):
            return Verdict.fail(
                f"memory pushed back: {pushed} of {tried} prewarm loads refused, or reclaimed before use"
            )
        if self.memory is not None and p.min_free_share > 0:
            try:
                nodes = list(self.memory.nodes())
            except Exception:
                nodes = []
            total = sum(n.total_bytes for n in nodes)
            free = sum(n.free_bytes for n in nodes)
            if total > 0 and free / total < p.min_free_share:
                return Verdict.fail(
                    f"node memory {free / total:.1%} free (min {p.min_free_share:.0%}) "
                    f"with {self.held_bytes / GB:.2f} GB prewarmed"
                )
        return Verdict.ok()

    def mitigate(self) -> None:
        now = self.ctx.clock.now()
        self._raise = None
        self._retry.clear()
        for name in list(self.held):
            self._evict(name, now)
        self._raise_failure()

    def clean_up(self) -> None:
        self.mitigate()
