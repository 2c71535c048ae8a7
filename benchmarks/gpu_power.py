"""gpu_power: how many more GPUs a node's power budget feeds, for each capping policy.

    .venv/bin/python benchmarks/gpu_power.py [--minutes 20] [--seeds 1] [--base-gpus 10]

A budget provisioned for ``N`` GPUs at full power (``N x 400 W``, A100 TDP) now feeds
``N x (1 + x)`` GPUs, x = 0, 10, ..., 60 %, each with the per-GPU load of the Azure LLM 2023
code trace as the ``gpu-splitwise`` scenario replays it on 4 GPUs (``../shared/data/
azure-llm-2023``): the node's stream superposes ``ceil(G / 4)`` copies of the trace, each
started at a seeded offset and thinned to ``G / (4 * copies)`` of its requests (seeded), so
each GPU sees the trace's rate, prompt and output sizes and its bursts. Every policy runs on
a node built from the same seed (the same requests), through ``sol.testing.simulate``:

* ``nocap``    no limit: how far over budget the node goes, and the latencies the others are
  measured against;
* ``static``   every GPU at ``budget / GPUs`` (the safe static cap, gpu_power's default);
* ``polca``    POLCA's reactive policy (Patel et al., ASPLOS'24) on the node's last 1 s draw:
  over 80 % of the budget the low-priority GPUs (odd indices) are capped at 70 % of TDP
  (Splitwise's point: prompts x1.3, tokens x1.0), over 90 % every GPU at ``budget / GPUs``
  (which holds the budget once enforced), and below 70 % every cap is lifted. POLCA sets its
  thresholds from its cluster's power; these keep 10 % between the stages (one stage's cap
  takes the node below the next stage's threshold) and act before the budget, since a
  limit takes the enforcement delay (1 s) to act;
* ``polca-clocks`` the same, each cap also applied at once by locked clocks (POLCA caps GPU
  frequency; the clock the agent would pick for the same cap), for a POLCA with the agent's
  fast knob;
* ``oracle``   knows each GPU's draw in the next window if it were not capped (the simulator
  steps a copy of itself) and applies its caps at once through locked clocks: it lifts every
  cap when the sum fits, and otherwise cuts the peaks to a common level (``level_caps``);
* ``gpu_power`` the agent with its defaults, 1 s windows. The stream has no priority classes
  (every request counts in the latencies alike), so it is given no low-priority GPUs: POLCA
  needs them for its first stage, the agent would only slow some requests more
  (``--agent low_priority=1,3,5,7,9,11,13,15`` gives it POLCA's).

Columns: p50/p99 time to first token (TTFT) and time between tokens (TBT) relative to
``nocap`` at the same x, throughput (tokens/s), share of time over budget and the longest
excursion (s), share of GPU-time held by a cap, energy (kWh). The headline is the largest x
up to which a policy holds **<= 5 % p99 loss** (TTFT and TBT) **with no excursion over budget
longer than one enforcement delay** (1 s).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.agents.gpu_power import GpuPowerAgent, Params, level_caps
from sol.log import configure
from sol.sdk import Agent, Context, Prediction, Schedule
from sol.sim.gpu import GpuConfig, GpuFacility, LlmRequests, RequestStream, dvfs_exponent
from sol.sim.node import SimNode
from sol.sim.scenarios import shared_data_dir
from sol.sim.synthetic import LLM_CODE_RATE_PER_S, PoissonLlmRequests
from sol.sim.traces import load_llm_2023
from sol.testing import simulate

TRACE_GPUS = 4  # the gpu-splitwise scenario serves the trace on 4 GPUs
XS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
MAX_LOSS = 0.05
LOOSE_P99 = 0.25
SCHEDULE = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)


def scaled_stream(trace: LlmRequests, gpus: int, seed: int) -> LlmRequests:
    """The trace's per-GPU load on ``gpus`` GPUs: seeded offset copies, thinned."""
    rng = np.random.default_rng([seed, gpus, 0x6B0])
    copies = math.ceil(gpus / TRACE_GPUS)
    keep = gpus / (TRACE_GPUS * copies)
    span = trace.span_s
    ts, ps, os_ = [], [], []
    for _ in range(copies):
        off = rng.uniform(0.0, span)
        mask = rng.random(trace.arrival_s.size) < keep
        ts.append((trace.arrival_s[mask] + off) % span)
        ps.append(trace.prompt_tokens[mask])
        os_.append(trace.output_tokens[mask])
    t = np.concatenate(ts)
    order = np.argsort(t, kind="stable")
    return LlmRequests(
        arrival_s=t[order],
        prompt_tokens=np.concatenate(ps)[order],
        output_tokens=np.concatenate(os_)[order],
        span_s=span,
        source=f"{trace.source} x{gpus / TRACE_GPUS:g} (seed {seed})",
    )


def build_node(
    trace: LlmRequests | None, gpus: int, budget_w: float, seed: int
) -> tuple[SimNode, GpuFacility]:
    """``trace`` None: the synthetic stream (the trace's rate and token sizes, bursty)."""
    node = SimNode()
    stream: RequestStream = (
        scaled_stream(trace, gpus, seed)
        if trace is not None
        else PoissonLlmRequests(seed, rate_per_s=LLM_CODE_RATE_PER_S * gpus / TRACE_GPUS, burstiness=0.5)
    )
    f = GpuFacility(
        GpuConfig(count=gpus, budget_w=budget_w),
        stream,
        seed=seed,
        lock=node.lock,
        now=node.now,
        origin=0.0,
    )
    node.attach(f)
    return node, f


# -- the baselines ----------------------------------------------------------------------


class _Baseline(Agent):
    schedule = SCHEDULE

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.gpu = ctx.sensors.require("gpu")
        self.out = ctx.actuators.require("gpu")
        self.n = self.gpu.count()
        self.hi = [self.gpu.power_limit_constraints_mw(i)[1] for i in range(self.n)]
        self.lo = [self.gpu.power_limit_constraints_mw(i)[0] for i in range(self.n)]
        budget = self.gpu.power_budget_mw()
        assert budget is not None
        self.budget_mw = budget
        self.share = [max(lo, min(hi, budget // self.n)) for lo, hi in zip(self.lo, self.hi, strict=True)]
        self.set: list[int | None] = [None] * self.n

    def limit(self, i: int, mw: int) -> None:
        if self.set[i] != mw:
            self.out.set_power_limit(i, mw)
            self.set[i] = mw

    def collect(self) -> float:
        return float(sum(self.gpu.power_usage_mw(i) for i in range(self.n)))

    def default_predict(self) -> int:
        return 0


class NoCap(_Baseline):
    name = "nocap"

    def predict(self) -> int:
        return 0

    def act(self, prediction: Prediction) -> None:
        return None


class StaticCap(_Baseline):
    name = "static"

    def predict(self) -> int:
        return 0

    def act(self, prediction: Prediction) -> None:
        for i in range(self.n):
            self.limit(i, self.share[i])


class Polca(_Baseline):
    """POLCA's two thresholds and an uncap threshold, on the node's last 1 s draw."""

    name = "polca"
    T_LOW, T_ALL, T_UNCAP = 0.80, 0.90, 0.70
    LOW_CAP_SHARE = 0.70

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        self.stage = 0
        self.node_mw = 0.0

    def learn(self, obs: float) -> None:
        self.node_mw = obs

    def predict(self) -> int:
        p = self.node_mw / self.budget_mw
        if p > self.T_ALL:
            self.stage = 2
        elif p > self.T_LOW:
            self.stage = max(self.stage, 1)
        elif p < self.T_UNCAP:
            self.stage = 0
        return self.stage

    def act(self, prediction: Prediction) -> None:
        stage = int(prediction.value)
        for i in range(self.n):
            if stage == 2:
                mw = self.share[i]
            elif stage == 1 and i % 2 == 1:
                mw = max(self.lo[i], int(self.LOW_CAP_SHARE * self.hi[i]))
            else:
                mw = self.hi[i]
            self.limit(i, mw)


class PolcaClocks(Polca):
    """POLCA's policy with its caps also applied at once by locked clocks (POLCA itself caps
    GPU frequency), at the clock the agent would pick for the same cap."""

    name = "polca-clocks"
    IDLE_SHARE, EXPONENT = 0.2, 1.8

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        self.lo_mhz, self.hi_mhz = self.gpu.clock_range_mhz(0)  # type: ignore[attr-defined]
        self.clock: list[int | None] = [None] * self.n

    def limit(self, i: int, mw: int) -> None:
        super().limit(i, mw)
        if mw >= self.hi[i]:
            if self.clock[i] is not None:
                self.out.reset_clocks(i)  # type: ignore[attr-defined]
                self.clock[i] = None
            return
        room = max(mw / self.hi[i] - self.IDLE_SHARE, 0.0) / (1.0 - self.IDLE_SHARE)
        mhz = max(self.lo_mhz, min(self.hi_mhz, int(self.hi_mhz * room ** (1.0 / self.EXPONENT))))
        if self.clock[i] != mhz:
            self.out.lock_clocks(i, self.lo_mhz, mhz)  # type: ignore[attr-defined]
            self.clock[i] = mhz


class Oracle(_Baseline):
    """Knows each GPU's uncapped draw in the next window; caps at once by locked clocks."""

    name = "oracle"
    facility: GpuFacility

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        cfg = self.facility.config
        self.idle_w = cfg.idle_share * cfg.tdp_w
        self.expo = dvfs_exponent(cfg.idle_share, cfg.prefill_share)
        self.lo_mhz, self.hi_mhz = self.gpu.clock_range_mhz(0)  # type: ignore[attr-defined]
        self.clock: list[int | None] = [None] * self.n

    def predict(self) -> tuple[int, ...]:
        f = self.facility
        self.gpu.power_usage_mw(0)  # brings the facility up to now
        demand = f.peek_uncapped_power_w(f.t, 1)[0]
        room = self.budget_mw / 1000.0
        tdp = [h / 1000.0 for h in self.hi]
        if sum(demand) <= room:
            return tuple(self.hi)
        level = [1.0 if i % 2 == 0 else 0.7 for i in range(self.n)]
        caps = level_caps(demand, [lo / 1000.0 for lo in self.lo], tdp, level, room)
        return tuple(int(c * 1000.0) for c in caps)

    def default_predict(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.hi)

    def act(self, prediction: Prediction) -> None:
        caps = [int(c) for c in prediction.value]
        for i, mw in enumerate(caps):
            self.limit(i, mw)
            if mw >= self.hi[i]:
                if self.clock[i] is not None:
                    self.out.reset_clocks(i)  # type: ignore[attr-defined]
                    self.clock[i] = None
                continue
            # the clock at which prefill (the board's highest draw) fits the cap
            room = max(mw / 1000.0 - self.idle_w, 0.0) / (self.hi[i] / 1000.0 - self.idle_w)
            mhz = max(self.lo_mhz, min(self.hi_mhz, int(self.hi_mhz * room ** (1.0 / self.expo))))
            if self.clock[i] != mhz:
                self.out.lock_clocks(i, self.lo_mhz, mhz)  # type: ignore[attr-defined]
                self.clock[i] = mhz


# -- running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    label: str
    make: Callable[[GpuFacility, int], tuple[Agent, Any]]


AGENT_PARAMS: dict[str, Any] = {}


def _agent(f: GpuFacility, gpus: int) -> tuple[Agent, Any]:
    return GpuPowerAgent(), Params(**AGENT_PARAMS)


def _oracle(f: GpuFacility, gpus: int) -> tuple[Agent, Any]:
    o = Oracle()
    o.facility = f
    return o, None


POLICIES = (
    Policy("nocap", lambda f, g: (NoCap(), None)),
    Policy("static", lambda f, g: (StaticCap(), None)),
    Policy("polca", lambda f, g: (Polca(), None)),
    Policy("polca-clocks", lambda f, g: (PolcaClocks(), None)),
    Policy("oracle", _oracle),
    Policy("gpu_power", _agent),
)


def run_one(
    trace: LlmRequests | None, policy: Policy, gpus: int, budget_w: float, seed: int, minutes: float
) -> dict[str, float]:
    node, f = build_node(trace, gpus, budget_w, seed)
    agent, params = policy.make(f, gpus)
    schedule = SCHEDULE if policy.label != "gpu_power" else None
    r = simulate(agent, duration=minutes * 60.0, seed=seed, backend=node, params=params, schedule=schedule)
    if r.state != "stopped" or r.errors():
        raise RuntimeError(f"{policy.label} x{gpus}: {r.state} {r.errors()[:2]}")
    gt = dict(r.ground_truth)
    gt["span_s"] = minutes * 60.0
    return gt


def row(label: str, gt: dict[str, float], ref: dict[str, float], gpus: int) -> dict[str, float]:
    def rel(key: str) -> float:
        return gt[key] / ref[key] - 1.0 if ref[key] > 0 else 0.0

    span = gt["span_s"]
    return {
        "ttft_mean": rel("gpu.ttft_mean_s"),
        "ttft50": rel("gpu.ttft_p50_s"),
        "ttft99": rel("gpu.ttft_p99_s"),
        "tbt50": rel("gpu.tbt_p50_s"),
        "tbt99": rel("gpu.tbt_p99_s"),
        "tok_s": gt["gpu.throughput_tokens_per_s"],
        "over": gt["gpu.budget_violation_s"] / span,
        "longest": gt["gpu.budget_longest_excursion_s"],
        "capped": gt["gpu.capped_gpu_s"] / (span * gpus),
        "kwh": gt["gpu.energy_j"] / 3.6e6,
    }


def holds(r: dict[str, float], delay_s: float) -> bool:
    return r["ttft99"] <= MAX_LOSS and r["tbt99"] <= MAX_LOSS and r["longest"] <= delay_s + 1e-9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=20.0, help="simulated minutes per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1], help="node seeds (trace offsets, thinning)")
    ap.add_argument("--base-gpus", type=int, default=10, help="N: GPUs the budget is provisioned for")
    ap.add_argument("--only", default="", help="comma-separated policies to run (nocap always runs)")
    ap.add_argument("--agent", nargs="*", default=[], metavar="KEY=VALUE", help="gpu_power params")
    ap.add_argument("--xs", default="", help="comma-separated oversubscriptions (default 0..0.6)")
    ap.add_argument(
        "--stream",
        choices=("trace", "synthetic"),
        default="trace",
        help="the Azure trace's copies, or the synthetic stream of its rate and sizes (held out)",
    )
    args = ap.parse_args(argv)
    for kv in args.agent:
        key, _, value = kv.partition("=")
        AGENT_PARAMS[key] = (
            tuple(int(v) for v in value.split(",") if v)
            if key == "low_priority"
            else (value == "true" if value in ("true", "false") else float(value))
        )
    xs = tuple(float(v) for v in args.xs.split(",")) if args.xs else XS
    configure(level="error")
    path = shared_data_dir() / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
    if args.stream == "trace" and not path.exists():
        print(f"SKIP: the Azure LLM 2023 trace is not at {path} (set SOL_SHARED_DATA)")
        return 0
    trace = load_llm_2023(path) if args.stream == "trace" else None
    n = args.base_gpus
    budget_w = n * GpuConfig().tdp_w
    delay_s = GpuConfig().enforce_delay_s
    only = {s for s in args.only.split(",") if s}
    policies = [p for p in POLICIES if not only or p.label in only or p.label == "nocap"]
    t0 = time.perf_counter()
    print(
        f"budget {budget_w:g} W = {n} GPUs x {GpuConfig().tdp_w:g} W; {args.minutes:g} min per run; "
        f"seeds {' '.join(map(str, args.seeds))}; enforcement delay {delay_s:g} s; stream {args.stream}"
    )
    best: dict[tuple[int, str], float] = {}
    oversubscribed: dict[str, list[dict[str, float]]] = {p.label: [] for p in policies}
    best_p99: dict[tuple[int, str], float] = {}
    best_mean: dict[tuple[int, str], float] = {}
    for seed in args.seeds:
        print(f"\nseed {seed}")
        print(
            "| x | GPUs | policy | TTFT mean | TTFT p50 | TTFT p99 | TBT p50 | TBT p99 | tokens/s "
            "| over budget | longest (s) | capped | energy (kWh) | holds |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        ok: dict[str, bool] = {p.label: True for p in policies}
        ok_p99: dict[str, bool] = {p.label: True for p in policies}
        ok_mean: dict[str, bool] = {p.label: True for p in policies}
        for x in xs:
            gpus = round(n * (1 + x))
            ref = run_one(trace, policies[0], gpus, budget_w, seed, args.minutes)
            for p in policies:
                gt = ref if p.label == "nocap" else run_one(trace, p, gpus, budget_w, seed, args.minutes)
                r = row(p.label, gt, ref, gpus)
                if x > 0:
                    oversubscribed[p.label].append(r)
                h = holds(r, delay_s)
                ok[p.label] = ok[p.label] and h
                if ok[p.label]:
                    best[(seed, p.label)] = x
                fine = r["longest"] <= delay_s + 1e-9
                ok_p99[p.label] = ok_p99[p.label] and fine and max(r["ttft99"], r["tbt99"]) <= LOOSE_P99
                if ok_p99[p.label]:
                    best_p99[(seed, p.label)] = x
                ok_mean[p.label] = ok_mean[p.label] and fine and r["ttft_mean"] <= MAX_LOSS
                if ok_mean[p.label]:
                    best_mean[(seed, p.label)] = x
                print(
                    f"| {x:.0%} | {gpus} | {p.label} | {r['ttft_mean']:+.1%} | {r['ttft50']:+.1%} | "
                    f"{r['ttft99']:+.1%} | "
                    f"{r['tbt50']:+.1%} | {r['tbt99']:+.1%} | {r['tok_s']:,.0f} | {r['over']:.2%} | "
                    f"{r['longest']:g} | {r['capped']:.1%} | {r['kwh']:.2f} | {'yes' if h else 'no'} |"
                )
            sys.stdout.flush()
    print("\nmeans over every seed and x > 0 (p99 and mean losses relative to nocap at the same x):")
    print("| policy | TTFT mean | TTFT p99 | TBT p99 | over budget | longest (s) | capped |")
    print("|---|---|---|---|---|---|---|")
    for label, rs in oversubscribed.items():
        if not rs:
            continue
        n = len(rs)

        def avg(k: str, rs: list[dict[str, float]] = rs, n: int = n) -> float:
            return sum(r[k] for r in rs) / n

        print(
            f"| {label} | {avg('ttft_mean'):+.1%} | {avg('ttft99'):+.1%} | {avg('tbt99'):+.1%} | "
            f"{avg('over'):.2%} | {max(r['longest'] for r in rs):g} | {avg('capped'):.1%} |"
        )
    for title, table in (
        ("<= 5 % p99 TTFT and TBT loss, no excursion over the enforcement delay (the headline)", best),
        (f"<= {LOOSE_P99:.0%} p99 TTFT and TBT loss, no excursion over the delay (secondary)", best_p99),
        ("<= 5 % mean TTFT loss, no excursion over the delay (secondary)", best_mean),
    ):
        print(f"\nlargest x up to which every x holds, {title}:")
        for seed in args.seeds:
            held = {p.label: table.get((seed, p.label)) for p in policies}
            print(
                f"  seed {seed}: "
                + ", ".join(f"{k} {'-' if v is None else f'{v:.0%}'}" for k, v in held.items())
            )
    agent = [best.get((s, "gpu_power"), -1.0) for s in args.seeds]
    polca = [best.get((s, "polca"), -1.0) for s in args.seeds]
    oracle = [best.get((s, "oracle"), -1.0) for s in args.seeds]
    if only and not {"gpu_power", "polca", "oracle"} <= only:
        print(f"({time.perf_counter() - t0:.0f} s)")
        return 0
    a, pl, o = min(agent), min(polca), min(oracle)
    t1 = a >= 0.40
    t2 = (pl <= 0 and a > 0) or (pl > 0 and a >= 1.15 * pl)
    t3 = o <= 0 or a >= 0.9 * o
    print(
        f"verdict (worst seed): agent holds +{max(a, 0):.0%} GPUs "
        f"(target >= +40 %: {'met' if t1 else 'MISSED'}); "
        f"POLCA +{max(pl, 0):.0%} (target agent >= 1.15x: {'met' if t2 else 'MISSED'}); "
        f"oracle +{max(o, 0):.0%} (target agent >= 90 %: {'met' if t3 else 'MISSED'})"
    )
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
