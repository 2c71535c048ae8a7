"""Taskstats over real generic netlink: the run-queue delay of real tasks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import structlog
from linux_fakes import FakeProc, FakeV1, StepClock

from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError
from sol.kernel.procfs import parse_schedstat, read_file
from sol.linux.cpu import CpuHost, CpuSettings
from sol.linux.taskstats import TaskstatsReader, delayacct_enabled

pytestmark = pytest.mark.linux


@pytest.fixture
def reader() -> Any:
    r = TaskstatsReader()
    try:
        r.delay(os.getpid())
    except SensorError as exc:
        r.close()
        pytest.skip(f"taskstats over netlink unavailable here: {exc}")
    yield r
    r.close()


def wait_ns(tid: int) -> int:
    path = Path(f"/proc/{tid}/schedstat")
    return parse_schedstat(read_file(path), path).wait_ns


def test_taskstats_cpu_delay_is_the_schedulers_run_delay(reader: TaskstatsReader) -> None:
    tid = os.getpid()
    before = wait_ns(tid)
    got = reader.delay(tid)
    after = wait_ns(tid)
    assert got.tid == tid and got.cpu_count > 0
    assert before <= got.cpu_delay_ns <= after  # the same sched_info counter, read between


def test_a_task_that_exited_is_esrch(reader: TaskstatsReader) -> None:
    with pytest.raises(SensorError) as info:
        reader.delay(2**22 + 4321)
    assert info.value.errno_name == "ESRCH" and "TASKSTATS" in str(info.value)


def test_delay_accounting_sysctl_is_read() -> None:
    assert delayacct_enabled(Path("/proc")) in (True, False, None)


class GarbageSocket:
    def bind(self) -> None:
        return None

    def get_pid_stat(self, pid: int) -> Any:
        return [
            {"attrs": [("TASKSTATS_TYPE_AGGR_PID", {"attrs": [("TASKSTATS_TYPE_STATS", {"cpu_count": -1})]})]}
        ]

    def close(self) -> None:
        return None


def test_a_garbled_reply_is_a_sensor_error() -> None:
    with pytest.raises(SensorError, match="bad counters"):
        TaskstatsReader(factory=GarbageSocket).delay(1)


def test_cpu_run_queue_delay_can_come_from_taskstats(
    reader: TaskstatsReader, tmp_path: Path, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1 = FakeV1(tmp_path / "cg")
    v1.add_group("sol-harvest", tasks=f"{os.getpid()}\n")
    host = CpuHost(
        CgroupLayout.detect(v1.root),
        proc_root=proc.root,  # no schedstat files there: taskstats must be the source
        sys_root=fake_sys,
        clock=clock.now,
        settings=CpuSettings(run_delay_source="taskstats"),
        log=structlog.get_logger("test"),
        taskstats=reader,
    )
    assert host.run_queue_delay("harvest").total_s == pytest.approx(
        reader.delay(os.getpid()).cpu_delay_ns / 1e9, rel=0.5
    )
