"""The real process-level test: SIGKILL ``sol run --backend linux`` mid-actuation, `sol restore`.

DESIGN §4 guarantee 8 on a real host: every host write is preceded by a durable before-image,
so after a SIGKILL at any point ``sol restore`` puts every knob back. :class:`SigkillRig`

1. creates its own test cgroups (``sol_test_*`` under ``/sys/fs/cgroup/{cpuset,cpu,cpuacct}``)
   in a known state that differs from what the agent writes (all cores, no CFS quota);
2. writes a config pointing the Linux backend at them, with one agent, :class:`FlapperAgent`,
   registered through a ``sol.agents`` entry point (a dist-info in a temp dir on
   ``PYTHONPATH``): it changes the harvest group's cores on every tick, so the daemon is
   almost always in the middle of an actuation;
3. for each kill: starts ``sol run``, waits for its first write, waits a random 0-``spread_s``
   more, SIGKILLs it, reads the knobs (did the kill leave the host changed?), runs
   ``sol restore``, and checks every knob reads its before-image again and the journal has no
   open record;
4. removes the cgroups (and kills any daemon it started) however it ends.

A lost kill is one after which a knob does not hold its before-image: the target is zero.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sol.sdk import Agent, Context, Prediction, Schedule

__all__ = ["DaemonDidNotStart", "FlapperAgent", "KillReport", "SigkillRig", "sigkill_campaign", "skip_reason"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpuset", "cpu", "cpuacct")
#: The knobs of the harvest group sol may write (and their controller).
KNOBS = (
    ("cpuset", "cpuset.cpus"),
    ("cpuset", "cpuset.mems"),
    ("cpu", "cpu.cfs_quota_us"),
    ("cpu", "cpu.shares"),
)


class FlapperAgent(Agent):
    """Parks the harvest group, lends it a core, parks it...: a write on every tick (SIGKILL test)."""

    name = "fi_flapper"
    schedule = Schedule(collect_every=0.05, act_every=0.05, prediction_ttl=0.5, assess_every=1.0)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        if ctx.actuators.cpu is None:
            raise RuntimeError("fi_flapper needs the cpu facility")
        self.cpu = ctx.actuators.cpu
        self.n = 0

    def collect(self) -> int:
        return 1

    def predict(self) -> int:
        self.n += 1
        return self.n % 2

    def default_predict(self) -> int:
        return 0

    def act(self, prediction: Prediction) -> None:
        self.cpu.set_harvest_cores(int(prediction.value))

    def mitigate(self) -> None:
        self.cpu.set_harvest_cores(0)

    def clean_up(self) -> None:
        if getattr(self, "cpu", None) is not None:
            self.cpu.set_harvest_cores(0)


def skip_reason(root: Path = CGROUP_ROOT) -> str | None:
    """Why the real SIGKILL test cannot run here (``None``: it can)."""
    if sys.platform != "linux":
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root to create test cgroups"
    try:
        import sol.linux  # noqa: F401
    except ImportError as exc:
        return f"the Linux backend (sol.linux) is not available: {exc}"
    for controller, marker in (
        ("cpuset", "cpuset.cpus"),
        ("cpu", "cpu.cfs_quota_us"),
        ("cpuacct", "cpuacct.usage"),
    ):
        if not (root / controller / marker).is_file():
            return f"no cgroup v1 {controller} hierarchy at {root / controller} (the test drives v1 knobs)"
    cores = (root / "cpuset" / "cpuset.cpus").read_text().strip()
    if cores in ("", "0"):
        return "needs at least 2 CPUs"
    return None


@dataclass(slots=True)
class KillReport:
    kills: int = 0
    #: kills after which some knob did not hold its before-image (restore had work to do)
    changed: int = 0
    restored: int = 0
    #: kills after which `sol restore` did not bring every knob back: the target is 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    #: seconds from spawn to the daemon's first write, per kill
    startup_s: list[float] = field(default_factory=list)
    #: daemons that never got to a first write (why), which ends their lane
    start_failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mean = sum(self.startup_s) / len(self.startup_s) if self.startup_s else 0.0
        return (
            f"{self.kills} SIGKILLs of `sol run --backend linux`, {self.changed} left the host changed, "
            f"{self.restored} restored by `sol restore`, {self.lost} lost "
            f"({self.wall_s:.0f} s, first write {mean:.1f} s after start on average)"
        )


class DaemonDidNotStart(RuntimeError):
    """`sol run` exited, or made no write in time: the Linux backend cannot run here."""


class SigkillRig:
    """Test cgroups, a config and a plugin agent; :meth:`kill_once` runs one kill cycle."""

    def __init__(
        self, *, root: Path = CGROUP_ROOT, sol: list[str] | None = None, start_timeout: float = 60.0
    ) -> None:
        self.root = root
        self.sol = sol or [sys.executable, "-m", "sol"]
        self.start_timeout = start_timeout
        self.group = f"sol_test_{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="sol-sigkill-"))
        self.config = self.tmp / "sol.toml"
        self.journal = self.tmp / "state" / "undo.journal"
        self.before: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._made: list[Path] = []

    # -- setup / teardown ------------------------------------------------------------------
    def __enter__(self) -> SigkillRig:
        try:
            self._make_groups()
            self._write_plugin()
            self._write_config()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _path(self, controller: str, name: str) -> Path:
        return self.root / controller / self.group / name

    def _make_groups(self) -> None:
        for c in CONTROLLERS:
            d = self.root / c / self.group
            d.mkdir()
            self._made.append(d)
        parent = self.root / "cpuset"
        # A new v1 cpuset starts empty: give it the parent's memory nodes and every CPU (a
        # state the agent never writes, so a restore that misses a knob shows).
        self._path("cpuset", "cpuset.mems").write_text((parent / "cpuset.mems").read_text())
        self._path("cpuset", "cpuset.cpus").write_text((parent / "cpuset.cpus").read_text())
        self._path("cpu", "cpu.cfs_quota_us").write_text("-1")
        self.before = self.knobs()

    def knobs(self) -> dict[str, str]:
        return {f"{c}/{name}": self._path(c, name).read_text().strip() for c, name in KNOBS}

    def _write_plugin(self) -> None:
        info = self.tmp / "site" / "sol_fault_injection_flapper-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: sol-fault-injection-flapper\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text(
            f"[sol.agents]\n{FlapperAgent.name} = sol.fault_injection.process:FlapperAgent\n"
        )

    def _write_config(self) -> None:
        state = self.tmp / "state"
        self.config.write_text(
            f"""backend = "linux"
rollback = "auto"

[paths]
state_dir = "{state}"
journal = "{self.journal}"

[log]
format = "json"
level = "info"

[linux]
cgroup_root = "{self.root}"

[linux.cpu]
harvest_cgroup = "{self.group}"

[daemon]
metrics = false
control_socket = "{self.tmp / "sol.sock"}"

[agents.noop]
enabled = false

[agents.example_ewma]
enabled = false

[agents.{FlapperAgent.name}]
enabled = true
"""
        )

    def env(self) -> dict[str, str]:
        paths = [str(self.tmp / "site"), os.environ.get("PYTHONPATH", "")]
        return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        with contextlib.suppress(Exception):
            if self.journal.exists():
                self.restore()
        for d in reversed(self._made):
            for _ in range(50):  # a killed daemon's tasks leave the group asynchronously
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        self._made.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- one kill ----------------------------------------------------------------------------
    def start(self) -> tuple[subprocess.Popen[bytes], float]:
        """Start ``sol run`` and wait for its first write; (process, seconds it took)."""
        log = self.tmp / "daemon.log"
        t0 = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*self.sol, "run", "--config", str(self.config), "--backend", "linux"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        self._proc = proc
        deadline = t0 + self.start_timeout
        while time.monotonic() < deadline:
            if b'"actuation.write"' in log.read_bytes():
                return proc, time.monotonic() - t0
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        tail = log.read_bytes().decode(errors="replace").strip().splitlines()[-8:]
        raise DaemonDidNotStart(
            f"`sol run --backend linux` made no write within {self.start_timeout:g} s "
            f"(exit {proc.returncode}); last output: " + " | ".join(tail)
        )

    def restore(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.sol, "restore", "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )

    def open_records(self) -> int:
        from sol.safety.journal import UndoJournal

        if not self.journal.exists():
            return 0
        with UndoJournal.open(self.journal, fsync=False, log=_quiet()) as j:
            return len(j.open_records())

    def kill_once(self, report: KillReport, rng: random.Random, spread_s: float = 0.4) -> None:
        t0 = time.monotonic()
        try:
            self._kill_once(report, rng, spread_s)
        finally:
            report.wall_s += time.monotonic() - t0

    def _kill_once(self, report: KillReport, rng: random.Random, spread_s: float) -> None:
        proc, startup = self.start()
        report.startup_s.append(startup)
        time.sleep(rng.uniform(0.0, spread_s))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self._proc = None
        report.kills += 1
        at_kill = self.knobs()
        if at_kill != self.before:
            report.changed += 1
        done = self.restore()
        after = self.knobs()
        left = self.open_records()
        problems = []
        if done.returncode != 0:
            problems.append(
                f"`sol restore` exited {done.returncode}: {(done.stdout + done.stderr).strip()[-300:]}"
            )
        wrong = {k: (v, self.before[k]) for k, v in after.items() if v != self.before[k]}
        if wrong:
            problems.append(f"knobs not at their before-image (now, before): {wrong}")
        if left:
            problems.append(f"{left} undo record(s) still open after `sol restore`")
        if problems:
            report.lost += 1
            report.failures.append(f"kill {report.kills}: " + "; ".join(problems))
            # put the host back by hand so the next kill starts from the known state
            for key, value in self.before.items():
                c, name = key.split("/")
                with contextlib.suppress(OSError):
                    self._path(c, name).write_text(value)
        elif at_kill != self.before:
            report.restored += 1


def sigkill_campaign(kills: int, *, lanes: int = 1, seed: int = 0, spread_s: float = 0.4) -> KillReport:
    """``kills`` kill/restore cycles over ``lanes`` independent rigs run side by side.

    Each lane has its own cgroups, journal and config, so the lanes never share a knob; the
    daemons' start-up (imports, probing) dominates a cycle, and overlapping it is what makes
    dozens of kills affordable in CI. Raises :class:`DaemonDidNotStart` if a daemon cannot
    start; a lane whose daemon does not start stops there and says why in
    ``start_failures`` (the caller decides whether that is a skip or a failure).
    """
    from concurrent.futures import ThreadPoolExecutor

    lanes = max(1, min(lanes, kills))
    shares = [kills // lanes + (1 if i < kills % lanes else 0) for i in range(lanes)]
    t0 = time.monotonic()

    def lane(i: int) -> KillReport:
        part = KillReport()
        rng = random.Random(seed * 1000 + i)
        with SigkillRig() as rig:
            for _ in range(shares[i]):
                try:
                    rig.kill_once(part, rng, spread_s)
                except DaemonDidNotStart as exc:
                    part.start_failures.append(str(exc))
                    break
        return part

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        parts = list(pool.map(lane, range(lanes)))
    total = KillReport()
    for p in parts:
        total.kills += p.kills
        total.changed += p.changed
        total.restored += p.restored
        total.lost += p.lost
        total.failures += p.failures
        total.startup_s += p.startup_s
        total.start_failures += p.start_failures
    total.wall_s = time.monotonic() - t0
    return total


def _quiet() -> object:
    import structlog

    return structlog.wrap_logger(structlog.testing.CapturingLogger())
