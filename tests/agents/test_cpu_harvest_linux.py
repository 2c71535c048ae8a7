"""cpu_harvest on this host, for real: the daemon, real cgroups, real CPU burners.

The test makes its own cgroups (``sol_test_<id>_primary`` and ``sol_test_<id>_harvest`` in the
v1 ``cpu``, ``cpuacct`` and ``cpuset`` hierarchies), a batch burner in the harvest group and two
burners in the primary group (stopped until the spike), and runs ``sol run`` with the Linux
backend and only ``cpu_harvest`` enabled. It checks that

1. the harvest group's cores follow the agent: idle primaries, a core is lent (cpuset + quota
   lifted) and the batch burner runs on it;
2. a sudden spike of the primaries gets the core back within one window plus the mitigation
   path (act_every + assess_every, and slack for a loaded 2-core machine);
3. stopping the daemon cleanly (SIGTERM) leaves every cpuset and quota as it was;
4. SIGKILL leaves the lent state behind, and ``sol restore`` puts everything back.

A frozen usage counter (an adversarial run on a v1 host: ``cpuacct.usage`` stuck at a value
that reads idle) is shown twice through the Linux backend: on a fake v1 tree and fake procfs
under the virtual-time executor (any machine), and on a fake v1 tree whose primary group holds
real CPU burners, whose ``/proc/<tid>/schedstat`` moves while the tree's ``cpuacct.usage``
stands still.

Processes and cgroups are removed in ``finally`` whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sol.agents.cpu_harvest import FREEZE_CONFIRM_S, CpuHarvestAgent
from sol.testing import V1Groups
from tests.agentkit import ClockRef, WorkloadHost


def real_host(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that runs on this host's own cgroups, tasks and clock (the fake-tree test
    runs anywhere)."""
    for mark in (pytest.mark.linux, pytest.mark.live, pytest.mark.slow):
        test = mark(test)
    return test


CGROUP = Path("/sys/fs/cgroup")
SOL = [sys.executable, "-m", "sol"]
WINDOW = CpuHarvestAgent.schedule.act_every
REACTION_BOUND = WINDOW + CpuHarvestAgent.schedule.assess_every
#: other jobs share this 2-core machine: a thread may wait that long for a CPU
SLACK = 1.5
#: a daemon's start (imports: river, numpy, pyroute2) on that machine under load
START = 90.0


def skip_reason() -> str | None:
    try:
        import sol.linux  # noqa: F401
        from sol.linux import LinuxBackend  # noqa: F401
    except ImportError as exc:
        return f"the Linux backend (sol.linux) is not available: {exc}"
    if os.geteuid() != 0:
        return "needs root to create test cgroups"
    for c, marker in (("cpu", "cpu.cfs_quota_us"), ("cpuacct", "cpuacct.usage"), ("cpuset", "cpuset.cpus")):
        if not (CGROUP / c / marker).is_file():
            return f"no writable cgroup v1 {c} hierarchy at {CGROUP / c}"
    if len(os.sched_getaffinity(0)) < 2:
        return "needs at least 2 CPUs"
    return None


def read(path: Path) -> str:
    return path.read_text().strip()


class Host(V1Groups):
    """The test's cgroups and processes (``sol.testing.V1Groups``): undone by ``cleanup``."""

    def __init__(self, primary: str, harvest: str, tmp: Path) -> None:
        super().__init__(CGROUP)
        self.primary, self.harvest, self.tmp = primary, harvest, tmp

    def burner(self, group: str, *, stopped: bool = False) -> subprocess.Popen[bytes]:
        p: subprocess.Popen[bytes] = self.spawn(group, [sys.executable, "-c", "while True: pass"])
        if stopped:
            os.kill(p.pid, signal.SIGSTOP)
        return p

    def snapshot(self) -> dict[str, str]:
        """Every knob the agent could have changed, of the root and both groups."""
        out = {"root cpuset.cpus": read(CGROUP / "cpuset" / "cpuset.cpus")}
        for g in (self.primary, self.harvest):
            out[f"{g} cpuset.cpus"] = read(CGROUP / "cpuset" / g / "cpuset.cpus")
            out[f"{g} cpu.cfs_quota_us"] = read(CGROUP / "cpu" / g / "cpu.cfs_quota_us")
            out[f"{g} cpu.cfs_period_us"] = read(CGROUP / "cpu" / g / "cpu.cfs_period_us")
            out[f"{g} cpu.shares"] = read(CGROUP / "cpu" / g / "cpu.shares")
        return out

    def lent(self) -> bool:
        """The harvest group may run on a core: its quota is lifted."""
        return read(CGROUP / "cpu" / self.harvest / "cpu.cfs_quota_us") == "-1"

    def throttled(self) -> int:
        """Periods in which the harvest group ran out of quota (v1 ``cpu.stat``)."""
        stat = dict(line.split() for line in read(CGROUP / "cpu" / self.harvest / "cpu.stat").splitlines())
        return int(stat["nr_throttled"])

    def harvest_usage_s(self) -> float:
        return int(read(CGROUP / "cpuacct" / self.harvest / "cpuacct.usage")) / 1e9


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    h = Host(primary=f"sol_test_{tag}_primary", harvest=f"sol_test_{tag}_harvest", tmp=tmp_path)
    cores = sorted(os.sched_getaffinity(0))
    try:
        h.mkgroup(h.primary, f"{cores[0]}-{cores[-1]}")
        # the harvest group as the backend creates it, parked on the top core with 1 ms of
        # quota per period, but with default shares (the backend's own have the least): other
        # jobs load this machine, and a least-weight burner would barely run even when lent
        h.mkgroup(h.harvest, str(cores[-1]), quota=1000)
        yield h
    finally:
        h.cleanup()


def write_config(h: Host) -> Path:
    cfg = h.tmp / "sol.toml"
    cfg.write_text(
        f"""
backend = "linux"
rollback = "auto"

[paths]
state_dir = "{h.tmp / "state"}"

[log]
format = "json"
level = "info"

[linux.cpu]
harvest_cgroup = "{h.harvest}"
primary_cgroups = ["{h.primary}"]

[daemon]
metrics = false
control_socket = "{h.tmp / "sol.sock"}"

[agents.cpu_harvest]
enabled = true

"""
    )
    return cfg


def daemon(cfg: Path, h: Host) -> subprocess.Popen[bytes]:
    log = open(h.tmp / f"daemon-{len(h.procs)}.log", "wb")  # noqa: SIM115 (kept for the failure message)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([*SOL, "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
    h.procs.append(p)
    return p


def wait_for(cond: Callable[[], bool], timeout: float, what: str, h: Host, step: float = 0.005) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(h.tmp.glob("daemon-*.log")))
    raise AssertionError(f"{what}: not within {timeout:g} s\n--- daemon log ---\n{logs}")


def events(h: Host) -> list[dict[str, object]]:
    out = []
    for path in sorted(h.tmp.glob("daemon-*.log")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


@real_host
def test_harvest_follows_the_agent_spikes_get_cores_back_and_stop_or_kill_restores(host: Host) -> None:
    h = host
    cfg = write_config(h)
    check = subprocess.run([*SOL, "check-config", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    batch = h.burner(h.harvest)
    spikers = [h.burner(h.primary, stopped=True) for _ in range(2)]
    before = h.snapshot()
    top = before[f"{h.harvest} cpuset.cpus"]

    # 1. idle primaries: a core is lent and the batch job runs on it
    d = daemon(cfg, h)
    wait_for(h.lent, START, "a core lent to the harvest group", h)
    assert read(CGROUP / "cpuset" / h.harvest / "cpuset.cpus") == top
    assert f"Cpus_allowed_list:\t{top}\n" in Path(f"/proc/{batch.pid}/status").read_text()
    u0 = h.harvest_usage_s()
    time.sleep(1.0)
    assert h.harvest_usage_s() - u0 > 0.05, "the batch burner should run on its lent core"

    # 2. the primaries spike: the core comes back within a window plus the mitigation path
    for p in spikers:
        os.kill(p.pid, signal.SIGCONT)
    took = wait_for(lambda: not h.lent(), REACTION_BOUND + SLACK, "the lent core back on a spike", h)
    u1, throttled = h.harvest_usage_s(), h.throttled()
    time.sleep(1.0)
    # parked: 1 ms of quota per 100 ms period (CFS hands runtime out in 5 ms slices, so a
    # period can overrun a little), and the burner is throttled period after period
    assert h.harvest_usage_s() - u1 < 0.1, "a parked harvest group gets about 1 ms per 100 ms"
    assert h.throttled() - throttled >= 3
    for p in spikers:
        os.kill(p.pid, signal.SIGSTOP)

    # 3. a clean stop restores everything (once the primaries are idle again and a core is lent)
    wait_for(h.lent, 30.0, "a core lent again after the spike", h)
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=20) == 0
    assert h.snapshot() == before

    # 4. SIGKILL leaves the lent state; `sol restore` rolls it back
    d = daemon(cfg, h)
    wait_for(h.lent, START, "a core lent by the second daemon", h)
    d.send_signal(signal.SIGKILL)
    d.wait(timeout=10)
    assert h.lent() and h.snapshot() != before
    restore = subprocess.run([*SOL, "restore", "--config", str(cfg)], capture_output=True, text=True)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert h.snapshot() == before
    print(f"spike -> core back in {took * 1000:.0f} ms (bound {REACTION_BOUND * 1000:.0f} ms + slack)")
    applied = [e for e in events(h) if e.get("event") in ("agent.harm", "agent.mitigate")]
    assert all(e.get("agent") == "cpu_harvest" for e in applied)


@real_host
def test_host_wide_pressure_counts_the_harvest_groups_own_waiting_and_is_not_taken_for_harm(
    host: Host,
) -> None:
    # cgroup v1 keeps no per-group CPU pressure: the sensor falls back to /proc/pressure/cpu,
    # every task's. Two batch burners on the harvest group's one lent core wait for each other
    # all the time, so that figure climbs towards 100 % while the primaries wait for nothing.
    # Judged as the primaries' stall it backed cpu_harvest off at every lend (found on this VM).
    psi = Path("/proc/pressure/cpu")
    if not psi.is_file():
        pytest.skip("no /proc/pressure/cpu: the kernel has no PSI")
    from sol.agents.cpu_harvest import Params
    from sol.config import loads_config
    from sol.daemon import build_backend
    from sol.kernel.procfs import parse_psi
    from sol.registry import Registry
    from sol.runtime.base import actuators_for
    from sol.runtime.clock import MonotonicClock
    from sol.sdk import Context

    h = host
    reg = Registry()
    config = loads_config(
        f'backend = "linux"\n[paths]\nstate_dir = "{h.tmp / "state"}"\n'
        f'[linux.cpu]\nharvest_cgroup = "{h.harvest}"\nprimary_cgroups = ["{h.primary}"]\n',
        source="test",
        agents={n: reg.get(n) for n in reg.names()},
    )
    backend = build_backend(config, clock_start=time.monotonic(), clock=MonotonicClock())
    try:
        agent = reg.get("cpu_harvest")()
        agent.setup(
            Context(
                clock=MonotonicClock(),
                log=None,
                sensors=backend.sensors,
                actuators=actuators_for(backend, "cpu_harvest", True),
                config=Params(),
                state_dir=Path("."),
            )
        )
        (CGROUP / "cpu" / h.harvest / "cpu.cfs_quota_us").write_text("-1")  # one core lent
        for _ in range(2):
            h.burner(h.harvest)

        def host_some_avg10() -> float:
            return parse_psi(psi.read_text(), psi).some_avg10

        wait_for(lambda: host_some_avg10() > 0.6, 30.0, "host-wide CPU pressure above 60 %", h, step=0.2)
        pressure = backend.sensors.cpu.pressure("primary")
        assert pressure.scope == "host" and pressure.some_avg10 > 0.5
        assert agent.harvest.harvest_cores() == 1
        assert agent.assess_performance()  # a baseline of the primaries' run-queue delay
        time.sleep(1.0)
        verdict = agent.assess_performance()
        assert verdict, verdict.reason
    finally:
        backend.close()


# -- a frozen usage counter, through the Linux backend ------------------------------------------

CORES = 8
FAKE_HARVEST, FAKE_PRIMARY, FAKE_TID = "sol-harvest", "vms", 4242


def linux_fakes() -> Any:
    """tests/linux/linux_fakes.py: cgroup and procfs trees in the kernel's formats."""
    pytest.importorskip("sol.linux.backend", reason="the Linux backend (sol.linux) is not available")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "linux"))
    return pytest.importorskip("linux_fakes", reason="tests/linux/linux_fakes.py is missing")


def fake_sys(root: Path, cores: int) -> Path:
    (root / "devices" / "system" / "cpu").mkdir(parents=True)
    (root / "devices" / "system" / "cpu" / "online").write_text(f"0-{cores - 1}\n")
    return root


class FrozenCounterHost(WorkloadHost):
    """The Linux backend on fake v1 trees, plus a workload: the primaries need ``need`` cores,
    get what the harvest group left them and wait for the rest. Their thread's schedstat (run
    and wait) always moves; their group's ``cpuacct.usage`` stands still over ``frozen``."""

    def __init__(self, backend: Any, fake: Any, proc: Any, need: float, frozen: tuple[float, float]) -> None:
        super().__init__(backend)
        self.fake, self.proc, self.need, self.frozen = fake, proc, need, frozen
        self.t = 0.0
        self.used_ns = self.wait_ns = 0.0

    def advance(self, now: float) -> None:
        dt = now - self.t
        if dt <= 0:
            return
        cap = CORES - self.b.actuators.cpu.harvest_cores()
        self.used_ns += min(self.need, cap) * dt * 1e9
        self.wait_ns += max(0.0, self.need - cap) * dt * 1e9
        if not self.frozen[0] <= now < self.frozen[1]:
            self.fake.set_usage(FAKE_PRIMARY, int(self.used_ns))
        self.proc.task(FAKE_TID, run_ns=int(self.used_ns), wait_ns=int(self.wait_ns))
        self.t = now

    def lent(self) -> int:
        """The cores the harvest group's files give it (v1, cpuset mode)."""
        root = self.fake.root
        if (root / "cpu" / FAKE_HARVEST / "cpu.cfs_quota_us").read_text().strip() != "-1":
            return 0  # parked: 1 ms of quota
        lo, _, hi = (root / "cpuset" / FAKE_HARVEST / "cpuset.cpus").read_text().strip().partition("-")
        return int(hi or lo) - int(lo) + 1

    def ground_truth(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.b.close()


def test_a_frozen_cpuacct_usage_on_a_fake_v1_host_parks_the_harvest_group_until_it_moves(
    tmp_path: Path,
) -> None:
    fakes = linux_fakes()
    from sol.actuators.restorers import default_restorers
    from sol.agents.cpu_harvest import Params
    from sol.config import LinuxConfig, LinuxCpuConfig
    from sol.linux.backend import LinuxBackend
    from sol.log import get_logger
    from sol.runtime.base import AgentSpec
    from sol.runtime.virtual import VirtualExecutor
    from sol.safety.journal import UndoJournal

    fake = fakes.FakeV1(tmp_path / "cgroup", cpus=f"0-{CORES - 1}")
    fake.add_group(FAKE_HARVEST, cpus=str(CORES - 1), quota=1000)
    fake.add_group(FAKE_PRIMARY, cpus=f"0-{CORES - 1}", quota=-1, tasks=f"{FAKE_TID}\n")
    proc = fakes.FakeProc(tmp_path / "proc")
    proc.task(FAKE_TID)
    frozen = (8.0, 14.0)
    clock = ClockRef()
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        linux = LinuxConfig(
            cgroup_root=fake.root,
            proc_root=proc.root,
            sys_root=fake_sys(tmp_path / "sys", CORES),
            cpu=LinuxCpuConfig(harvest_cgroup=FAKE_HARVEST, primary_cgroups=(FAKE_PRIMARY,)),
        )
        backend = LinuxBackend(linux, journal=journal, clock=clock, facilities=("cpu",))
        host = FrozenCounterHost(backend, fake, proc, 2.0, frozen)
        executor = VirtualExecutor(
            [AgentSpec(CpuHarvestAgent(), None, Params(), False)],
            backend=host,
            log=get_logger(component="test"),
            journal=journal,
            restorers=default_restorers(),
            record=True,
        )
        clock.target = executor.vclock
        executor.run(frozen[0], stop=False)
        runner = executor.runners[0]
        assert runner.actions[-1][1].source == "model" and host.lent() >= 3  # 2 cores needed of 8

        # frozen: the agent reads idle primaries, lends more, they wait; caught within a few
        # windows, and the group stays parked while the counter stands
        executor.run(frozen[1], stop=False)
        # (a window to read the waiting, the windows of FREEZE_CONFIRM_S, three rejected
        # readings, the act)
        streak = CpuHarvestAgent.schedule.max_invalid_streak
        caught = frozen[0] + WINDOW * (1 + math.ceil(FREEZE_CONFIRM_S / WINDOW - 1e-9) + streak) + 1e-9
        during = [p for t, p in runner.actions if caught <= t < frozen[1]]
        assert during and all(p.source == "default" and p.value == 0 for p in during)
        last_second = [p.reason for t, p in runner.actions if frozen[1] - 1.0 <= t < frozen[1]]
        assert last_second == ["invalid-data"] * round(1.0 / WINDOW)
        assert host.lent() == 0

        executor.run(frozen[1] + 4.0, stop=False)
        assert runner.actions[-1][1].source == "model" and host.lent() >= 3  # it moves again: lent again
        executor.run(frozen[1] + 5.0, stop=True)
        assert runner.state == "stopped" and host.lent() == 0


@real_host
def test_a_frozen_cpuacct_usage_is_caught_from_the_schedstat_of_real_tasks(tmp_path: Path) -> None:
    # A fake v1 tree whose primary group holds real CPU burners, all on one CPU so that they
    # wait for each other: their /proc/<tid>/schedstat moves, the tree's cpuacct.usage only
    # when the test writes it.
    fakes = linux_fakes()
    if not Path("/proc/self/schedstat").is_file():
        pytest.skip("no /proc/<pid>/schedstat (CONFIG_SCHED_INFO)")
    from sol.agents.cpu_harvest import Params
    from sol.config import LinuxConfig, LinuxCpuConfig
    from sol.linux.backend import LinuxBackend
    from sol.runtime.clock import MonotonicClock
    from sol.safety.journal import UndoJournal
    from sol.sdk import Context, Verdict

    cpu = min(os.sched_getaffinity(0))
    burners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(3):
            burners.append(
                subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"],
                    preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
                )
            )
        pids = [p.pid for p in burners]
        fake = fakes.FakeV1(tmp_path / "cgroup", cpus=f"0-{CORES - 1}")
        fake.add_group(FAKE_HARVEST, cpus=str(CORES - 1), quota=1000)
        fake.add_group(FAKE_PRIMARY, quota=-1, usage_ns=5 * 10**9, tasks="".join(f"{p}\n" for p in pids))
        with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
            linux = LinuxConfig(
                cgroup_root=fake.root,
                sys_root=fake_sys(tmp_path / "sys", CORES),
                cpu=LinuxCpuConfig(harvest_cgroup=FAKE_HARVEST, primary_cgroups=(FAKE_PRIMARY,)),
            )
            backend = LinuxBackend(linux, journal=journal, clock=MonotonicClock(), facilities=("cpu",))
            try:
                agent = CpuHarvestAgent()
                agent.setup(
                    Context(
                        MonotonicClock(),
                        None,
                        backend.sensors,
                        backend.actuators_for("cpu_harvest", dry_run=True),
                        Params(),
                    )
                )

                def read_for(seconds: float, counter: Callable[[], int] | None = None) -> list[Verdict]:
                    verdicts = []
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        if counter is not None:
                            fake.set_usage(FAKE_PRIMARY, counter())
                        o = agent.collect()
                        verdict = agent.validate(o)
                        if verdict:
                            agent.learn(o)
                        verdicts.append(verdict)
                        time.sleep(WINDOW)
                    return verdicts

                # 1. the counter stands while the burners run and wait: rejected, and it stays so
                frozen = read_for(1.5)
                first = next(i for i, v in enumerate(frozen) if not v)
                assert first * WINDOW < 1.0
                assert all(not v and "frozen counter" in (v.reason or "") for v in frozen[first:])

                # 2. truly idle: stopped tasks neither run nor wait; the counter moves once,
                # then stands, and that is not a freeze
                for p in pids:
                    os.kill(p, signal.SIGSTOP)
                time.sleep(0.1)
                fake.set_usage(FAKE_PRIMARY, 5 * 10**9 + 10**6)
                idle = read_for(1.0)
                assert all(idle), [v.reason for v in idle if not v]

                # 3. busy and waiting, with a live counter (their run time): valid all along
                def run_ns() -> int:
                    return 6 * 10**9 + sum(
                        int(Path(f"/proc/{p}/schedstat").read_text().split()[0]) for p in pids
                    )

                for p in pids:
                    os.kill(p, signal.SIGCONT)
                busy = read_for(1.0, run_ns)
                assert all(busy), [v.reason for v in busy if not v]
            finally:
                backend.close()
    finally:
        for p in burners:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
        for p in burners:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
