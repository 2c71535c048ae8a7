"""cpu_harvest's harvest at each window length, on slices of the Azure replay it was not tuned on.

    .venv/bin/python benchmarks/cpu_harvest_windows.py [--windows 0.05,0.1,0.2,0.5] [--jobs 2]

The table of docs/agents/cpu_harvest.md, "The default window": for each slice (a day of the
Azure 2017 VM sample and a seed for the VMs' vCPUs and burst slots) and packing (vCPUs per
core), the agent's harvest per node-hour at each window, as % of the oracle's at that window,
its short rate, and the change against the 100 ms window. Each cell is 4 nodes x 1 h, the
same nodes and policies as benchmarks/cpu_harvest.py (its ``policies`` and ``run_one``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_harvest as bench  # the benchmark next to this file

SLICES = ((0.0, 1), (3.0, 2), (10.5, 3))
PACKINGS = (1.0, 3.0)
NODES = 4
HOURS = 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", default="0.05,0.1,0.2,0.5", help="windows to compare (s)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    windows = [float(w) for w in args.windows.split(",")]
    jobs: list[bench.Job] = []
    for day, seed in SLICES:
        for oc in PACKINGS:
            for w in windows:
                labels = [p.label for p in bench.policies(w, [], ["quantile"], False)]
                for which, label in enumerate(labels):
                    if label not in ("oracle", "cpu_harvest (quantile)"):
                        continue
                    for i in range(NODES):
                        jobs.append(
                            (
                                i,
                                seed,
                                day * 86400.0,
                                HOURS * 3600.0,
                                w,
                                [],
                                ["quantile"],
                                False,
                                which,
                                oc,
                                "vms",
                            )
                        )
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        results = pool.map(bench.run_one, jobs, chunksize=1)
    print(f"{len(jobs)} runs, wall {time.perf_counter() - t0:.0f} s\n")
    cells: dict[tuple[float, int, float, float, str], list[bench.Result]] = {}
    for job, r in zip(jobs, results, strict=True):
        key = (job[2] / 86400.0, job[1], job[9], job[4], r.label)
        cells.setdefault(key, []).append(r)
    head = " | ".join(f"{w * 1000:g} ms" for w in windows)
    print(f"| slice | vCPU/core | {head} |")
    print("|---|---|" + "---|" * len(windows))
    for day, seed in SLICES:
        for oc in PACKINGS:
            row = []
            base = None
            for w in windows:
                agent = cells[(day, seed, oc, w, "cpu_harvest (quantile)")]
                oracle = cells[(day, seed, oc, w, "oracle")]
                h = sum(r.harvested_core_s for r in agent) / (NODES * HOURS)
                o = sum(r.harvested_core_s for r in oracle) / (NODES * HOURS)
                short = sum(r.short_windows for r in agent) / sum(r.windows for r in agent)
                if abs(w - 0.1) < 1e-9:
                    base = h
                row.append((w, h, o, short))
            out = []
            for w, h, o, short in row:
                change = "" if base is None or abs(w - 0.1) < 1e-9 else f", {100 * (h / base - 1):+.1f} %"
                out.append(f"{h:,.0f} ({100 * h / o:.1f} %), {100 * short:.2f} %{change}")
            print(f"| day {day:g}, seed {seed} | {oc:g} | " + " | ".join(out) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
