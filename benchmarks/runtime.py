"""Runtime figures: scheduler overhead, virtual-time speed, live actuation lateness, idle cost.

    .venv/bin/python benchmarks/runtime.py [--quick]

Prints a table per measurement. What each one is:

1. Scheduler overhead per callback (µs): wall time per callback of a 4-callback no-op agent,
   minus nothing (the callbacks do nothing, so all of it is the runtime's), in both executors.
   Live: measured on the lanes with ``time.thread_time`` around whole ticks.
2. Virtual-time speed: callbacks per second, and simulated seconds per wall second for a
   node with 4 agents at 10 Hz (NullBackend, so it is the runtime's speed alone).
3. Live actuation lateness at 20 Hz (due time → act() start), p50/p99, without and with a
   second agent whose ``learn`` burns CPU continuously (pure Python, holding the GIL between
   switches). Target: p99 <= 5 ms with the hog; the ratio to the run without is printed. The
   due time is the window's start: an act runs as soon as the model tick due with it is done,
   or ``act_phase`` (5 ms) later at the latest. Also printed: *sample → act*, from the start
   of the model chain (its ``collect``) to the ``act()`` that applied its prediction, and the
   share of acts that applied their own window's (sampled less than half a window before).
4. Daemon cost with 4 idle agents (1 Hz no-op agents, the live executor): RSS and CPU % of
   one core over the run. Target <= 1 %.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from typing import Any

import psutil

from sol import Agent, Prediction, Schedule
from sol.backend import NullBackend
from sol.log import configure, get_logger
from sol.runtime.base import AgentSpec
from sol.runtime.live import LiveExecutor
from sol.runtime.virtual import VirtualExecutor


def make_agent(name: str, hz: float, *, burn: float = 0.0) -> Agent:
    period = 1.0 / hz

    class Bench(Agent):
        schedule = Schedule(
            collect_every=period,
            act_every=period,
            prediction_ttl=5 * period,
            assess_every=max(1.0, 10 * period),
            cpu_budget=16.0,
            callback_timeout=max(1.0, 2 * burn),
        )

        def __init__(self) -> None:
            #: when each model chain began (its window's sample)
            self.begun: list[float] = []
            #: per act of a model prediction: seconds since that prediction's sample
            self.applied: list[float] = []

        def collect(self) -> object:
            self.begun.append(time.monotonic())
            return len(self.begun)

        def learn(self, obs: Any) -> None:
            if burn:
                end = time.perf_counter() + burn
                x = 0
                while time.perf_counter() < end:
                    x += 1

        def predict(self) -> object:
            return len(self.begun)

        def default_predict(self) -> object:
            return 0

        def act(self, prediction: Prediction) -> None:
            if prediction.source == "model":
                self.applied.append(time.monotonic() - self.begun[int(prediction.value) - 1])

    Bench.name = name
    return Bench()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n## {title}")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")


def virtual_bench(duration: float) -> tuple[float, float, float]:
    specs = [AgentSpec(make_agent(f"a{i}", 10.0)) for i in range(4)]
    ex = VirtualExecutor(specs, backend=NullBackend(), log=get_logger())
    run = ex.run(duration)
    callbacks = ex.metrics.total_callbacks()
    per_cb_us = run.wall_s / callbacks * 1e6
    return per_cb_us, callbacks / run.wall_s, run.speedup


def live_lateness(seconds: float, hog: bool) -> tuple[list[float], list[float]]:
    actor = make_agent("actor", 20.0)
    specs = [AgentSpec(actor)]
    if hog:
        # learn() burns 45 ms of every 50 ms: the model side is busy ~90 % of the time
        specs.append(AgentSpec(make_agent("hog", 20.0, burn=0.045)))
    ex = LiveExecutor(specs, backend=NullBackend(), log=get_logger())
    ex.start()
    time.sleep(seconds)
    ex.stop()
    return ex.lateness("actor"), actor.applied  # type: ignore[attr-defined]


def live_overhead(seconds: float) -> float:
    """µs of lane-thread CPU per callback for 4 agents at 10 Hz (no-op callbacks)."""
    specs = [AgentSpec(make_agent(f"a{i}", 10.0)) for i in range(4)]
    ex = LiveExecutor(specs, backend=NullBackend(), log=get_logger())
    proc = psutil.Process()
    t0 = proc.cpu_times()
    ex.start()
    time.sleep(seconds)
    ex.stop()
    t1 = proc.cpu_times()
    callbacks = ex.metrics.total_callbacks()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    return cpu / callbacks * 1e6


def idle_cost(seconds: float) -> tuple[float, float]:
    specs = [AgentSpec(make_agent(f"idle{i}", 1.0)) for i in range(4)]
    ex = LiveExecutor(specs, backend=NullBackend(), log=get_logger())
    proc = psutil.Process()
    ex.start()
    time.sleep(1.0)  # let start-up settle
    t0, w0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    t1, w1 = proc.cpu_times(), time.monotonic()
    rss = proc.memory_info().rss
    ex.stop()
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    return 100.0 * cpu / (w1 - w0), rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (CI smoke)")
    args = ap.parse_args()
    configure("json", "error", stream=open(os.devnull, "w"))  # noqa: SIM115
    q = args.quick
    print(
        f"# benchmarks/runtime.py on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
    )

    per_cb_virtual, cb_per_s, speed = virtual_bench(600.0 if q else 3600.0)
    per_cb_live = live_overhead(2.0 if q else 10.0)
    table(
        "Scheduler overhead per callback",
        [
            ("virtual executor", f"{per_cb_virtual:.1f} µs (wall, whole event loop)"),
            ("live executor", f"{per_cb_live:.1f} µs (process CPU, 4 agents at 10 Hz)"),
        ],
    )
    table(
        "Virtual-time speed (4 no-op agents at 10 Hz, no simulator)",
        [
            ("callbacks per second", f"{cb_per_s:,.0f}"),
            ("simulated s per wall s", f"{speed:,.0f}x"),
        ],
    )
    secs = 3.0 if q else 15.0
    base, base_applied = live_lateness(secs, hog=False)
    hog, hog_applied = live_lateness(secs, hog=True)
    rows = []
    for label, lat in (("without hog", base), ("with CPU hog", hog)):
        rows.append(
            (
                label,
                f"p50 {pct(lat, 0.5) * 1e3:.3f} ms  p99 {pct(lat, 0.99) * 1e3:.3f} ms  "
                f"max {max(lat) * 1e3:.3f} ms  (n={len(lat)})",
            )
        )
    for label, ages in (("without hog", base_applied), ("with CPU hog", hog_applied)):
        own = sum(a < 0.025 for a in ages) / max(len(ages), 1)  # sampled less than half a window ago
        rows.append(
            (
                f"sample -> act, {label}",
                f"p50 {pct(ages, 0.5) * 1e3:.3f} ms  p99 {pct(ages, 0.99) * 1e3:.3f} ms; "
                f"{own:.0%} of acts apply their own window's prediction",
            )
        )
    rows.append(("p99 ratio hog/without", f"{pct(hog, 0.99) / max(pct(base, 0.99), 1e-9):.2f}x"))
    rows.append(("target", f"p99 <= 5 ms with the hog: {'MET' if pct(hog, 0.99) <= 0.005 else 'MISSED'}"))
    table("Live actuation lateness at 20 Hz (due -> act start)", rows)

    cpu_pct, rss = idle_cost(5.0 if q else 30.0)
    table(
        "Daemon cost, 4 idle agents at 1 Hz (live executor)",
        [
            (
                "CPU % of one core",
                f"{cpu_pct:.2f} %  (target <= 1 %: {'MET' if cpu_pct <= 1.0 else 'MISSED'})",
            ),
            (
                "RSS",
                f"{rss:.1f} MiB (peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB)",
            ),
        ],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
