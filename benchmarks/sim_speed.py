"""Simulation speed: simulated seconds per wall second of each scenario with a no-op agent.

Drives ``node.advance()`` directly at 10 Hz of events (what the virtual-time executor does
before every event of an agent that ticks at 10 Hz), then, for the default scenario, the same
through ``sol.testing.simulate`` with a do-nothing agent (runtime overhead included). Last, the
peak Python memory of the largest trace (all 100 VMs of the Azure VM sample, both files)
while it is loaded and replayed for one simulated day.

    .venv/bin/python benchmarks/sim_speed.py [--max-sim-s 3600] [--full-vm-trace]

Target (the issue): >= 10,000x real time for one node.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

TARGET = 10_000.0


def drive(node: object, until: float, hz: float) -> float:
    advance = node.advance  # type: ignore[attr-defined]
    step = 1.0 / hz
    n = int(until * hz)
    t0 = time.perf_counter()
    for k in range(1, n + 1):
        advance(k * step)
    node.ground_truth()  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-sim-s", type=float, default=3600.0, help="cap of simulated seconds per scenario")
    ap.add_argument("--hz", type=float, default=10.0, help="advance() calls per simulated second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--full-vm-trace", action="store_true", help="also replay the whole 27.8-day VM trace")
    args = ap.parse_args(argv)

    from sol.sim import ScenarioError, get_scenario, list_scenarios, scenario_from_trace
    from sol.sim.scenarios import shared_data_dir

    print(f"advance() driven directly at {args.hz:g} Hz; no-op agent; seed {args.seed}")
    print(f"{'scenario':<18}{'facilities':<24}{'sim s':>9}{'wall s':>9}{'sim s / wall s':>16}  target")
    worst = float("inf")
    for info in list_scenarios():
        try:
            node = get_scenario(info.name).build(args.seed)
        except ScenarioError as e:
            print(f"{info.name:<18}skipped: {e}")
            continue
        sim_s = min(info.duration_s, args.max_sim_s)
        wall = drive(node, sim_s, args.hz)
        speed = sim_s / wall
        worst = min(worst, speed)
        ok = "ok" if speed >= TARGET else "BELOW"
        print(f"{info.name:<18}{','.join(info.facilities):<24}{sim_s:>9.0f}{wall:>9.3f}{speed:>16,.0f}  {ok}")

    try:
        from sol.sdk import Agent, Prediction, Schedule
        from sol.testing import simulate

        class NoOp(Agent):
            name = "noop"
            schedule = Schedule(collect_every=0.1, act_every=0.1, prediction_ttl=1.0, assess_every=1.0)

            def collect(self) -> object:
                return None

            def predict(self) -> object:
                return None

            def default_predict(self) -> object:
                return None

            def act(self, prediction: Prediction) -> None:
                return None

        sim_s = min(600.0, args.max_sim_s)
        node = get_scenario("default").build(args.seed)
        t0 = time.perf_counter()
        simulate(NoOp(), duration=sim_s, seed=args.seed, backend=node)
        wall = time.perf_counter() - t0
        print(
            f"{'default (runtime)':<18}{'sol.testing.simulate':<24}{sim_s:>9.0f}{wall:>9.3f}"
            f"{sim_s / wall:>16,.0f}  (no-op agent at 10 Hz through the virtual-time executor)"
        )
    except Exception as e:  # the runtime is built concurrently; report, do not fail the benchmark
        print(f"default (runtime)  skipped: {type(e).__name__}: {e}")

    vm = shared_data_dir() / "azure-vm-cpu-2017" / "azure_v1_vm_cpu_avg_100vms_5min.csv"
    if vm.exists():
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        sc = scenario_from_trace(Path(vm))
        node = sc.build(args.seed)
        load = time.perf_counter() - t0
        sim_s = sc.duration_s if args.full_vm_trace else 86400.0
        wall = drive(node, sim_s, 1.0)
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
        f"slowest scenario: {worst:,.0f}x "
        f"({'meets' if worst >= TARGET else 'misses'} the {TARGET:,.0f}x target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
