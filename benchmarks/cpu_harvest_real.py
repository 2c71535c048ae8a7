"""cpu_harvest on this host, for real: a request server's latency next to lent batch work.

    sudo .venv/bin/python benchmarks/cpu_harvest_real.py [--seconds 120] [--rounds 2]
        [--start 1200] [--lead-in 20] [--cpu-scale 0.25] [--static 0.5,1] [--window 0.2]

The simulator's harvest figures rest on a model of what a short window costs the primaries;
this measures it on a real kernel. It makes two cgroup v1 groups (``cpu``, ``cpuacct``,
``cpuset``) as tests/agents/test_cpu_harvest_linux.py does: a primary group on every core and
a harvest group as the Linux backend parks it (the top core, 1 ms of quota per period, the
least CPU weight), and puts in them:

* a **request server** in the primary group: one worker process per core taking requests from
  a shared queue; a dispatcher replays the arrival times of the Azure LLM 2023 code trace
  (``../shared/data/azure-llm-2023``) from ``--start`` seconds into it, in real time, and each
  request spins on its worker for the CPU time its tokens set (``sol.sim.arrivals.ServiceCost``
  x ``--cpu-scale``). A request's latency runs from its scheduled arrival to its completion,
  so a late dispatcher counts against the policy, as a late server would;
* one **batch burner** per core in the harvest group, always runnable.

Policies, each on the same slice of arrivals (``--lead-in`` seconds before it, unmeasured, so
the agent has warmed up), in an order that rotates every round:

* ``alone``: the burners stopped (SIGSTOP): the server's latency with nothing beside it;
* ``none``: burners runnable, the harvest group parked: nothing lent;
* ``static+k``: the static buffer (``StaticBufferHarvest``, ``buffer_cores = k``);
* ``cpu_harvest``: the agent at its default parameters and window, except
  ``min_primary_cores = 1`` (on a 2-core machine the default guarantee leaves nothing to lend).

The two harvesting policies run in-process on the live executor with the Linux backend (the
daemon's runtime, undo journal included), reading and writing the real groups. Columns: the
harvest group's CPU (``cpuacct.usage``) in cores over the measured slice; the requests' p50 and
p99 latency and both relative to ``alone`` in the same round; requests measured. SmartHarvest's
bar is a p99 at most 10 % above running alone.

Needs root, a writable cgroup v1 ``cpu``/``cpuacct``/``cpuset`` hierarchy and >= 2 CPUs; says
which is missing otherwise. Everything it made (processes, groups, the journal's temp dir) is
removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sol.testing import V1Groups

CGROUP = Path("/sys/fs/cgroup")
LLM_TRACE = "azure-llm-2023/AzureLLMInferenceTrace_code.csv"


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    for c, marker in (("cpu", "cpu.cfs_quota_us"), ("cpuacct", "cpuacct.usage"), ("cpuset", "cpuset.cpus")):
        if not (CGROUP / c / marker).is_file():
            return f"no writable cgroup v1 {c} hierarchy at {CGROUP / c}"
    if len(os.sched_getaffinity(0)) < 2:
        return "needs at least 2 CPUs"
    return None


# -- the request server (a subprocess in the primary group) -----------------------------


def _worker(jobs: Any, done: Any) -> None:
    while True:
        item = jobs.get()
        if item is None:
            return
        i, cpu_s = item
        end = time.thread_time() + cpu_s
        while time.thread_time() < end:
            pass
        done.put((i, time.monotonic()))


def serve(schedule: Path, out: Path, workers: int) -> None:
    """Replays ``schedule`` (rows: arrival offset s, CPU s) and saves each request's
    (scheduled arrival, completion) in monotonic seconds to ``out``."""
    rows = np.load(schedule)
    ctx = multiprocessing.get_context("fork")
    jobs, done = ctx.SimpleQueue(), ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker, args=(jobs, done), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    t0 = time.monotonic() + 0.2
    arrive = t0 + rows[:, 0]
    for i, (a, c) in enumerate(zip(arrive.tolist(), rows[:, 1].tolist(), strict=True)):
        delay = a - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put((i, c))
    finished = np.zeros(len(rows))
    for _ in range(len(rows)):
        i, t = done.get()
        finished[i] = t
    for _ in procs:
        jobs.put(None)
    for p in procs:
        p.join(timeout=5)
    np.save(out, np.stack([arrive, finished], axis=1))


# -- the host: groups and processes, all undone by cleanup --------------------------------


def read(path: Path) -> str:
    return path.read_text().strip()


class Host(V1Groups):
    """The benchmark's groups and processes (``sol.testing.V1Groups``): undone by ``cleanup``."""

    def __init__(self, primary: str, harvest: str, cores: list[int]) -> None:
        super().__init__(CGROUP)
        self.primary, self.harvest, self.cores = primary, harvest, cores
        self.burners: list[subprocess.Popen[bytes]] = []

    def harvest_usage_s(self) -> float:
        return int(read(CGROUP / "cpuacct" / self.harvest / "cpuacct.usage")) / 1e9

    def burners_run(self, on: bool) -> None:
        for p in self.burners:
            os.kill(p.pid, signal.SIGCONT if on else signal.SIGSTOP)


# -- the harvesting policies, in-process on the live executor -----------------------------


class Runtime:
    """The daemon's runtime for one agent: the Linux backend on the host's groups, its undo
    journal in a temp dir, the live executor. ``stop`` restores what it changed."""

    def __init__(self, h: Host, agent: Any, params: Any, schedule: Any, tmp: Path) -> None:
        from sol.actuators.restorers import default_restorers
        from sol.config import LinuxConfig, LinuxCpuConfig
        from sol.linux.backend import LinuxBackend
        from sol.log import get_logger
        from sol.runtime.base import AgentSpec
        from sol.runtime.live import LiveExecutor
        from sol.safety.journal import UndoJournal

        self.journal = UndoJournal.open(tmp / f"undo-{uuid.uuid4().hex[:6]}.journal")
        linux = LinuxConfig(cpu=LinuxCpuConfig(harvest_cgroup=h.harvest, primary_cgroups=(h.primary,)))
        self.backend = LinuxBackend(linux, journal=self.journal, facilities=("cpu",))
        self.executor = LiveExecutor(
            [AgentSpec(agent, schedule, params, False)],
            backend=self.backend,
            log=get_logger(component="bench"),
            journal=self.journal,
            restorers=default_restorers(),
        )
        self.executor.start()

    def stop(self) -> None:
        try:
            self.executor.stop()
        finally:
            self.backend.close()
            self.journal.close()


def make_policy(label: str, window: float) -> tuple[Any, Any, Any] | None:
    from sol.agents.cpu_harvest import CpuHarvestAgent, Params, StaticBufferHarvest, StaticParams

    sched = CpuHarvestAgent.schedule.replace(
        collect_every=window, act_every=window, prediction_ttl=3 * window
    )
    if label == "cpu_harvest":
        return CpuHarvestAgent(), Params(min_primary_cores=1), sched
    if label.startswith("static+"):
        k = float(label.removeprefix("static+"))
        return StaticBufferHarvest(), StaticParams(buffer_cores=k, min_primary_cores=1), sched
    return None


@dataclass
class Run:
    label: str
    round: int
    harvest_cores: float
    p50: float
    p99: float
    n: int


def run_policy(
    h: Host, label: str, rnd: int, schedule: Path, lead_in: float, seconds: float, window: float, tmp: Path
) -> Run:
    h.burners_run(label != "alone")
    made = make_policy(label, window)
    runtime = Runtime(h, *made, tmp) if made is not None else None
    out = tmp / f"lat-{label}-{rnd}.npy"
    try:
        server = h.spawn(
            h.primary,
            [sys.executable, __file__, "--serve", str(schedule), str(out), str(len(h.cores))],
        )
        time.sleep(0.2 + lead_in)
        u0 = h.harvest_usage_s()
        time.sleep(seconds)
        u1 = h.harvest_usage_s()
        if server.wait(timeout=seconds + 600) != 0:
            raise RuntimeError(f"the request server exited {server.returncode}")
    finally:
        if runtime is not None:
            runtime.stop()
        h.burners_run(False)
    rows = np.load(out)
    lat = rows[:, 1] - rows[:, 0]
    measured = lat[rows[:, 0] - rows[0, 0] >= lead_in] if len(rows) else lat
    return Run(
        label,
        rnd,
        (u1 - u0) / seconds,
        float(np.percentile(measured, 50)),
        float(np.percentile(measured, 99)),
        int(measured.size),
    )


def build_schedule(path: Path, start: float, lead_in: float, seconds: float, scale: float) -> np.ndarray:
    from sol.sim.arrivals import ServiceCost
    from sol.sim.traces import load_llm_2023

    llm = load_llm_2023(path)
    lo, hi = start - lead_in, start + seconds
    if lo < 0 or hi > llm.span_s:
        raise SystemExit(f"--start/--lead-in/--seconds leave the trace's {llm.span_s:.0f} s")
    sel = (llm.arrival_s >= lo) & (llm.arrival_s < hi)
    cpu = ServiceCost().cpu_s(llm.prompt_tokens[sel], llm.output_tokens[sel]) * scale
    return np.stack([llm.arrival_s[sel] - lo, cpu], axis=1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(Path(argv[1]), Path(argv[2]), int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="measured slice of the trace (s)")
    ap.add_argument("--lead-in", type=float, default=20.0, help="unmeasured arrivals before it (s)")
    ap.add_argument("--start", type=float, default=1200.0, help="where in the trace the slice starts (s)")
    ap.add_argument("--cpu-scale", type=float, default=0.25, help="x each request's CPU time")
    ap.add_argument("--static", default="0.5,1", help="static buffers to try (cores)")
    ap.add_argument("--window", type=float, default=0.2, help="window of both harvesting policies (s)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"cpu_harvest_real: skipped: {reason}")
        return 2
    from sol.log import configure
    from sol.sim.scenarios import shared_data_dir

    configure(level="error")
    trace = shared_data_dir() / LLM_TRACE
    if not trace.is_file():
        print(f"cpu_harvest_real: skipped: {trace} not found (set SOL_SHARED_DATA)")
        return 2
    rows = build_schedule(trace, args.start, args.lead_in, args.seconds, args.cpu_scale)
    cores = sorted(os.sched_getaffinity(0))
    measured = rows[rows[:, 0] >= args.lead_in]
    print(
        f"cpu_harvest_real: {len(cores)} cores, {len(measured)} requests in {args.seconds:g} s from "
        f"{args.start:g} s into {trace.name} ({len(measured) / args.seconds:.2f}/s, "
        f"{measured[:, 1].sum() / args.seconds:.2f} cores of request CPU on average), "
        f"{args.window * 1000:g} ms windows, {args.rounds} round(s)",
        flush=True,
    )
    labels = [
        "alone",
        "none",
        *(f"static+{k:g}" for k in map(float, args.static.split(",") if args.static else [])),
        "cpu_harvest",
    ]
    tag = uuid.uuid4().hex[:8]
    h = Host(primary=f"sol_bench_{tag}_primary", harvest=f"sol_bench_{tag}_harvest", cores=cores)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="sol-harvest-real-") as td:
        tmp = Path(td)
        schedule = tmp / "schedule.npy"
        np.save(schedule, rows)
        try:
            h.mkgroup(h.primary, f"{cores[0]}-{cores[-1]}", quota=-1, shares=1024)
            h.mkgroup(h.harvest, str(cores[-1]), quota=1000, shares=2)
            for _ in cores:
                h.burners.append(h.spawn(h.harvest, [sys.executable, "-c", "while True: pass"]))
            h.burners_run(False)
            for rnd in range(args.rounds):
                order = labels[rnd % len(labels) :] + labels[: rnd % len(labels)]
                for label in order:
                    r = run_policy(h, label, rnd, schedule, args.lead_in, args.seconds, args.window, tmp)
                    runs.append(r)
                    print(
                        f"  round {rnd} {label}: harvest {r.harvest_cores:.3f} cores, "
                        f"p50 {r.p50 * 1e3:.0f} ms, p99 {r.p99 * 1e3:.0f} ms ({r.n} requests)",
                        flush=True,
                    )
        finally:
            h.cleanup()
    print()
    head = f"{'policy':<14}{'harvest cores':>14}{'p50 ms':>9}{'p99 ms':>9}"
    print(f"{head}{'p50 vs alone':>14}{'p99 vs alone':>14}")
    for label in labels:
        mine = [r for r in runs if r.label == label]
        rel50 = [r.p50 / a.p50 for r in mine for a in runs if a.label == "alone" and a.round == r.round]
        rel99 = [r.p99 / a.p99 for r in mine for a in runs if a.label == "alone" and a.round == r.round]
        print(
            f"{label:<14}{statistics.mean(r.harvest_cores for r in mine):>14.3f}"
            f"{statistics.mean(r.p50 for r in mine) * 1e3:>9.0f}"
            f"{statistics.mean(r.p99 for r in mine) * 1e3:>9.0f}"
            f"{(statistics.mean(rel50) - 1) * 100:>+13.1f}%{(statistics.mean(rel99) - 1) * 100:>+13.1f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
