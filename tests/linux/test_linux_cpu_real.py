"""The CPU facility on this host's real cgroup v1: a uniquely named harvest group, real
busy processes in it, real usage, run-queue delay and cpuset/quota writes, then restore.

The test creates ``/sys/fs/cgroup/{cpuset,cpu,cpuacct}/sol_test_<uuid8>``, moves only the
processes it started into it, kills them, and removes the group.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from linux_fakes import REAL_CGROUP

from sol.actuators.base import WriteError
from sol.actuators.cgroup import CPUSET_CPUS
from sol.kernel.cgroupfs import CgroupLayout
from sol.linux.cpu import CgroupWriter, CpuHost, CpuSettings, LinuxCpuActuators, LinuxCpuSensors
from sol.linux.gate import Gate, OwnerWriter
from sol.safety.journal import UndoJournal

pytestmark = pytest.mark.linux


class RealClock:
    def now(self) -> float:
        return time.monotonic()


@pytest.fixture
def busy() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
    for p in procs:
        p.wait(timeout=10)


def start_busy(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    procs.append(p)
    return p


def move(pid: int, group: str) -> None:
    for controller in ("cpuset", "cpu", "cpuacct"):
        (REAL_CGROUP / controller / group / "cgroup.procs").write_text(str(pid))


def real_host(harvest: str, **settings: Any) -> CpuHost:
    """The CPU facility on this host's real v1 hierarchies, harvesting into ``harvest``."""
    return CpuHost(
        CgroupLayout.detect(REAL_CGROUP),
        proc_root=Path("/proc"),
        sys_root=Path("/sys"),
        clock=time.monotonic,
        settings=CpuSettings(harvest_cgroup=harvest, **settings),
        log=structlog.get_logger("test"),
    )


def test_real_harvest_group_grant_usage_delay_park_and_restore(
    real_group_name: str, tmp_path: Path, busy: list[subprocess.Popen[bytes]]
) -> None:
    # a heavy weight, so that other load on this shared machine cannot starve the test
    host = real_host(real_group_name, harvest_weight=10_000)
    layout = host.layout
    if len(host.cores) < 2:
        pytest.skip("needs at least 2 CPUs")
    sensors = LinuxCpuSensors(host)
    top = max(host.cores)
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = OwnerWriter(gate=Gate(), journal=journal, owner="harvester")
        act = LinuxCpuActuators(host, CgroupWriter(layout, writer))
        assert act.harvest_cores() == 0 and not host.harvest_exists()

        act.set_harvest_cores(1)  # creates the group parked, then grants the top core
        group = REAL_CGROUP / "cpuset" / real_group_name
        assert (group / "cpuset.cpus").read_text().strip() == str(top)
        assert (REAL_CGROUP / "cpu" / real_group_name / "cpu.cfs_quota_us").read_text().strip() == "-1"
        assert act.harvest_cores() == 1

        for _ in range(2):
            move(start_busy(busy).pid, real_group_name)
        sensors.usage("harvest")
        sensors.run_queue_delay("harvest")
        time.sleep(0.6)
        usage = sensors.usage("harvest")
        delay = sensors.run_queue_delay("harvest")
        # two spinning processes pinned to one core: about one core busy, and while one
        # runs the other waits, so their summed run-queue delay grows about 1 s per s
        assert 0.3 < usage.cores <= 1.1, usage
        assert delay.rate > 0.2, delay
        status = Path(f"/proc/{busy[0].pid}/status").read_text()
        assert f"Cpus_allowed_list:\t{top}\n" in status

        act.set_harvest_cores(0)  # parked: 1 ms of quota per 100 ms period
        sensors.usage("harvest")
        time.sleep(0.5)
        assert sensors.usage("harvest").cores < 0.1
        assert sensors.throttling("harvest").nr_throttled > 0  # parked by CFS bandwidth control
        assert act.harvest_cores() == 0

        act.set_harvest_cores(1)
        report = writer.restore()
        assert report.ok, report.summary()
        assert act.harvest_cores() == 0
        assert (REAL_CGROUP / "cpu" / real_group_name / "cpu.cfs_quota_us").read_text().strip() == "1000"


def test_real_cpuset_parent_narrower_than_child_is_ebusy(real_group_name: str, tmp_path: Path) -> None:
    """cgroup-v1/cpusets.rst: a cpuset's CPUs must include its children's (else EBUSY)."""
    layout = CgroupLayout.detect(REAL_CGROUP)
    cores = sorted(
        int(c)
        for c in (REAL_CGROUP / "cpuset" / "cpuset.effective_cpus")
        .read_text()
        .strip()
        .replace("-", ",")
        .split(",")
        if c
    )
    if len(cores) < 2:
        pytest.skip("needs at least 2 CPUs")
    parent = REAL_CGROUP / "cpuset" / real_group_name
    parent.mkdir()
    (parent / "cpuset.mems").write_text((REAL_CGROUP / "cpuset" / "cpuset.effective_mems").read_text())
    (parent / "cpuset.cpus").write_text(f"{cores[0]},{cores[-1]}")
    child = parent / "child"
    child.mkdir()
    (child / "cpuset.cpus").write_text(str(cores[-1]))
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        cg = CgroupWriter(layout, OwnerWriter(gate=Gate(), journal=journal, owner="t"))
        with pytest.raises(WriteError) as info:
            cg.set(CPUSET_CPUS, real_group_name, [cores[0]])
        assert info.value.errno_name == "EBUSY" and info.value.reason == "write-failed"
        assert parent.joinpath("cpuset.cpus").read_text().strip() != str(cores[0])
        assert journal.restore({"file": lambda t, b: Path(t).write_text(b)}).ok


@pytest.mark.linux
def test_a_kept_open_cgroup_file_follows_its_group_being_removed_and_recreated(real_group_name: str) -> None:
    """``KeptOpen`` rereads a real cgroup file by pread; a removed group is an error naming the
    file (not a stale number), and one recreated under the same name is read again."""
    from sol.kernel.errors import SensorError
    from sol.kernel.procfs import KeptOpen

    group = REAL_CGROUP / "cpuacct" / real_group_name
    group.mkdir()
    path = str(group / "cpuacct.usage")
    files = KeptOpen()
    try:
        assert files.read(path).strip() == "0" and len(files) == 1
        (group / "cpuacct.usage").write_text("0\n")  # a reset reads back through the kept fd
        assert files.read(path).strip() == "0"
        group.rmdir()
        with pytest.raises(SensorError, match=r"cpuacct\.usage"):
            files.read(path)
        assert len(files) == 0
        group.mkdir()
        assert files.read(path).strip() == "0" and len(files) == 1
    finally:
        files.close()


def test_an_operator_removing_the_lent_harvest_group_costs_no_failed_write(
    real_group_name: str, tmp_path: Path
) -> None:
    """The group is sol's to create, the operator's to remove (an empty cgroup can go at any
    time). The 1 s caches of its existence and state must not turn that into a failed write
    (an actuator error: mitigation, backoff): the next decision re-creates it."""
    host = real_host(real_group_name)
    layout = host.layout
    if len(host.cores) < 2:
        pytest.skip("needs at least 2 CPUs")
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = OwnerWriter(gate=Gate(), journal=journal, owner="harvester")
        act = LinuxCpuActuators(host, CgroupWriter(layout, writer))
        act.set_harvest_cores(1)
        assert host.harvest_exists() and act.harvest_cores() == 1
        for controller in ("cpuset", "cpu", "cpuacct"):
            (REAL_CGROUP / controller / real_group_name).rmdir()  # the operator, while lent
        # the same decision again: nothing to write, whatever the caches still say
        act.set_harvest_cores(1)
        # a new decision before the caches expire: the group is made again, then written
        act.set_harvest_cores(0)
        act.set_harvest_cores(1)
        assert (REAL_CGROUP / "cpuset" / real_group_name / "cpuset.cpus").read_text().strip() == str(
            max(host.lendable)
        )
        assert (REAL_CGROUP / "cpu" / real_group_name / "cpu.cfs_quota_us").read_text().strip() == "-1"
        # the usage sensor follows the group away and back without an error
        LinuxCpuSensors(host).usage("harvest")
        report = writer.restore()
        assert report.ok, report.summary()
        assert (REAL_CGROUP / "cpu" / real_group_name / "cpu.cfs_quota_us").read_text().strip() == "1000"
