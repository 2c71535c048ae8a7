"""The CPU facility against fake cgroup v1 (hybrid) and v2 trees and a fake procfs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import structlog
from linux_fakes import FakeProc, FakeV1, FakeV2, StepClock, psi_text
from structlog.testing import capture_logs

from sol.actuators.base import HostWriter, WriteError
from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError
from sol.linux.cpu import CgroupWriter, CpuHost, CpuSettings, LinuxCpuActuators, LinuxCpuSensors
from sol.linux.gate import Gate, OwnerWriter
from sol.safety.journal import UndoJournal

HARVEST = "sol-harvest"


def make_host(root: Path, proc: FakeProc, sys_root: Path, clock: StepClock, **settings: Any) -> CpuHost:
    return CpuHost(
        CgroupLayout.detect(root),
        proc_root=proc.root,
        sys_root=sys_root,
        clock=clock.now,
        settings=CpuSettings(**settings),
        log=structlog.get_logger("test"),
    )


def actuators(
    host: CpuHost, journal: UndoJournal | None, *, dry_run: bool = False, gate: Gate | None = None
) -> LinuxCpuActuators:
    writer: HostWriter = OwnerWriter(
        gate=gate or Gate(), journal=None if dry_run else journal, owner="harvester", dry_run=dry_run
    )
    return LinuxCpuActuators(host, CgroupWriter(host.layout, writer))


def read(path: Path) -> str:
    return path.read_text().strip()


# -- sensors -----------------------------------------------------------------------------


def test_v1_usage_is_the_cpuacct_delta_and_primary_is_host_minus_harvest(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST)
    host = make_host(v1.root, proc, fake_sys, clock)
    sensors = LinuxCpuSensors(host)
    assert sensors.total_cores() == 4
    clock.t += 2.0
    v1.set_usage(HARVEST, 2_000_000_000)  # 2 core-seconds in 2 s
    v1.set_usage("", 5_000_000_000)  # the root counts every task, harvest included
    harvest, primary = sensors.usage("harvest"), sensors.usage("primary")
    assert harvest.cores == pytest.approx(1.0) and harvest.interval == pytest.approx(2.0)
    assert primary.cores == pytest.approx(1.5) and primary.total_core_s == pytest.approx(3.0)


def test_v2_usage_reads_cpu_stat_usage_usec(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v2.add_group(HARVEST)
    host = make_host(v2.root, proc, fake_sys, clock)
    clock.t += 1.0
    v2.set_usage(HARVEST, 500_000)
    assert LinuxCpuSensors(host).usage("harvest").cores == pytest.approx(0.5)


def test_primary_globs_sum_outermost_matches_only(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    for g in ("machine.slice", "machine.slice/vm1", "machine.slice/vm2", "machine.slice/vm1/vcpu0", "other"):
        v2.add_group(g)
    host = make_host(v2.root, proc, fake_sys, clock, primary_cgroups=("machine.slice/*",))
    assert host.layout.match("cpu", ("machine.slice/*",)) == ["machine.slice/vm1", "machine.slice/vm2"]
    clock.t += 1.0
    v2.set_usage("machine.slice/vm1", 1_000_000)
    v2.set_usage("machine.slice/vm1/vcpu0", 1_000_000)  # inside vm1: already counted there
    v2.set_usage("machine.slice/vm2", 500_000)
    v2.set_usage("other", 9_000_000)
    assert LinuxCpuSensors(host).usage("primary").cores == pytest.approx(1.5)


def test_absent_harvest_group_has_no_usage_pressure_or_delay(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    host = make_host(v1.root, proc, fake_sys, clock)
    sensors = LinuxCpuSensors(host)
    clock.t += 1.0
    assert sensors.usage("harvest").cores == 0.0
    assert sensors.pressure("harvest").some_avg10 == 0.0
    assert sensors.run_queue_delay("harvest").rate == 0.0


def test_pressure_prefers_the_groups_v2_file_and_falls_back_to_system_once(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST, psi=psi_text(12.5, total_us=3_000_000))
    (proc.root / "pressure" / "cpu").write_text(psi_text(40.0, 20.0, total_us=7_000_000))
    sensors = LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock))
    harvest = sensors.pressure("harvest")
    assert harvest.some_avg10 == pytest.approx(0.125) and harvest.some_total_s == pytest.approx(3.0)
    assert harvest.scope == "group"
    with capture_logs() as logs:
        for _ in range(3):
            primary = sensors.pressure("primary")
    assert primary.some_avg10 == pytest.approx(0.4) and primary.some_avg60 == pytest.approx(0.2)
    # the host's figure, not the primaries': it says so (it counts the harvest's waiting too)
    assert primary.scope == "host"
    assert [e["event"] for e in logs] == ["linux.cpu.psi_system_fallback"]


def test_pressure_of_several_primaries_is_the_worst_group(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v2.add_group("vm1", psi=psi_text(5.0, total_us=1_000_000))
    v2.add_group("vm2", psi=psi_text(30.0, total_us=2_000_000))
    p = LinuxCpuSensors(make_host(v2.root, proc, fake_sys, clock, primary_cgroups=("vm*",))).pressure(
        "primary"
    )
    assert p.some_avg10 == pytest.approx(0.30) and p.some_total_s == pytest.approx(3.0)
    assert p.scope == "group"


def test_run_queue_delay_sums_schedstat_wait_of_the_groups_threads(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST, tasks="101\n102\n")
    proc.task(101, wait_ns=1_000_000_000)
    proc.task(101, 102, wait_ns=0)
    proc.task(200, wait_ns=5_000_000_000)  # not in the harvest group
    sensors = LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock))
    first = sensors.run_queue_delay("harvest")
    assert first.total_s == pytest.approx(1.0)
    clock.t += 2.0
    proc.task(101, wait_ns=2_000_000_000)
    proc.task(101, 102, wait_ns=1_000_000_000)
    second = sensors.run_queue_delay("harvest")
    assert second.rate == pytest.approx(1.0) and second.total_s == pytest.approx(3.0)
    # The primary group is every thread but the harvest's.
    assert sensors.run_queue_delay("primary").total_s == pytest.approx(5.0)


def _proc_schedstat(cpu_wait_ns: list[int]) -> str:
    lines = ["version 15", "timestamp 4294967296"]
    for i, wait in enumerate(cpu_wait_ns):
        lines += [f"cpu{i} 0 0 100 50 80 40 999000 {wait} 120", f"domain0 {i + 1:x} " + " ".join(["0"] * 45)]
    return "\n".join(lines) + "\n"


def test_whole_host_primaries_use_proc_schedstat_minus_the_harvest_threads(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST, tasks="101\n")
    proc.task(101, wait_ns=1_000_000_000)
    proc.task(200, wait_ns=123)  # per-thread files are not read in this mode
    (proc.root / "schedstat").write_text(_proc_schedstat([2_000_000_000, 3_000_000_000]))
    host = make_host(v1.root, proc, fake_sys, clock, run_delay_cpu_share=None)
    assert host.uses_proc_schedstat
    sensors = LinuxCpuSensors(host)
    first = sensors.run_queue_delay("primary")
    assert first.total_s == pytest.approx(4.0)  # 5 s host-wide, 1 s of it the harvest's
    clock.t += 2.0
    (proc.root / "schedstat").write_text(_proc_schedstat([4_000_000_000, 4_000_000_000]))  # +3 s
    proc.task(101, wait_ns=2_000_000_000)  # +1 s of that was the harvest's
    second = sensors.run_queue_delay("primary")
    assert second.total_s == pytest.approx(6.0) and second.rate == pytest.approx(1.0)
    # a harvest thread that exits takes nothing away from the primaries
    (v1.root / "cpu" / HARVEST / "tasks").write_text("")
    clock.t += 1.0
    assert sensors.run_queue_delay("primary").total_s == pytest.approx(6.0)


def test_a_bad_proc_schedstat_falls_back_to_the_thread_scan(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    (proc.root / "schedstat").write_text("version 12\ncpu0 0 0 0 0 0 0 1 2 3\n")  # jiffies
    proc.task(200, wait_ns=5_000_000_000)
    with capture_logs() as logs:
        sensors = LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock, run_delay_cpu_share=None))
    assert sensors.run_queue_delay("primary").total_s == pytest.approx(5.0)
    assert any(e["event"] == "linux.cpu.run_delay_per_thread" and "jiffies" in e["reason"] for e in logs)


def test_run_queue_readings_are_reused_to_keep_the_sensor_under_its_cpu_share(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = [0.0]

    def thread_time() -> float:  # every scan costs 2 ms of CPU
        cpu[0] += 0.001
        return cpu[0]

    monkeypatch.setattr("sol.linux.cpu.time.thread_time", thread_time)
    proc.task(200, wait_ns=1_000_000_000)
    host = make_host(v1.root, proc, fake_sys, clock, run_delay_cpu_share=0.01)
    sensors = LinuxCpuSensors(host)
    first = sensors.run_queue_delay("primary")  # cost 1 ms at 1 %: reused for 0.1 s
    proc.task(200, wait_ns=3_000_000_000)
    clock.t += 0.05
    assert sensors.run_queue_delay("primary") is first  # reused, with its own time
    asked = host.run_queue_delay("primary", fresh=True)  # unless asked for a fresh one,
    assert asked.total_s == pytest.approx(3.0) and sensors.run_queue_delay("primary") is asked  # served on
    proc.task(200, wait_ns=4_000_000_000)
    clock.t += 0.11
    fresh = sensors.run_queue_delay("primary")
    assert fresh.t == clock.t and fresh.total_s == pytest.approx(4.0)
    # the reuse never exceeds run_delay_max_age_s, however costly the scan
    slow = LinuxCpuSensors(
        make_host(v1.root, proc, fake_sys, clock, run_delay_cpu_share=1e-6, run_delay_max_age_s=0.5)
    )
    r = slow.run_queue_delay("primary")
    clock.t += 0.4
    assert slow.run_queue_delay("primary") is r
    clock.t += 0.2
    assert slow.run_queue_delay("primary") is not r
    with pytest.raises(ValueError, match="run_delay_cpu_share"):
        make_host(v1.root, proc, fake_sys, clock, run_delay_cpu_share=0.0)


def test_a_thread_exiting_between_listing_and_reading_is_skipped(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST, tasks="101\n999\n")  # 999 has no /proc entry: it exited
    proc.task(101, wait_ns=10)
    assert LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock)).run_queue_delay("harvest").total_s > 0


@pytest.mark.parametrize(
    ("file", "content", "needle"),
    [
        ("cpuacct/sol-harvest/cpuacct.usage", "12abc\n", "nanoseconds"),
        ("unified/sol-harvest/cpu.pressure", "some avg10=?\n", "line 1"),
        ("cpuacct/sol-harvest/tasks", "101\nkworker\n", "thread id"),
    ],
    ids=["usage", "pressure", "tasks"],
)
def test_garbage_in_a_cgroup_file_is_a_sensor_error_naming_it(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, file: str, content: str, needle: str
) -> None:
    v1.add_group(HARVEST, psi=psi_text(0.0))
    sensors = LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock))
    (v1.root / file).write_text(content)
    (v1.root / "cpu" / HARVEST / "tasks").write_text((v1.root / "cpuacct" / HARVEST / "tasks").read_text())
    with pytest.raises(SensorError) as info:
        sensors.usage("harvest")
        sensors.pressure("harvest")
        sensors.run_queue_delay("harvest")
    assert file.split("/")[-1] in str(info.value) and needle in str(info.value)


def test_throttling_counters_of_v1_and_v2(
    v1: FakeV1, v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST)
    t1 = LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock)).throttling("harvest")
    assert (t1.nr_periods, t1.nr_throttled, t1.throttled_s) == (50, 20, 1.5)
    v2.add_group(HARVEST)
    (v2.root / HARVEST / "cpu.stat").write_text(
        "usage_usec 9\nnr_periods 7\nnr_throttled 3\nthrottled_usec 250000\n"
    )
    t2 = LinuxCpuSensors(make_host(v2.root, proc, fake_sys, clock)).throttling("harvest")
    assert (t2.nr_periods, t2.nr_throttled, t2.throttled_s) == (7, 3, 0.25)


def test_unknown_group_is_a_value_error(v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock) -> None:
    with pytest.raises(ValueError, match="known: primary, harvest"):
        LinuxCpuSensors(make_host(v1.root, proc, fake_sys, clock)).usage("batch")


# -- actuators ---------------------------------------------------------------------------


def test_v1_grant_takes_the_highest_cores_lifts_quota_and_journals_each_file(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v1.add_group(HARVEST)
    host = make_host(v1.root, proc, fake_sys, clock)
    act = actuators(host, journal)
    assert act.harvest_cores() == 0  # parked
    act.set_harvest_cores(2)
    assert read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "2-3"
    assert read(v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us") == "-1"
    assert act.harvest_cores() == 2
    records = journal.open_records("harvester")
    assert {Path(r.target).name: r.before.strip() for r in records} == {
        "cpuset.cpus": "3",
        "cpu.cfs_quota_us": "1000",
    }
    act.set_harvest_cores(0)
    assert read(v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us") == "1000"
    assert read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "3"
    assert act.harvest_cores() == 0


def test_the_harvest_state_is_cached_briefly_and_forgotten_on_every_write_of_sols(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    from sol.linux.cpu import HARVEST_STATE_S

    v1.add_group(HARVEST)
    host = make_host(v1.root, proc, fake_sys, clock)
    act = actuators(host, journal)
    act.set_harvest_cores(2)
    assert act.harvest_cores() == 2  # sol's own write: seen at once
    (v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us").write_text("1000\n")  # parked from outside
    assert act.harvest_cores() == 2  # within the cache period: not yet
    clock.t += HARVEST_STATE_S
    assert act.harvest_cores() == 0  # then seen
    act.set_harvest_cores(1)
    assert act.harvest_cores() == 1
    (v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us").write_text("1000\n")
    host.forget_harvest_state()  # what a journal restore does (LinuxBackend.restored)
    assert act.harvest_cores() == 0


def test_restore_returns_the_harvest_group_to_parked(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v2.add_group(HARVEST)
    host = make_host(v2.root, proc, fake_sys, clock)
    act = actuators(host, journal)
    act.set_harvest_cores(3)
    assert read(v2.root / HARVEST / "cpu.max") == "max 100000"
    assert read(v2.root / HARVEST / "cpuset.cpus") == "1-3"
    report = act.cgroups.writer.restore()
    assert report.ok and len(report.restored) == 2
    assert read(v2.root / HARVEST / "cpu.max") == "1000 100000" and act.harvest_cores() == 0


def test_quota_mode_moves_only_cpu_max(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v2.add_group(HARVEST, cpus="0-3")
    act = actuators(make_host(v2.root, proc, fake_sys, clock, harvest_mode="quota"), journal)
    act.set_harvest_cores(2)
    assert read(v2.root / HARVEST / "cpu.max") == "200000 100000"
    assert read(v2.root / HARVEST / "cpuset.cpus") == "0-3"
    assert act.harvest_cores() == 2


def test_reserved_cores_are_never_lent_and_the_grant_is_clamped(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v1.add_group(HARVEST, cpus="2")
    act = actuators(make_host(v1.root, proc, fake_sys, clock, reserved_cores=(0,)), journal)
    with capture_logs() as logs:
        act.set_harvest_cores(4)
    assert read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "1-3"
    assert any(e["event"] == "actuation.clamped" and e["value"] == 3 for e in logs)


@pytest.mark.parametrize(
    ("n", "error"),
    [(-1, ValueError), (5, ValueError), (True, TypeError), (1.5, TypeError)],
    ids=["negative", "above-total", "bool", "float"],
)
def test_bad_core_counts_are_refused_and_change_nothing(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal, n: Any, error: type
) -> None:
    v1.add_group(HARVEST)
    act = actuators(make_host(v1.root, proc, fake_sys, clock), journal)
    with pytest.raises(error):
        act.set_harvest_cores(n)
    assert len(journal) == 0 and read(v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us") == "1000"


def test_dry_run_logs_the_writes_and_changes_nothing(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    v1.add_group(HARVEST)
    act = actuators(make_host(v1.root, proc, fake_sys, clock), None, dry_run=True)
    with capture_logs() as logs:
        act.set_harvest_cores(2)
    # cpu.cfs_period_us already holds 100000: unchanged, so no write would be made there
    assert [e["target"].split("/")[-1] for e in logs if e["event"] == "actuation.dry_run"] == [
        "cpuset.cpus",
        "cpu.cfs_quota_us",
    ]
    assert read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "3"
    # the owner reads its own decision back: the same decision again is not logged again
    assert act.harvest_cores() == 2
    with capture_logs() as logs:
        act.set_harvest_cores(2)
    assert not [e for e in logs if e["event"] == "actuation.dry_run"]
    act.set_harvest_cores(0)  # the host's files already hold the parked values: nothing to log
    assert act.harvest_cores() == 0 and read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "3"


def test_dry_run_with_no_harvest_group_logs_the_creation_and_creates_nothing(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    act = actuators(make_host(v1.root, proc, fake_sys, clock), None, dry_run=True)
    with capture_logs() as logs:
        act.set_harvest_cores(1)
    assert [e["kind"] for e in logs if e["event"] == "actuation.dry_run"] == ["cgroup.create"]
    assert not (v1.root / "cpu" / HARVEST).exists()
    with capture_logs() as logs:
        act.set_harvest_cores(1)  # unchanged: nothing to log
        act.set_harvest_cores(2)
    assert [e["requested"] for e in logs if e["event"] == "actuation.dry_run"] == [2]


def test_revoked_owner_cannot_write(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v1.add_group(HARVEST)
    gate = Gate()
    act = actuators(make_host(v1.root, proc, fake_sys, clock), journal, gate=gate)
    gate.revoked = True
    with pytest.raises(WriteError) as info:
        act.set_harvest_cores(2)
    assert info.value.reason == "revoked" and len(journal) == 0
    assert read(v1.root / "cpuset" / HARVEST / "cpuset.cpus") == "3"


def test_a_group_that_vanished_is_a_write_error_with_enoent(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    from sol.actuators.cgroup import CPU_WEIGHT

    v1.add_group(HARVEST)
    act = actuators(make_host(v1.root, proc, fake_sys, clock), journal)
    shutil.rmtree(v1.root / "cpu" / HARVEST)
    with pytest.raises(WriteError) as info:
        act.cgroups.set(CPU_WEIGHT, HARVEST, 50)
    assert info.value.errno_name == "ENOENT" and info.value.reason == "read-failed"


def test_v2_without_the_cpuset_controller_delegated_is_reported_unsupported(
    v2: FakeV2, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    (v2.root / "cgroup.subtree_control").write_text("memory\n")
    problems = make_host(v2.root, proc, fake_sys, clock).probe()
    assert any("controller cpuset not enabled" in p for p in problems)
    assert any("controller cpu not enabled" in p for p in problems)


def test_expiring_values_hold_until_their_deadline_and_a_clock_going_back_reads_afresh() -> None:
    from sol.linux._util import Expiring

    recent = Expiring()
    assert recent.get("k", 10.0) == (False, None)
    recent.put("k", 3, 10.0, 0.5)
    assert recent.get("k", 10.0) == (True, 3) and recent.get("k", 10.49) == (True, 3)
    assert recent.get("k", 10.5) == (False, None)  # expired
    assert recent.get("k", 9.0) == (False, None)  # the clock went back
    recent.put("k", 4, 10.0, 0.5)
    recent.forget("k", "absent")
    assert recent.get("k", 10.1) == (False, None)
    recent.put("z", 1, 10.0, 0.0)
    assert recent.get("z", 10.0) == (False, None)  # no lifetime: never served
