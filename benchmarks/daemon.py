"""The daemon as a service: steady-state CPU and memory, and SIGHUP reload latency.

    .venv/bin/python benchmarks/daemon.py [--seconds 60] [--backend auto|linux|sim] [--reloads 5]

Runs ``sol run`` as a separate process exactly as systemd would (``Type=notify``: a real
``NOTIFY_SOCKET`` datagram socket, JSON logs to a file), with every built-in agent enabled in
dry-run on the Linux backend (``auto`` falls back to the simulated node where the Linux
backend cannot start, e.g. without root, and says so). The control socket and the metrics
endpoint are on, as in production; ``report_every`` is 60 s as in the example config.

1. Steady state: after READY=1 and a warm-up, the daemon's own CPU time (user + system, all
   threads, from /proc) over the window, as % of one core, and its RSS at the end and peak.
   Targets: <= 1 % of a core, <= 128 MiB. The CPU is split, from the daemon's own metrics
   (``sol_agent_cpu_seconds_total``), into each agent's lane ticks (its callbacks and the runner's
   bookkeeping around them, timed per tick by the live executor) and the rest (lane wake-ups, runtime,
   sensors' backend threads, control socket, metrics, logging).
2. Reload latency: SIGHUP -> READY=1 (systemd's view of a reload), for a reload that restarts
   one agent (its schedule changed) and for one that changes nothing. Median and max.

Figures depend on the machine; the table says which (CPU model, cores, kernel, Python).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

from sol.control import request
from sol.registry import BUILTIN_AGENTS, Registry
from sol.testing import NotifySink

MIB = 1024 * 1024


def agent_cpu(url: str) -> dict[str, float]:
    """CPU seconds in each agent's lane ticks, both sides, from the daemon's metrics."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("sol_agent_cpu_seconds_total{"):
            labels, _, value = line.rpartition(" ")
            agent = labels.split('agent="', 1)[1].split('"', 1)[0]
            out[agent] = out.get(agent, 0.0) + float(value)
    return out


def linux_usable() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root"
    try:
        from sol.linux import LinuxBackend  # noqa: F401
    except ImportError as exc:
        return False, f"sol.linux unavailable ({exc})"
    return True, ""


def config_text(
    root: Path,
    backend: str,
    agents: list[str],
    act_every: float | None = None,
    schedules: dict[str, dict[str, float]] | None = None,
) -> str:
    lines = [
        f'backend = "{backend}"',
        "[paths]",
        f'state_dir = "{root / "state"}"',
        "[log]",
        'format = "json"',
        'level = "info"',
        "[daemon]",
        f'control_socket = "{root / "sol.sock"}"',
        "metrics_port = 0",
        "report_every = 60.0",
    ]
    for i, name in enumerate(agents):
        lines += [f"[agents.{name}]", "dry_run = true"]
        sched = dict((schedules or {}).get(name, {}))
        if i == 0 and act_every is not None:
            sched["act_every"] = act_every
        if sched:
            lines += [f"[agents.{name}.schedule]", *(f"{k} = {v!r}" for k, v in sched.items())]
    return "\n".join(lines) + "\n"


_FLOOR = """
import sys, threading, time
periods = [float(x) for x in sys.argv[1].split(",")]
seconds = float(sys.argv[2])
stop = False
def lane(period):
    gate = threading.Lock(); gate.acquire()  # how the runtime's lanes sleep (sol.runtime.live.Halt)
    due = time.monotonic()
    while not stop:
        due += period
        gate.acquire(timeout=max(0.0, due - time.monotonic()))
threads = [threading.Thread(target=lane, args=(p,), daemon=True) for p in periods]
for t in threads: t.start()
time.sleep(1.0)
t0, c0 = time.monotonic(), time.process_time()
time.sleep(seconds)
print(100.0 * (time.process_time() - c0) / (time.monotonic() - t0))
"""


def wake_floor(periods: list[float], seconds: float) -> float:
    """% of one core used by threads that do nothing but wake on the runtime's schedule: the
    part of the daemon's CPU that no agent or runtime code can remove on this machine."""
    arg = ",".join(f"{p:g}" for p in periods)
    out = subprocess.run(
        [sys.executable, "-c", _FLOOR, arg, str(seconds)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def lane_periods(agents: list[str], schedules: dict[str, dict[str, float]]) -> list[float]:
    """The wake periods of the daemon's lanes: each agent's model and actuator lane (at its
    collect and act periods) and the runtime's watchdog."""
    classes = Registry(plugins=False).classes()
    out = [0.25]
    for name in agents:
        sched = classes[name].schedule.replace(**schedules.get(name, {}))
        out += [min(sched.collect_every, sched.assess_every), min(sched.act_every, sched.assess_every)]
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="steady-state window (default 60)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after READY before measuring")
    ap.add_argument("--backend", choices=["auto", "linux", "sim"], default="auto")
    ap.add_argument("--reloads", type=int, default=5, help="reloads of each kind (default 5)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (config, log)")
    ap.add_argument("--agents", help="comma-separated agents (default: every built-in agent)")
    ap.add_argument(
        "--schedule",
        action="append",
        default=[],
        metavar="AGENT.KEY=SECONDS",
        help="override a schedule entry, e.g. cpu_harvest.collect_every=0.2 (repeatable)",
    )
    args = ap.parse_args(argv)
    schedules: dict[str, dict[str, float]] = {}
    for item in args.schedule:
        try:
            key, value = item.split("=", 1)
            agent, field = key.split(".", 1)
            schedules.setdefault(agent, {})[field] = float(value)
        except ValueError:
            ap.error(f"--schedule {item!r}: expected AGENT.KEY=SECONDS")

    backend = args.backend
    note = ""
    if backend in ("auto", "linux"):
        ok, why = linux_usable()
        if not ok:
            if backend == "linux":
                raise SystemExit(f"the Linux backend cannot run here: {why}")
            backend, note = "sim", f"Linux backend unavailable ({why}): simulated node"
        else:
            backend = "linux"
    registry = Registry(plugins=False)
    agents = [n for n in BUILTIN_AGENTS if n in registry.classes()]
    if args.agents:
        agents = [a.strip() for a in args.agents.split(",") if a.strip()]

    root = Path(tempfile.mkdtemp(prefix="sol-bench-", dir="/tmp"))
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, backend, agents, schedules=schedules))
    os.chmod(cfg, 0o600)
    sink = NotifySink(root / "notify")
    env = {k: v for k, v in os.environ.items() if k not in ("SOL_CONFIG", "WATCHDOG_USEC")}
    env.update(NOTIFY_SOCKET=str(root / "notify"), WATCHDOG_USEC="30000000", PYTHONDONTWRITEBYTECODE="1")
    log = (root / "daemon.log").open("w")
    sol = Path(sys.executable).parent / "sol"
    cmd = [str(sol), "run", "--config", str(cfg)] if sol.exists() else [sys.executable, "-m", "sol", "run"]
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        startup = sink.messages[sink.wait_for("READY", "1", timeout=60)][0] - t_start
        p = psutil.Process(proc.pid)
        time.sleep(args.warmup)
        url = request(root / "sol.sock", {"cmd": "status"})["result"]["daemon"]["metrics"]
        a0 = agent_cpu(url)
        c0, w0 = p.cpu_times(), time.monotonic()
        peak = 0
        end = w0 + args.seconds
        while time.monotonic() < end:
            peak = max(peak, p.memory_info().rss)
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        c1, w1 = p.cpu_times(), time.monotonic()
        a1 = agent_cpu(url)
        rss = p.memory_info().rss
        peak = max(peak, rss)
        cpu_pct = 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)
        per_agent = {
            a: 100.0 * (a1.get(a, 0.0) - a0.get(a, 0.0)) / (w1 - w0) for a in sorted(set(a1) | set(a0))
        }
        threads = p.num_threads()

        def reload(text: str) -> float:
            cfg.write_text(text)
            seen = len(sink.messages)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            reloading = sink.wait_for("RELOADING", "1", after=seen, timeout=60)
            return sink.messages[sink.wait_for("READY", "1", after=reloading + 1, timeout=60)][0] - t0

        restart_one: list[float] = []
        unchanged: list[float] = []
        for i in range(args.reloads):
            text = config_text(root, backend, agents, act_every=0.5 + 0.25 * (i % 2), schedules=schedules)
            restart_one.append(reload(text))
            unchanged.append(reload(cfg.read_text()))
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stop_s = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sink.close()
        log.close()

    failed = "reload_failed" in (root / "daemon.log").read_text()
    periods = lane_periods(agents, schedules)
    floor = wake_floor(periods, min(args.seconds, 20.0))
    rows = [
        ("machine", machine()),
        ("backend / agents", f"{backend}, dry-run: {', '.join(agents)}" + (f"  [{note}]" if note else "")),
        *(
            (f"  schedule of {a}", ", ".join(f"{k}={v:g}" for k, v in kv.items()))
            for a, kv in schedules.items()
        ),
        ("start -> READY=1", f"{startup:.2f} s"),
        (f"CPU, steady state ({args.seconds:g} s)", f"{cpu_pct:.3f} % of one core  (target <= 1 %)"),
        *((f"  in {a}'s ticks", f"{pct:.3f} %") for a, pct in per_agent.items()),
        ("  the rest (wake-ups, daemon)", f"{cpu_pct - sum(per_agent.values()):.3f} %"),
        (
            "  floor: idle threads waking alike",
            f"{floor:.3f} %  ({sum(1 / p for p in periods):.0f} wakes/s, no work: the cost of waking here)",
        ),
        ("RSS at end / peak", f"{rss / MIB:.1f} / {peak / MIB:.1f} MiB  (target <= 128 MiB)"),
        ("threads", str(threads)),
        (
            "reload restarting 1 agent",
            f"median {1000 * statistics.median(restart_one):.0f} ms, max {1000 * max(restart_one):.0f} ms",
        ),
        (
            "reload, nothing changed",
            f"median {1000 * statistics.median(unchanged):.0f} ms, max {1000 * max(unchanged):.0f} ms",
        ),
        ("SIGTERM -> exit (clean-up, restore)", f"{stop_s:.2f} s"),
        ("exit code", str(proc.returncode) + ("  (a reload FAILED: see the log)" if failed else "")),
    ]
    width = max(len(k) for k, _ in rows)
    print("sol daemon: steady state and reload")
    print("-" * (width + 50))
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    within = cpu_pct <= 1.0 and rss <= 128 * MIB
    ok = within and proc.returncode == 0 and not failed
    if args.keep or not ok:
        print(f"\nlog: {root / 'daemon.log'}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
