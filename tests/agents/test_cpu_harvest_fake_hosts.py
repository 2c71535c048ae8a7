"""cpu_harvest through the Linux backend on fake cgroup v1 and v2 trees, cpuset and quota mode.

The real-host test (test_cpu_harvest_linux.py) can only show what this machine has (cgroup v1,
cpuset mode). Here the agent runs under the virtual-time executor against ``LinuxBackend`` on
the fake trees of tests/linux (the kernel's file formats), and a scripted workload moves the
primaries' counters between events: the harvest group's ``cpuset.cpus`` / ``cpu.cfs_quota_us``
/ ``cpu.max`` must follow the agent's decisions, a spike must park the group within two
windows, and stopping must leave every file as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "linux"))
linux_fakes = pytest.importorskip(
    "linux_fakes", reason="tests/linux/linux_fakes.py (the fake host trees) is missing"
)
pytest.importorskip("sol.linux.backend", reason="the Linux backend (sol.linux) is not available")

from sol.actuators.restorers import default_restorers  # noqa: E402
from sol.agents.cpu_harvest import CpuHarvestAgent, Params  # noqa: E402
from sol.config import LinuxConfig, LinuxCpuConfig  # noqa: E402
from sol.linux.backend import LinuxBackend  # noqa: E402
from sol.log import get_logger  # noqa: E402
from sol.runtime.base import AgentSpec  # noqa: E402
from sol.runtime.virtual import VirtualExecutor  # noqa: E402
from sol.safety.journal import UndoJournal  # noqa: E402
from tests.agentkit import ClockRef, WorkloadHost  # noqa: E402

CORES = 8
HARVEST, PRIMARY, TID = "sol-harvest", "vms", 4242
WINDOW = CpuHarvestAgent.schedule.act_every


class ScriptedHost(WorkloadHost):
    """The Linux backend, plus a workload: between events the primaries get ``need(t)`` cores
    if the harvest group left them that many, and wait for the rest (cgroup usage counter and
    the schedstat wait of their one thread move accordingly)."""

    def __init__(
        self, backend: LinuxBackend, fake: Any, proc: Any, version: int, need: Callable[[float], float]
    ):
        super().__init__(backend)
        self.fake, self.proc, self.version, self.need = fake, proc, version, need
        self.t = 0.0
        self.used_ns = 0.0
        self.wait_ns = 0.0
        self.restores: list[str] = []

    def restored(self, owner: str) -> None:
        self.restores.append(owner)
        super().restored(owner)

    def advance(self, now: float) -> None:
        dt = now - self.t
        if dt <= 0:
            return
        lent = self.b.actuators.cpu.harvest_cores()  # a read: the unbound (dry-run) namespace will do
        need, cap = self.need(self.t), CORES - lent
        self.used_ns += min(need, cap) * dt * 1e9
        self.wait_ns += max(0.0, need - cap) * dt * 1e9
        if self.version == 1:
            self.fake.set_usage(PRIMARY, int(self.used_ns))
        else:
            self.fake.set_usage(PRIMARY, int(self.used_ns / 1e3))
        self.proc.task(TID, run_ns=int(self.used_ns), wait_ns=int(self.wait_ns))
        self.t = now

    def ground_truth(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.b.close()


def harvest_files(fake: Any, version: int) -> dict[str, str]:
    if version == 1:
        names = [("cpuset", "cpuset.cpus"), ("cpu", "cpu.cfs_quota_us")]
        return {n: (fake.root / c / HARVEST / n).read_text().strip() for c, n in names}
    return {n: (fake.root / HARVEST / n).read_text().strip() for n in ("cpuset.cpus", "cpu.max")}


def lent_cores(files: dict[str, str], version: int, mode: str) -> int:
    quota = files["cpu.cfs_quota_us"] if version == 1 else files["cpu.max"].split()[0]
    if quota not in ("-1", "max"):
        n = int(quota) // 100_000
        return n if mode == "quota" else 0  # parked: 1 ms of quota
    lo, _, hi = files["cpuset.cpus"].partition("-")
    return int(hi or lo) - int(lo) + 1


@pytest.mark.parametrize(
    ("version", "mode"),
    [
        pytest.param(1, "cpuset", id="v1-cpuset"),
        pytest.param(1, "quota", id="v1-quota"),
        pytest.param(2, "cpuset", id="v2-cpuset"),
        pytest.param(2, "quota", id="v2-quota"),
    ],
)
def test_the_harvest_group_follows_the_agent_and_is_restored(version: int, mode: str, tmp_path: Path) -> None:
    if version == 1:
        fake = linux_fakes.FakeV1(tmp_path / "cgroup", cpus=f"0-{CORES - 1}")
        fake.add_group(HARVEST, cpus=str(CORES - 1), quota=1000)
        fake.add_group(PRIMARY, cpus=f"0-{CORES - 1}", quota=-1, tasks=f"{TID}\n")
    else:
        fake = linux_fakes.FakeV2(tmp_path / "cgroup", cpus=f"0-{CORES - 1}")
        fake.add_group(HARVEST, cpus=str(CORES - 1) if mode == "cpuset" else f"0-{CORES - 1}")
        fake.add_group(PRIMARY, cpus=f"0-{CORES - 1}", cpu_max="max 100000", threads=f"{TID}\n")
    proc = linux_fakes.FakeProc(tmp_path / "proc")
    proc.task(TID)
    sys_root = tmp_path / "sys"
    (sys_root / "devices" / "system" / "cpu").mkdir(parents=True)
    (sys_root / "devices" / "system" / "cpu" / "online").write_text(f"0-{CORES - 1}\n")
    before = harvest_files(fake, version)

    spike_at = 6.0
    clock = ClockRef()
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        linux = LinuxConfig(
            cgroup_root=fake.root,
            proc_root=proc.root,
            sys_root=sys_root,
            cpu=LinuxCpuConfig(
                harvest_cgroup=HARVEST,
                primary_cgroups=(PRIMARY,),
                harvest_mode=mode,  # type: ignore[arg-type]
            ),
        )
        backend = LinuxBackend(linux, journal=journal, clock=clock, facilities=("cpu",))
        host = ScriptedHost(backend, fake, proc, version, lambda t: 1.5 if t < spike_at else 7.5)
        executor = VirtualExecutor(
            [AgentSpec(CpuHarvestAgent(), None, Params(max_primary_pressure=1.0), False)],
            backend=host,
            log=get_logger(component="test"),
            journal=journal,
            restorers=default_restorers(),
            record=True,
        )
        clock.target = executor.vclock
        executor.run(spike_at, stop=False)
        runner = executor.runners[0]
        assert runner.state == "running" and not [c for c in runner.calls if c[2] != "ok"]
        decided = runner.actions[-1][1].value
        assert decided >= 4  # 1.5 cores needed of 8: most are lent
        assert lent_cores(harvest_files(fake, version), version, mode) == decided
        if mode == "quota":
            assert harvest_files(fake, version)["cpuset.cpus"] == before["cpuset.cpus"]  # cpuset untouched

        executor.run(spike_at + 2.0, stop=False)
        back = [t for t, p in runner.actions if t >= spike_at and p.value == 0]
        assert back and back[0] <= spike_at + 2 * WINDOW + 1e-9
        assert lent_cores(harvest_files(fake, version), version, mode) == 0

        executor.run(spike_at + 3.0, stop=True)
        assert runner.state == "stopped"
        assert host.restores == ["cpu_harvest"]  # the runtime told the backend after restoring
        assert harvest_files(fake, version) == before
        assert not journal.open_records()
