"""Why a 20 Hz agent costs the daemon what it does: Python code that runs after a sleep.

    .venv/bin/python benchmarks/cold_cost.py [--seconds 15] [--repeat 3] [--backend auto|linux|sim]

``benchmarks/daemon.py`` measures the daemon; this script takes its 20 Hz cost apart, in
one process, on the same backend the daemon uses (Linux, dry-run, where it can start;
``auto`` falls back to the simulated node and says so).

1. Cold against warm: some of the steps of one ``cpu_harvest`` window, each timed (thread
   CPU, median of 200) back to back and right after a 50 ms sleep, as a lane runs them.
2. A 20 Hz loop on one thread, % of one core (process CPU over ``--seconds``, median of
   ``--repeat`` runs, the variants interleaved):

   - ``sleep and wake``: the loop alone, no work;
   - ``noop, direct`` / ``cpu_harvest, direct``: the agent's own callbacks (collect,
     validate, learn, predict, act) called from that loop, no runtime;
   - ``noop, live executor`` / ``cpu_harvest, live executor``: the same agent at the same
     period under :class:`~sol.runtime.live.LiveExecutor` (two lanes, the runner's
     guarantees, the watchdog), as the daemon runs it.

   The differences are what each layer costs at 20 Hz on this machine. On the simulated node
   the live executor also pushes the node's time every 50 ms (one more thread), so its rows
   cost more there than on a real host.

A cold step's figure includes the first step after the wake (``time.monotonic()`` alone shows
that share).

Figures depend on the machine far more than on the code: on a small VM a step that runs
after the CPU slept costs many times what it costs back to back (docs/operating.md,
"Figures").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sol.config import loads_config
from sol.daemon import build_backend, build_specs
from sol.log import configure, get_logger
from sol.metrics import RuntimeMetrics
from sol.registry import Registry
from sol.runtime.base import AgentSpec, actuators_for
from sol.runtime.clock import MonotonicClock
from sol.runtime.live import LiveExecutor
from sol.sdk import Context, Prediction

PERIOD = 0.05


def make_config(backend: str, agent: str, state_dir: Path) -> Any:
    text = (
        f'backend = "{backend}"\n[paths]\nstate_dir = "{state_dir}"\n'
        f"[agents.{agent}]\ndry_run = true\n"
        f"[agents.{agent}.schedule]\ncollect_every = {PERIOD}\nact_every = {PERIOD}\n"
        f"prediction_ttl = {3 * PERIOD}\n"
    )
    reg = Registry()
    return loads_config(text, source="cold_cost", agents={n: reg.get(n) for n in reg.names()}), reg


def pick_backend(wanted: str) -> tuple[str, str]:
    if wanted != "auto":
        return wanted, ""
    if os.geteuid() != 0:
        return "sim", "not root: simulated node"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, _ = make_config("linux", "noop", Path(tmp))
            build_backend(cfg, clock_start=time.monotonic(), clock=MonotonicClock()).close()
    except Exception as exc:
        return "sim", f"Linux backend unavailable ({type(exc).__name__}: {exc}): simulated node"
    return "linux", ""


class Setup:
    """One agent on a fresh backend, set up the way the runtime sets it up (dry-run)."""

    def __init__(self, backend: str, agent: str) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.config, self.registry = make_config(backend, agent, Path(self.tmp.name))
        self.backend = build_backend(self.config, clock_start=time.monotonic(), clock=MonotonicClock())
        self.spec: AgentSpec = build_specs(self.config, self.registry).specs[0]

    def direct(self) -> Any:
        agent = self.spec.agent
        state = Path(self.tmp.name) / "agents" / agent.name
        state.mkdir(parents=True, exist_ok=True)
        agent.setup(
            Context(
                clock=MonotonicClock(),
                log=get_logger().bind(agent=agent.name),
                sensors=self.backend.sensors,
                actuators=actuators_for(self.backend, agent.name, True),
                config=self.spec.params,
                state_dir=state,
            )
        )
        return agent

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()
        self.tmp.cleanup()


def loop_20hz(seconds: float, work: Callable[[float], None]) -> float:
    """Run ``work`` every 50 ms on a fresh thread; % of one core the process used."""

    def run() -> None:
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while True:
            nxt += PERIOD
            wait = nxt - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            now = time.monotonic()
            if now > end:
                break
            work(now)

    t0, c0 = time.monotonic(), time.process_time()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    return 100.0 * (time.process_time() - c0) / (time.monotonic() - t0)


def direct_work(agent: Any) -> Callable[[float], None]:
    state: dict[str, Any] = {"prediction": None}

    def work(now: float) -> None:
        p = state["prediction"]
        agent.act(
            p if p is not None else Prediction(agent.default_predict(), "default", "cold-start", now, now)
        )
        obs = agent.collect()
        if agent.validate(obs):
            agent.learn(obs)
        value = agent.predict()
        state["prediction"] = Prediction(value, "model", None, now, now + 3 * PERIOD)

    return work


def run_variant(backend: str, variant: str, seconds: float) -> float:
    if variant == "sleep and wake":
        return loop_20hz(seconds, lambda now: None)
    agent_name, how = variant.split(", ")
    s = Setup(backend, agent_name)
    try:
        if how == "direct":
            agent = s.direct()
            work = direct_work(agent)
            for _ in range(40):  # warm-up: the learner's first windows, the sensors' baselines
                work(time.monotonic())
                time.sleep(PERIOD)
            try:
                return loop_20hz(seconds, work)
            finally:
                agent.clean_up()
        ex = LiveExecutor([s.spec], backend=s.backend, log=get_logger(), metrics=RuntimeMetrics())
        ex.start()
        try:
            time.sleep(2.0)
            t0, c0 = time.monotonic(), time.process_time()
            time.sleep(seconds)
            return 100.0 * (time.process_time() - c0) / (time.monotonic() - t0)
        finally:
            ex.stop()
    finally:
        s.close()


def cold_steps(backend: str) -> list[tuple[str, float, float]]:
    s = Setup(backend, "cpu_harvest")
    agent = s.direct()
    cpu = agent.cpu
    obs = agent.collect()
    lock = threading.Lock()

    def take_and_release() -> None:
        with lock:
            pass

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("time.monotonic()", time.monotonic),
        ("take and release a lock", take_and_release),
        ('cpu.usage("primary")', lambda: cpu.usage("primary")),
        ("cpu_harvest.collect()", agent.collect),
        ("cpu_harvest.validate(obs)", lambda: agent.validate(obs)),
        ("cpu_harvest.predict()", agent.predict),
    ]
    out = []
    try:
        for name, fn in steps:
            med = []
            for sleep in (0.0, PERIOD):
                v = []
                for _ in range(200):
                    if sleep:
                        time.sleep(sleep)
                    a = time.thread_time_ns()
                    fn()
                    v.append((time.thread_time_ns() - a) / 1e3)
                med.append(statistics.median(v))
            out.append((name, med[0], med[1]))
    finally:
        agent.clean_up()
        s.close()
    return out


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each 20 Hz run")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant (median shown)")
    ap.add_argument("--backend", choices=("auto", "linux", "sim"), default="auto")
    args = ap.parse_args()
    configure("json", "error", open(os.devnull, "w"))  # noqa: SIM115 - for the whole run
    backend, note = pick_backend(args.backend)
    print("sol at 20 Hz: what runs cold costs")
    print(
        f"machine  {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    print(f"backend  {backend}{' (' + note + ')' if note else ''}, dry-run")

    print("\n## 1. One step, back to back vs right after a 50 ms sleep (thread CPU, median of 200)")
    print(f"  {'step':32s} {'warm':>9s} {'cold':>9s}  ratio")
    for name, warm, cold in cold_steps(backend):
        print(f"  {name:32s} {warm:7.1f}us {cold:7.1f}us  {cold / max(warm, 1e-3):5.1f}x")

    variants = [
        "sleep and wake",
        "noop, direct",
        "noop, live executor",
        "cpu_harvest, direct",
        "cpu_harvest, live executor",
    ]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for v in variants:
            results[v].append(run_variant(backend, v, args.seconds))
    print(f"\n## 2. A 20 Hz loop, % of one core (median of {args.repeat} x {args.seconds:g} s, interleaved)")
    for v in variants:
        runs = ", ".join(f"{x:.2f}" for x in results[v])
        print(f"  {v:28s} {statistics.median(results[v]):6.3f} %   ({runs})")
    med = {v: statistics.median(r) for v, r in results.items()}
    print(f"\n  the wake alone                 {med['sleep and wake']:6.3f} %")
    print(f"  cpu_harvest's own work         {med['cpu_harvest, direct'] - med['sleep and wake']:6.3f} %")
    print(f"  the runtime around noop        {med['noop, live executor'] - med['noop, direct']:6.3f} %")
    print(
        "  the runtime around cpu_harvest "
        f"{med['cpu_harvest, live executor'] - med['cpu_harvest, direct']:6.3f} %"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
