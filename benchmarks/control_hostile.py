"""The control socket under a hostile local user: root's latency, the daemon's CPU, the lanes.

    sudo .venv/bin/python benchmarks/control_hostile.py [--seconds 20] [--quota 25]
        [--backend auto|linux|sim] [--scenarios none,slots+pipeline,connect-loop]
        [--control-module PATH] [--limit FIELD=JSON ...]

Runs ``sol run`` as systemd would (as benchmarks/daemon.py: ``NOTIFY_SOCKET`` served by
``sol.testing.NotifySink``, JSON logs to a file) with ``cpu_harvest`` in dry-run at 20 Hz (50 ms
windows, four times its default rate: the harder case for the lanes),
the control socket 0660 for the group of ``nobody``, and, like the unit's ``CPUQuota=25%``, in
a cgroup v1 cpu group with a CFS quota of 25 % of a core (``--quota 0``: none). Each scenario
gets a fresh daemon (so its act figures are its own), a warm-up, and then over the window:

- root sends ``health`` and ``status`` (half each, evenly paced) with ``sol.control.request``,
  a new connection each, as ``sol ctl`` does: latency p50 / p99 / max of the ``ok`` answers,
  and how many were not ``ok`` (``busy``, or no answer within 30 s);
- the daemon's CPU time, every thread, as % of one core, and the quota's throttled periods;
- ``cpu_harvest``'s ``act_late_p99_ms`` from the status object (its last 4096 acts, all in
  this daemon's life) and how many of its decisions were expired defaults, from just before
  the hostile user starts to just after it stops (root reads both, the second once the
  hostile user is gone: a server that refuses root while it is there still gets measured).

Scenarios (the hostile user is a separate process as ``nobody``, not in the daemon's cgroup):

- ``none``: nobody else on the socket;
- ``slots+pipeline``: 16 silent connections, re-opened whenever closed, and a flood of
  pipelined ``status`` requests on 4 more connections, reconnecting at once when cut off;
- ``connect-loop``: 4 processes each connecting, sending ``status``, reading the reply and
  closing, in a tight loop (``while :; do sol status; done`` without the interpreter start).

``--control-module PATH`` runs the daemon with another ``sol/control.py`` (e.g. the one before
a change: ``git show REV:sol/control.py > /tmp/old_control.py``) and ``--limit FIELD=JSON``
with other ``sol.control.Limits`` (e.g. ``kernel_ban=false``), both through a launcher that
swaps them in before ``sol.daemon`` is imported. Figures depend on the machine; the table
says which.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from sol.control import request
from sol.testing import NotifySink

NOBODY = 65534
SCENARIOS = ("none", "slots+pipeline", "connect-loop")
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
# The hostile user cannot use our virtualenv (under root's home): a system python3.
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin") or sys.executable

LAUNCH = """
import importlib.util, json, runpy, sys
module, limits, config = sys.argv[1:4]
if module:
    spec = importlib.util.spec_from_file_location("sol.control", module)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sol.control"] = mod
    spec.loader.exec_module(mod)
if limits:
    import sol.control as control
    class Server(control.ControlServer):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("limits", control.Limits(**json.loads(limits)))
            super().__init__(*args, **kwargs)
    control.ControlServer = Server
sys.argv = ["sol", "run", "--config", config]
runpy.run_module("sol", run_name="__main__")
"""

HOSTILE = r"""
import json, select, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
stats = {"ok": 0, "busy": 0, "other": 0, "connects": 0, "connect_errors": 0}

def opened():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        stats["connect_errors"] += 1
        return None
    stats["connects"] += 1
    s.setblocking(False)
    return s

def count(line):
    stats["ok" if b'"ok": true' in line else "busy" if b'"busy"' in line else "other"] += 1

print("ready", flush=True)
if mode == "slots+pipeline":
    chunk = b'{"cmd": "status"}\n' * 256
    idle, flood = {}, {}
    while not select.select([sys.stdin], [], [], 0)[0]:
        while len(idle) < 16 and (s := opened()) is not None:
            idle[s] = b""
        while len(flood) < 4 and (s := opened()) is not None:
            flood[s] = b""
        r, w, _ = select.select(list(idle) + list(flood), list(flood), [], 0.05)
        for s in r:
            bufs = idle if s in idle else flood
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                bufs.pop(s)
                s.close()
                continue
            *lines, bufs[s] = (bufs[s] + data).split(b"\n")
            for line in lines:
                count(line)
        for s in w:
            if s in flood:
                try:
                    s.send(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    flood.pop(s)
                    s.close()
elif mode == "connect-loop":
    while not select.select([sys.stdin], [], [], 0)[0]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            stats["connects"] += 1
            try:
                s.sendall(b'{"cmd": "status"}\n')
            except OSError:
                pass
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if buf:
                count(buf.split(b"\n")[0])
        except OSError:
            stats["connect_errors"] += 1
        finally:
            s.close()
print(json.dumps(stats), flush=True)
"""


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


def config_text(root: Path, backend: str, group: str) -> str:
    return (
        f'backend = "{backend}"\n'
        f'[paths]\nstate_dir = "{root / "state"}"\n'
        '[log]\nformat = "json"\nlevel = "info"\n'
        f'[daemon]\ncontrol_socket = "{root / "sol.sock"}"\ncontrol_group = "{group}"\n'
        "metrics = false\nreport_every = 60.0\n"
        "[agents.cpu_harvest]\ndry_run = true\n"
        # 50 ms windows, as this benchmark's recorded figures were measured (the default is 200 ms)
        "[agents.cpu_harvest.schedule]\ncollect_every = 0.05\nact_every = 0.05\nprediction_ttl = 0.15\n"
    )


class Quota:
    """A cgroup v1 cpu group with a CFS quota, as systemd makes for ``CPUQuota=``."""

    def __init__(self, percent: float) -> None:
        self.path = CGROUP_CPU / f"sol_bench_control_{os.getpid()}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text("100000")
        (self.path / "cpu.cfs_quota_us").write_text(str(int(percent * 1000)))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled(self) -> tuple[int, int]:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def close(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)  # the daemon's tasks are still leaving


def quota_usable() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
        return "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
    return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]  # as `sol status` takes its p99


def cpu_harvest_row(reply: dict[str, Any]) -> dict[str, Any]:
    for row in reply["result"]["agents"]:
        if row["agent"] == "cpu_harvest":
            return dict(row)
    raise RuntimeError(f"no cpu_harvest in the status: {reply}")


def stop(hostile: list[subprocess.Popen[str]]) -> dict[str, int]:
    """End the hostile clients; what they got, summed."""
    stats = []
    for h in hostile:
        if h.returncode is not None:
            continue
        try:
            stdout, _ = h.communicate(input="stop\n", timeout=10)
            stats.append(json.loads(stdout.strip().splitlines()[-1]))
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            h.kill()
            h.wait()
    return {k: sum(s.get(k, 0) for s in stats) for k in ("ok", "busy", "other", "connects")}


def run_scenario(args: argparse.Namespace, backend: str, scenario: str, quota_pct: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="sol-bench-", dir="/tmp"))
    os.chmod(root, 0o755)  # the hostile user must reach the socket inside
    sock = root / "sol.sock"
    group = grp.getgrgid(NOBODY).gr_name
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, backend, group))
    os.chmod(cfg, 0o600)
    sink = NotifySink(root / "notify")
    env = {k: v for k, v in os.environ.items() if k not in ("SOL_CONFIG", "WATCHDOG_USEC")}
    env.update(NOTIFY_SOCKET=str(root / "notify"), WATCHDOG_USEC="30000000", PYTHONDONTWRITEBYTECODE="1")
    log = (root / "daemon.log").open("w")
    limits = json.dumps(args.limits) if args.limits else ""
    cmd = [sys.executable, "-c", LAUNCH, args.control_module or "", limits, str(cfg)]
    quota = Quota(quota_pct) if quota_pct else None
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    hostile: list[subprocess.Popen[str]] = []
    out: dict[str, Any] = {"scenario": scenario}
    try:
        if quota is not None:
            quota.add(proc.pid)
        sink.wait_for("READY", "1", timeout=60)
        time.sleep(args.warmup)
        before = cpu_harvest_row(request(sock, {"cmd": "status"}, timeout=30))
        procs = {"none": 0, "slots+pipeline": 1, "connect-loop": 4}[scenario]
        for _ in range(procs):
            hostile.append(
                subprocess.Popen(
                    [OTHER_PYTHON, "-c", HOSTILE, str(sock), scenario],
                    user=NOBODY,
                    group=NOBODY,
                    extra_groups=[],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd="/",
                )
            )
        for h in hostile:
            assert h.stdout is not None
            if h.stdout.readline().strip() != "ready":
                raise RuntimeError("the hostile client did not start")
        time.sleep(2.0 if hostile else 0.0)  # under way
        p = psutil.Process(proc.pid)
        c0, w0 = p.cpu_times(), time.monotonic()
        q0 = quota.throttled() if quota is not None else (0, 0)
        latency: dict[str, list[float]] = {"health": [], "status": []}
        refused: list[str] = []
        n = args.requests
        step = args.seconds / (2 * n)
        for i in range(2 * n):
            due = w0 + i * step
            time.sleep(max(0.0, due - time.monotonic()))
            name = ("health", "status")[i % 2]
            t0 = time.monotonic()
            try:
                reply = request(sock, {"cmd": name}, timeout=30)
            except Exception as exc:  # a failure is a figure here
                refused.append(f"{name}: {exc}")
                continue
            if reply.get("ok"):
                latency[name].append(time.monotonic() - t0)
            else:  # not answered: counted, not timed
                refused.append(f"{name}: {reply.get('code')}: {reply.get('error')}")
        time.sleep(max(0.0, w0 + args.seconds - time.monotonic()))
        c1, w1 = p.cpu_times(), time.monotonic()
        q1 = quota.throttled() if quota is not None else (0, 0)
        # read once the hostile user is gone (a server without root's own slots refuses
        # root while it is there); the acts are those of the window, the last 4096 are kept
        out["hostile"] = stop(hostile)
        after = cpu_harvest_row(request(sock, {"cmd": "status"}, timeout=30))
        out["cpu_pct"] = 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)
        out["throttled"] = (q1[1] - q0[1], q1[0] - q0[0])
        out["latency"] = latency
        out["refused"] = refused
        out["act_late_p99_ms"] = after.get("act_late_p99_ms")
        decided = after["decisions"] - before["decisions"]
        expired = sum(n - before["applied"].get(k, 0) for k, n in after["applied"].items() if "expired" in k)
        out["decisions"] = decided
        out["expired"] = expired
    finally:
        stop(hostile)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sink.close()
        log.close()
        if quota is not None:
            quota.close()
        if args.keep:
            print(f"  {scenario}: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return out


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"{1000 * statistics.median(values):.1f} / {1000 * pct(values, 0.99):.1f} / {1000 * max(values):.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per scenario")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after READY before the hostile client")
    ap.add_argument("--requests", type=int, default=50, help="root's requests of each kind per window")
    ap.add_argument("--quota", type=float, default=25.0, help="CFS quota, %% of a core (0: none)")
    ap.add_argument("--backend", choices=["auto", "linux", "sim"], default="auto")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--control-module", help="another sol/control.py to run the daemon with")
    ap.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a sol.control.Limits field for the daemon, e.g. kernel_ban=false (repeatable)",
    )
    ap.add_argument("--keep", action="store_true", help="keep each scenario's directory (config, log)")
    args = ap.parse_args(argv)
    args.limits = {}
    for item in args.limit:
        key, _, value = item.partition("=")
        try:
            args.limits[key] = json.loads(value)
        except ValueError:
            ap.error(f"--limit {item!r}: expected FIELD=JSON, e.g. kernel_ban=false")
    if os.geteuid() != 0 or not os.access(OTHER_PYTHON, os.X_OK):
        print("skipped: needs root (runs the hostile client as nobody) and a system python3")
        return 0
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; scenarios: {', '.join(SCENARIOS)}")
    backend = args.backend
    if backend == "auto":
        try:
            import sol.linux  # noqa: F401

            backend = "linux"
        except ImportError:
            backend = "sim"
    quota_pct = args.quota
    why = quota_usable() if quota_pct else None
    if why is not None:
        print(f"no CPU quota: {why}")
        quota_pct = 0.0

    results = [run_scenario(args, backend, s, quota_pct) for s in scenarios]

    print("sol control socket: root and the lanes under a hostile local user")
    print(f"machine: {machine()}")
    print(
        f"daemon: backend {backend}, cpu_harvest dry-run, "
        + (f"CFS quota {quota_pct:g} % of a core" if quota_pct else "no CPU quota")
        + (f", control module {args.control_module}" if args.control_module else "")
        + (f", limits {args.limits}" if args.limits else "")
    )
    print(f"window {args.seconds:g} s per scenario, root: {args.requests} health + {args.requests} status\n")
    header = (
        f"{'scenario':<16} {'health ms p50/p99/max':>22} {'status ms p50/p99/max':>22} "
        f"{'not ok':>6} {'CPU %':>6} {'throttled':>10} {'act late p99':>12} {'expired':>9} "
        f"{'hostile ok/busy/conn':>22}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        h = r.get("hostile", {})
        thr, periods = r.get("throttled", (0, 0))
        late = r.get("act_late_p99_ms")
        expired = f"{r['expired']}/{r['decisions']}" if "decisions" in r else "-"
        print(
            f"{r['scenario']:<16} {ms(r['latency']['health']):>22} {ms(r['latency']['status']):>22} "
            f"{len(r['refused']):>6} {r['cpu_pct']:>6.1f} {f'{thr}/{periods}':>10} "
            f"{(f'{late:.1f} ms' if late is not None else '-'):>12} {expired:>9} "
            f"{h.get('ok', 0)}/{h.get('busy', 0)}/{h.get('connects', 0):>6}"
        )
    for r in results:
        for line in r["refused"][:3]:
            print(f"  {r['scenario']}: root refused: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
