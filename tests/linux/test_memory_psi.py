"""The Linux memory facility's pressure(): the workload cgroup's memory PSI, else the host's."""

from __future__ import annotations

from pathlib import Path

import pytest
from linux_fakes import FakeV2, StepClock

from sol.config import LinuxConfig, LinuxMemoryConfig, MemoryTarget
from sol.kernel.errors import Unsupported
from sol.linux import LinuxBackend

FULL = "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
PSI = "some avg10=1.50 avg60=0.50 avg300=0.10 total=2500000\n" + FULL
HOST_PSI = "some avg10=0.20 avg60=0.10 avg300=0.00 total=700000\n" + FULL


def backend(tmp_path: Path, cgroup_root: Path, target: MemoryTarget, host_psi: bool) -> LinuxBackend:
    proc = tmp_path / "proc"
    (proc / "pressure").mkdir(parents=True)
    if host_psi:
        (proc / "pressure" / "memory").write_text(HOST_PSI)
    linux = LinuxConfig(cgroup_root=cgroup_root, proc_root=proc, memory=LinuxMemoryConfig(targets=(target,)))
    return LinuxBackend(linux, clock=StepClock(), facilities=("memory",))


def test_a_cgroup_targets_memory_psi_is_its_own(tmp_path: Path) -> None:
    fake = FakeV2(tmp_path / "cgroup")
    fake.add_group("machine.slice/vm-a", threads="1\n")
    (fake.root / "machine.slice" / "vm-a" / "memory.pressure").write_text(PSI)
    b = backend(tmp_path, fake.root, MemoryTarget(cgroup="machine.slice/vm-a"), True)
    pr = b.sensors.memory.pressure()
    assert pr.scope == "group" and pr.stall_total_s == pytest.approx(2.5)
    assert pr.some_avg10 == pytest.approx(0.015)


def test_a_pid_target_is_judged_by_the_hosts_psi_marked_as_such(tmp_path: Path) -> None:
    pr = backend(tmp_path, tmp_path / "none", MemoryTarget(pid=1), True).sensors.memory.pressure()
    assert pr.scope == "host" and pr.stall_total_s == pytest.approx(0.7)


def test_no_psi_at_all_is_unsupported_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(Unsupported, match="no memory PSI"):
        backend(tmp_path, tmp_path / "none", MemoryTarget(pid=1), False).sensors.memory.pressure()
