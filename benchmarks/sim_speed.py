"""Simulation speed: simulated seconds per wall second of each scenario with a no-op agent.

Drives ``node.advance()`` directly at 10 Hz of events (what the virtual-time executor does
before every event of an agent that ticks at 10 Hz), then, for the default scenario, the same
through ``sol.testing.simulate`` with a do-nothing agent (runtime overhead included). Then the
cost of one sensor read per simulated second of each facility (what an agent that collects
every second adds), and the peak Python memory of the largest trace (all 100 VMs of the Azure
VM sample, both files) while it is loaded and replayed for one simulated day. With ``--day``,
one simulated day of the default scenario through ``sol.testing.simulate(NoopAgent())`` and
through ``sol sim --duration 1d`` (its default agents, noop and example_ewma), ``--repeat``
times each, medians of wall and CPU seconds.

    .venv/bin/python benchmarks/sim_speed.py [--max-sim-s 3600] [--full-vm-trace] [--day]

Targets: >= 10,000x real time for one node; ``sol sim --duration 1d`` in seconds.
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

TARGET = 10_000.0


def drive(node: object, until: float, hz: float) -> tuple[float, float]:
    """Wall and CPU seconds to advance ``node`` to ``until`` at ``hz`` and read its ground truth."""
    advance = node.advance  # type: ignore[attr-defined]
    step = 1.0 / hz
    n = int(until * hz)
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(1, n + 1):
        advance(k * step)
    node.ground_truth()  # type: ignore[attr-defined]
    return time.perf_counter() - t0, time.process_time() - c0


def per_read_cost(seed: int, sim_s: float, repeat: int = 5) -> list[tuple[str, float, float]]:
    """CPU µs per simulated second of the default scenario advanced each second, and the extra
    µs of one sensor read each second, per facility: medians of ``repeat`` runs, each read run
    paired with an advance-only run just before it (the machine may be shared)."""
    from sol.sim import get_scenario

    reads: list[tuple[str, Callable[[object], object]]] = [
        ("cpu.usage", lambda n: n.sensors.cpu.usage("primary")),  # type: ignore[attr-defined]
        ("cpu.pressure", lambda n: n.sensors.cpu.pressure("primary")),  # type: ignore[attr-defined]
        ("memory.nodes", lambda n: n.sensors.memory.nodes()),  # type: ignore[attr-defined]
        ("memory.regions", lambda n: n.sensors.memory.regions()),  # type: ignore[attr-defined]
        ("gpu.power_usage_mw", lambda n: n.sensors.gpu.power_usage_mw(0)),  # type: ignore[attr-defined]
        ("faas.residency", lambda n: n.sensors.faas.residency("app0")),  # type: ignore[attr-defined]
    ]

    def run(read: Callable[[object], object] | None) -> float:
        node = get_scenario("default").build(seed)
        n = int(sim_s)
        t0 = time.process_time()
        for k in range(1, n + 1):
            node.advance(float(k))
            if read is not None:
                read(node)
        return (time.process_time() - t0) / n * 1e6

    out: list[tuple[str, float, float]] = []
    for name, read in reads:
        base: list[float] = []
        extra: list[float] = []
        for _ in range(repeat):
            b = run(None)
            base.append(b)
            extra.append(run(read) - b)
        out.append((name, statistics.median(base), statistics.median(extra)))
    return out


def one_day(seed: int, repeat: int) -> None:
    """One simulated day of the default scenario, through the runtime, ``repeat`` times."""
    from sol.agents.noop import NoopAgent
    from sol.cli import main as sol_main
    from sol.sim import get_scenario
    from sol.testing import simulate

    def timed(fn: Callable[[], object]) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "simulate(NoopAgent(), 86400)",
            lambda: simulate(NoopAgent(), duration=86400.0, backend=get_scenario("default").build(seed)),
        ),
        (
            "sol sim --duration 1d",
            lambda: sol_main(["sim", "--duration", "1d", "--quiet", "--seed", str(seed)], out=io.StringIO()),
        ),
    ]
    for name, fn in cases:
        runs = [timed(fn) for _ in range(repeat)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"{name:<30} 1 day: median of {repeat}: {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"({86400 / wall:,.0f}x real time); runs: " + ", ".join(f"{w:.2f}/{c:.2f}" for w, c in runs)
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-sim-s", type=float, default=3600.0, help="cap of simulated seconds per scenario")
    ap.add_argument("--hz", type=float, default=10.0, help="advance() calls per simulated second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--full-vm-trace", action="store_true", help="also replay the whole 27.8-day VM trace")
    ap.add_argument("--day", action="store_true", help="also time one simulated day through the runtime")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each --day case (median reported)")
    args = ap.parse_args(argv)

    from sol.sim import ScenarioError, get_scenario, list_scenarios, scenario_from_trace
    from sol.sim.scenarios import shared_data_dir

    print(f"advance() driven directly at {args.hz:g} Hz; no-op agent; seed {args.seed}")
    print(
        f"{'scenario':<18}{'facilities':<24}{'sim s':>9}{'wall s':>9}{'CPU s':>9}"
        f"{'sim s / wall s':>16}{'sim s / CPU s':>15}  target (CPU)"
    )
    worst = float("inf")
    for info in list_scenarios():
        try:
            node = get_scenario(info.name).build(args.seed)
        except ScenarioError as e:
            print(f"{info.name:<18}skipped: {e}")
            continue
        sim_s = min(info.duration_s, args.max_sim_s)
        wall, cpu = drive(node, sim_s, args.hz)
        speed = sim_s / cpu
        worst = min(worst, speed)
        ok = "ok" if speed >= TARGET else "BELOW"
        print(
            f"{info.name:<18}{','.join(info.facilities):<24}{sim_s:>9.0f}{wall:>9.3f}{cpu:>9.3f}"
            f"{sim_s / wall:>16,.0f}{speed:>15,.0f}  {ok}"
        )

    try:
        from sol.agents.noop import NoopAgent
        from sol.testing import simulate

        # the reference do-nothing agent, ticking at 10 Hz
        ten_hz = NoopAgent.schedule.replace(
            collect_every=0.1, predict_every=0.1, act_every=0.1, prediction_ttl=1.0, assess_every=1.0
        )

        sim_s = min(600.0, args.max_sim_s)
        node = get_scenario("default").build(args.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        simulate(NoopAgent(), duration=sim_s, seed=args.seed, backend=node, schedule=ten_hz)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"{'default (runtime)':<18}{'sol.testing.simulate':<24}{sim_s:>9.0f}{wall:>9.3f}{cpu:>9.3f}"
            f"{sim_s / wall:>16,.0f}{sim_s / cpu:>15,.0f}  (no-op agent at 10 Hz through the executor)"
        )
    except Exception as e:  # the runtime is built concurrently; report, do not fail the benchmark
        print(f"default (runtime)  skipped: {type(e).__name__}: {e}")

    sim_s = min(1800.0, args.max_sim_s)
    print(f"one sensor read per simulated second, default scenario, {sim_s:.0f} s, medians of 5 (CPU time):")
    for name, base, extra in per_read_cost(args.seed, sim_s):
        print(f"  {name:<22} +{extra:>7.1f} us per read  (advance only: {base:.1f} us per simulated second)")

    vm = shared_data_dir() / "azure-vm-cpu-2017" / "azure_v1_vm_cpu_avg_100vms_5min.csv"
    if vm.exists():
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        sc = scenario_from_trace(Path(vm))
        node = sc.build(args.seed)
        load = time.perf_counter() - t0
        sim_s = sc.duration_s if args.full_vm_trace else 86400.0
        wall, _ = drive(node, sim_s, 1.0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"largest trace: {vm.name} (+ max sibling), 100 VMs x {sc.duration_s / 86400:.1f} days: "
            f"load {load:.2f} s, replay of {sim_s / 86400:.1f} day(s) at {sim_s / wall:,.0f}x, "
            f"peak Python memory {peak / 2**20:.1f} MiB"
        )
    else:
        print(f"largest trace: skipped ({vm} not found; set SOL_SHARED_DATA)")
    print(
        f"slowest scenario: {worst:,.0f}x of its CPU time "
        f"({'meets' if worst >= TARGET else 'misses'} the {TARGET:,.0f}x target)"
    )
    if args.day:
        one_day(args.seed, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
