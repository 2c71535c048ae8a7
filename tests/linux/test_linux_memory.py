"""The memory facility: DAMON sysfs (fake tree, and the real one where sol may own it),
NUMA nodes of this host and of a fake two-node topology, placement and migration."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from linux_fakes import FakeV1, FakeV2, StepClock, fake_damon

from sol.actuators.numa import PAGE_SIZE, DamosScheme, MovePages
from sol.actuators.restorers import default_restorers
from sol.config import LinuxConfig, LinuxMemoryConfig, MemoryTarget
from sol.kernel.errors import SensorError, Unsupported
from sol.linux import LinuxBackend
from sol.linux.damon import DamonMonitor, DamonSettings
from sol.linux.gate import Gate, OwnerWriter
from sol.linux.numa import NumaTopology, make_fake_nodes
from sol.safety.journal import UndoJournal

REAL_DAMON = Path("/sys/kernel/mm/damon/admin")
GIB = 1 << 30


def monitor(admin: Path, clock: StepClock, *, pid: int = 4242, kdamond: int | None = None) -> DamonMonitor:
    return DamonMonitor(
        admin,
        pids=[pid],
        settings=DamonSettings(),
        kdamond=kdamond,
        clock=clock.now,
        log=structlog.get_logger("test"),
    )


def read(path: Path) -> str:
    return path.read_text().strip()


# -- DAMON on a fake sysfs tree --------------------------------------------------------------


def test_monitor_start_configures_journals_and_stop_removes_its_kdamond(
    tmp_path: Path, clock: StepClock, journal: UndoJournal
) -> None:
    admin = fake_damon(tmp_path / "damon", regions=[(0x1000, 0x5000, 18, 3), (0x5000, 0x9000, 0, 40)])
    m = monitor(admin, clock)
    writer = OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux")
    m.start(writer)
    ctx = admin / "kdamonds" / "0" / "contexts" / "0"
    assert (
        read(admin / "kdamonds" / "nr_kdamonds") == "1" and read(admin / "kdamonds" / "0" / "state") == "on"
    )
    assert read(ctx / "operations") == "vaddr" and read(ctx / "targets" / "0" / "pid_target") == "4242"
    assert (
        read(ctx / "schemes" / "nr_schemes") == "3"
        and read(ctx / "schemes" / "1" / "access_pattern" / "sz" / "max") == "0"
    )
    assert [r.kind for r in journal.open_records("sol.linux")] == ["damon.kdamond"]

    snap = m.snapshot()
    assert read(admin / "kdamonds" / "0" / "state") == "update_schemes_tried_regions"
    assert [(r.start, r.end, r.nr_accesses, r.age) for r in snap.regions] == [
        (0x1000, 0x5000, 18, 3),
        (0x5000, 0x9000, 0, 40),
    ]
    assert snap.max_nr_accesses == 20 and snap.t_end - snap.t_start == pytest.approx(0.1)

    (admin / "kdamonds" / "0" / "state").write_text("on\n")
    m.stop(writer)
    assert (
        read(admin / "kdamonds" / "0" / "state") == "off" and read(admin / "kdamonds" / "nr_kdamonds") == "0"
    )
    assert len(journal) == 0


def test_a_crashed_daemons_kdamond_is_stopped_by_sol_restore(tmp_path: Path, clock: StepClock) -> None:
    admin = fake_damon(tmp_path / "damon")
    path = tmp_path / "undo.journal"
    with UndoJournal.open(path, fsync=False) as journal:
        monitor(admin, clock).start(OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux"))
    # ... the daemon is SIGKILLed here; a fresh process restores from the journal alone:
    with UndoJournal.open(path, fsync=False) as journal:
        assert journal.restore(default_restorers()).ok
    assert (
        read(admin / "kdamonds" / "0" / "state") == "off" and read(admin / "kdamonds" / "nr_kdamonds") == "0"
    )


@pytest.mark.parametrize(
    ("nr", "state", "kdamond", "needle"),
    [
        (1, "on", None, "belong to another owner"),
        (1, "on", 0, "is on, not off"),
        (0, "off", 2, "only 0 kdamond"),
    ],
    ids=["someone-elses-kdamond", "reserved-but-running", "reserved-missing"],
)
def test_sol_never_takes_a_kdamond_it_does_not_own(
    tmp_path: Path,
    clock: StepClock,
    journal: UndoJournal,
    nr: int,
    state: str,
    kdamond: int | None,
    needle: str,
) -> None:
    admin = fake_damon(tmp_path / "damon", nr_kdamonds=nr, state=state)
    with pytest.raises(Unsupported, match=needle):
        monitor(admin, clock, kdamond=kdamond).start(
            OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux")
        )
    assert (
        read(admin / "kdamonds" / "nr_kdamonds") == str(nr)
        and read(admin / "kdamonds" / "0" / "state") == state
    )


def test_vaddr_ops_missing_from_the_kernel_is_unsupported_and_leaves_nothing(
    tmp_path: Path, clock: StepClock, journal: UndoJournal
) -> None:
    admin = fake_damon(tmp_path / "damon", ops="paddr")
    with pytest.raises(Unsupported, match="'vaddr' not built"):
        monitor(admin, clock).start(OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux"))
    assert read(admin / "kdamonds" / "nr_kdamonds") == "0" and len(journal) == 0


@pytest.mark.parametrize(
    ("file", "text", "needle"),
    [("nr_accesses", "x\n", "integer"), ("end", "4096\n", "end"), ("nr_accesses", "99\n", "> max")],
    ids=["garbage", "inverted", "too-many-accesses"],
)
def test_garbage_in_tried_regions_is_a_sensor_error(
    tmp_path: Path, clock: StepClock, journal: UndoJournal, file: str, text: str, needle: str
) -> None:
    admin = fake_damon(tmp_path / "damon", regions=[(0x2000, 0x3000, 1, 1)])
    m = monitor(admin, clock)
    m.start(OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux"))
    (admin / "kdamonds/0/contexts/0/schemes/0/tried_regions/0" / file).write_text(text)
    with pytest.raises(SensorError, match=needle):
        m.snapshot()


def test_damos_migrate_cold_scheme_is_journaled_committed_and_restored(
    tmp_path: Path, clock: StepClock, journal: UndoJournal
) -> None:
    sys_root = tmp_path / "sys"
    make_fake_nodes(sys_root, {0: ("0-3", 8 * GIB, 2 * GIB), 1: ("", 16 * GIB, GIB)})
    fake_damon(sys_root / "kernel" / "mm" / "damon" / "admin")
    linux = LinuxConfig(
        sys_root=sys_root, cgroup_root=tmp_path, proc_root=Path("/proc"), memory=managing(os.getpid())
    )
    backend = LinuxBackend(linux, journal=journal, clock=clock, facilities=("memory",))
    try:
        act = backend.actuators_for("mem_tier", dry_run=False).memory
        cold = DamosScheme(
            "migrate_cold",
            target_nid=1,
            sz=(PAGE_SIZE, 1 << 40),
            nr_accesses=(0, 0),
            age=(50, 1 << 20),
            quota_bytes=64 << 20,
        )
        act.set_damos(1, cold)
        slot = sys_root / "kernel/mm/damon/admin/kdamonds/0/contexts/0/schemes/1"
        assert read(slot / "action") == "migrate_cold" and read(slot / "target_nid") == "1"
        assert read(slot.parents[3] / "state") == "commit"
        with pytest.raises(ValueError, match="unknown NUMA node 7"):
            act.set_damos(2, DamosScheme("migrate_hot", target_nid=7))
        (slot.parents[3] / "state").write_text("on\n")
        assert journal.restore(default_restorers(), owner="mem_tier").ok
        assert read(slot / "action") == "stat" and read(slot / "access_pattern/sz/max") == "0"
    finally:
        backend.close()
    assert read(sys_root / "kernel/mm/damon/admin/kdamonds/nr_kdamonds") == "0" and len(journal) == 0


def test_real_damon_is_used_only_where_sol_may_own_it(clock: StepClock) -> None:
    if not REAL_DAMON.is_dir():
        pytest.skip("kernel without DAMON sysfs")
    try:
        monitor(REAL_DAMON, clock, pid=os.getpid()).probe()  # read-only
    except Unsupported as exc:
        pytest.skip(f"real DAMON not usable by sol here: {exc.reason}")


HOT_CHILD = """
import mmap, ctypes, sys, time
n = 64 << 20
hot, cold = mmap.mmap(-1, n), mmap.mmap(-1, n)
for b in (hot, cold):
    for i in range(0, n, 4096): b[i] = 1
addr = [ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in (hot, cold)]
print(*addr, flush=True)
end = time.time() + 20
while time.time() < end:
    for i in range(0, n, 4096): hot[i] = 2
"""


@pytest.fixture
def hot_child() -> Iterator[tuple[int, int, int]]:
    p = subprocess.Popen([sys.executable, "-c", HOT_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        hot, cold = (int(x) for x in p.stdout.readline().split())
        yield p.pid, hot, cold
    finally:
        p.kill()
        p.wait(10)


def test_real_damon_finds_the_hot_buffer_of_a_test_process(
    tmp_path: Path, hot_child: tuple[int, int, int]
) -> None:
    if not REAL_DAMON.is_dir():
        pytest.skip("kernel without DAMON sysfs")
    pid, hot, cold = hot_child
    m = DamonMonitor(
        REAL_DAMON,
        pids=[pid],
        settings=DamonSettings(),
        kdamond=None,
        clock=time.monotonic,
        log=structlog.get_logger("test"),
    )
    try:
        m.probe()
    except Unsupported as exc:
        pytest.skip(f"real DAMON not usable by sol here: {exc.reason}")
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = OwnerWriter(gate=Gate(), journal=journal, owner="sol.linux")
        try:
            m.start(writer)
        except Unsupported as exc:
            pytest.skip(f"real DAMON not usable by sol here: {exc.reason}")
        try:
            time.sleep(3.0)
            regions = m.snapshot().regions

            def accesses(addr: int) -> int:
                return max((r.nr_accesses for r in regions if r.start <= addr < r.end), default=-1)

            assert accesses(hot + (32 << 20)) > accesses(cold + (32 << 20))
        finally:
            m.stop(writer)


# -- NUMA --------------------------------------------------------------------------------------


def test_nodes_of_this_host_match_numactl_hardware() -> None:
    topo = NumaTopology(Path("/sys"))
    nodes = topo.nodes(now=0.0)
    assert nodes and all(0 < n.used_bytes < n.total_bytes for n in nodes)
    assert nodes[0].tier == "local"
    try:
        out = subprocess.run(["numactl", "--hardware"], capture_output=True, text=True, timeout=10).stdout
    except FileNotFoundError:
        pytest.skip("numactl not installed (Debian package numactl): cross-check skipped")
    assert f"available: {len(nodes)} nodes" in out


def test_fake_two_node_topology_tiers_and_far_override(tmp_path: Path) -> None:
    make_fake_nodes(tmp_path, {0: ("0-3", 8 * GIB, 2 * GIB), 1: ("", 16 * GIB, GIB)})
    assert [n.tier for n in NumaTopology(tmp_path).nodes(now=0.0)] == ["local", "far"]
    assert [n.tier for n in NumaTopology(tmp_path, far_nodes=(0,)).nodes(now=0.0)] == ["far", "local"]
    with pytest.raises(ValueError, match="not online"):
        NumaTopology(tmp_path, far_nodes=(5,))
    assert NumaTopology(tmp_path).distance(1) == (20, 10)


@pytest.fixture
def buffer() -> Iterator[tuple[int, int]]:
    size = 256 * PAGE_SIZE
    buf = mmap.mmap(-1, size)
    for i in range(0, size, PAGE_SIZE):
        buf[i] = 1
    anchor = ctypes.c_char.from_buffer(buf)
    yield ctypes.addressof(anchor), size
    del anchor
    buf.close()


def test_placement_and_migrate_of_real_pages_on_this_hosts_nodes(
    tmp_path: Path, buffer: tuple[int, int], journal: UndoJournal
) -> None:
    addr, size = buffer
    clock = StepClock()
    backend = LinuxBackend(
        LinuxConfig(memory=managing(os.getpid())), journal=journal, clock=clock, facilities=("memory",)
    )
    try:
        sensors = backend.sensors.memory
        node = sensors.nodes()[0].node
        assert sensors.placement(addr, addr + size) == {node: size}
        act = backend.actuators_for("mem_tier", dry_run=False).memory
        result = act.migrate(addr, addr + size, node)
        assert (result.bytes_moved, result.bytes_failed, result.bytes_already) == (0, 0, size)
        assert len(journal) == 0  # nothing to move: no write, no record
        with pytest.raises(ValueError, match="unknown NUMA node 99"):
            act.migrate(addr, addr + size, 99)
        with pytest.raises(Unsupported, match=r"DAMON|kdamond|targets"):
            sensors.regions()
    finally:
        backend.close()


def test_move_pages_to_an_offline_node_is_enodev() -> None:
    buf = bytearray(PAGE_SIZE * 2)
    addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    online = NumaTopology(Path("/sys")).ids
    with pytest.raises(OSError) as info:
        MovePages().call(os.getpid(), [addr - addr % PAGE_SIZE], [max(online) + 1])
    assert info.value.errno in (19, 22)  # ENODEV (offline node), EINVAL on older kernels


def test_without_a_managed_process_placement_says_what_to_set(tmp_path: Path, clock: StepClock) -> None:
    backend = LinuxBackend(LinuxConfig(), clock=clock, facilities=("memory",))
    with pytest.raises(Unsupported, match=r"set \[linux\.memory\] targets"):
        backend.sensors.memory.placement(0, PAGE_SIZE)
    assert backend.sensors.memory.nodes()


# -- [linux.memory] targets: several workloads, each a pid or a cgroup ------------------------

ME = os.getpid()
#: a pid no process has (above the kernel's pid_max limit of 2^22)
NO_SUCH_PID = 4_194_305


def fake_cgroups(tmp_path: Path, version: int, groups: dict[str, str]) -> Path:
    """A fake v1 or v2 cgroup tree with ``groups`` (name -> cgroup.procs text); its root."""
    fake: FakeV1 | FakeV2
    if version == 1:
        fake = FakeV1(tmp_path / "cgroup")
        for name, procs in groups.items():
            fake.add_group(name, tasks=procs)
    else:
        fake = FakeV2(tmp_path / "cgroup")
        for name, procs in groups.items():
            fake.add_group(name, threads=procs)
    return fake.root


TARGET_CASES = [
    pytest.param(
        (MemoryTarget(cgroup="machine.slice/vm-a"), MemoryTarget(pid=NO_SUCH_PID)),
        ME,
        [
            f"managed: pid {ME} (targets[0], cgroup machine.slice/vm-a; its other 1 process(es) "
            f"not managed yet); pid {NO_SUCH_PID} (targets[1])",
        ],
        id="a-cgroup-first-is-its-first-process",
    ),
    pytest.param(
        (MemoryTarget(pid=ME), MemoryTarget(cgroup="machine.slice/vm-a"), MemoryTarget(cgroup="gone")),
        ME,
        [
            f"managed: pid {ME} (targets[0]); pid {ME} (targets[1], cgroup machine.slice/vm-a; its other "
            "1 process(es) not managed yet); none (targets[2], cgroup gone: ",
        ],
        id="a-pid-first-and-the-others-named",
    ),
    pytest.param(
        (MemoryTarget(cgroup="machine.slice/vm-empty"), MemoryTarget(pid=ME)),
        None,
        [
            f"managed: none (targets[0], cgroup machine.slice/vm-empty: no process in it); pid {ME} "
            "(targets[1])",
        ],
        id="an-empty-cgroup-first-manages-none",
    ),
]


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
@pytest.mark.parametrize(("targets", "managed", "details"), TARGET_CASES)
def test_every_memory_target_is_a_named_workload_and_one_without_a_process_says_why(
    tmp_path: Path,
    clock: StepClock,
    version: int,
    targets: tuple[MemoryTarget, ...],
    managed: int | None,
    details: list[str],
) -> None:
    cgroup_root = fake_cgroups(
        tmp_path,
        version,
        {"machine.slice/vm-a": f"{ME}\n{NO_SUCH_PID}\n", "machine.slice/vm-empty": ""},
    )
    linux = LinuxConfig(cgroup_root=cgroup_root, memory=LinuxMemoryConfig(targets=targets))
    with structlog.testing.capture_logs() as logs:
        backend = LinuxBackend(linux, clock=clock, facilities=("memory",))
    (detail,) = [e["detail"] for e in logs if e["event"] == "linux.feature" and e["feature"] == "memory"]
    assert all(d in detail for d in details), detail
    sensors = backend.sensors.memory
    assert sensors.targets() == tuple(t.describe() for t in targets)
    if managed is None:
        with pytest.raises(Unsupported, match=r"targets\[0\] \(cgroup machine\.slice/vm-empty\): no process"):
            sensors.process_nodes()
    else:  # the managed process is this one: its own numa_maps
        assert sum(sensors.process_nodes().values()) > 0
    # every target is named in the calls; this process is one of each case's
    mine = next(t.describe() for t in targets if t.pid == ME or t.cgroup == "machine.slice/vm-a")
    assert sum(sensors.process_nodes(target=mine).values()) > 0
    with pytest.raises(ValueError, match="unknown memory target 'pid 1'; targets: "):
        sensors.process_nodes(target="pid 1")


def managing(*pids: int) -> LinuxMemoryConfig:
    return LinuxMemoryConfig(targets=tuple(MemoryTarget(pid=p) for p in pids))
