"""mem_tier on Linux: a fake two-node host for the logic, real pages of a real child process,
SIGKILL mid-migration then ``sol restore``, and DAMON absent or owned by someone else.

* The fake two-node host: NUMA sysfs with a CPU node and a memory-only node, a scripted DAMON
  monitor and an in-memory ``move_pages`` that refuses some pages (``EBUSY``, ``EACCES``,
  ``ENOMEM``), under the real Linux memory actuator, journal and gate. The agent demotes the
  idle ranges, counts the refused pages by errno and never raises; the journal puts every
  range back.
* Real pages: a child process's buffer, ``move_pages(2)`` on this host's nodes with per-page
  status, and ``/proc/PID/numa_maps``. A SIGKILLed "daemon" (a subprocess that journaled a
  page range and is in the middle of moving it) is rolled back by ``sol restore``. Moving pages
  between two real nodes needs a host with two; elsewhere that part skips with the reason.
* DAMON: absent, or owned by another kdamond (as on this build host): the agent is
  ``not-applicable`` with the reason in its status, and no file of the kdamond is written.

Every child process is killed in ``finally``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("sol.linux.backend", reason="the Linux backend (sol.linux) is not available")

from sol.actuators.base import HostWriter
from sol.actuators.numa import PAGE_SIZE, MovePages, restore_pages
from sol.agents.mem_tier import MemTierAgent, Params
from sol.config import LinuxConfig, LinuxMemoryConfig, MemoryTarget
from sol.facilities import Actuators, DamonRegion, DamonSnapshot, Sensors
from sol.linux.backend import LinuxBackend
from sol.linux.damon import make_fake_admin
from sol.linux.memory import LinuxMemoryActuators, LinuxMemorySensors, MemoryHost
from sol.linux.numa import NumaTopology, make_fake_nodes, process_node_bytes
from sol.safety.journal import UndoJournal
from sol.sdk import Context, Prediction
from sol.testing import simulate
from tests.agentkit import ClockRef, WorkloadHost

GIB = 1 << 30
BASE = 0x7F0000000000
RANGE = 64 * PAGE_SIZE  # one DAMON region of the fake address space
SOL = [sys.executable, "-m", "sol"]
REAL_DAMON = Path("/sys/kernel/mm/damon/admin")


# -- a fake two-node host ----------------------------------------------------------------------


class PageTable:
    """``move_pages(2)`` over a fake two-node machine: ``{page address: node}``; pages listed in
    ``refuse`` answer that errno when asked to move, like pages under I/O (``EBUSY``), shared
    with a process we may not move (``EACCES``) or a full node (``ENOMEM``)."""

    def __init__(self, pages: dict[int, int], refuse: dict[int, int] | None = None) -> None:
        self.pages = pages
        self.refuse = refuse or {}
        self.gone = False

    def call(self, pid: int, addrs: Sequence[int], nodes: Sequence[int] | None, flags: int = 0) -> list[int]:
        if self.gone:
            raise OSError(errno.ESRCH, "No such process")
        out = []
        for i, a in enumerate(int(x) for x in addrs):
            if a not in self.pages:
                out.append(-errno.ENOENT)
            elif nodes is None:
                out.append(self.pages[a])
            elif a in self.refuse:
                out.append(-self.refuse[a])
            else:
                self.pages[a] = int(nodes[i])
                out.append(int(nodes[i]))
        return out

    def query(self, pid: int, start: int, end: int) -> list[int]:
        return self.call(pid, range(start, end, PAGE_SIZE), None)


class ScriptedDamon:
    """A DAMON monitor whose regions the test sets: ``hot`` region indices read accessed."""

    def __init__(self, clock: SimpleNamespace, n: int) -> None:
        self.clock = clock
        self.n = n
        self.hot: set[int] = set()
        self.started = True

    def snapshot(self) -> DamonSnapshot:
        t = self.clock.now()
        regions = tuple(
            DamonRegion(BASE + RANGE * j, BASE + RANGE * (j + 1), 15 if j in self.hot else 0, 1)
            for j in range(self.n)
        )
        return DamonSnapshot(t=t, t_start=t - 0.1, t_end=t, max_nr_accesses=20, regions=regions)


@pytest.fixture
def fake_host(tmp_path: Path) -> Iterator[SimpleNamespace]:
    sys_root = tmp_path / "sys"
    make_fake_nodes(sys_root, {0: ("0-3", 8 * GIB, 2 * GIB), 1: ("", 16 * GIB, GIB)})
    t = [0.0]
    clock = SimpleNamespace(now=lambda: t[0], consume=lambda s: None)
    n = 8
    pages = {BASE + i * PAGE_SIZE: 0 for i in range(n * RANGE // PAGE_SIZE)}
    # region 6: 3 pages under I/O and one we may not move; region 7: one page the far node refuses
    refuse = {BASE + 6 * RANGE + k * PAGE_SIZE: errno.EBUSY for k in range(3)}
    refuse[BASE + 6 * RANGE + 10 * PAGE_SIZE] = errno.EACCES
    refuse[BASE + 7 * RANGE] = errno.ENOMEM
    table = PageTable(pages, refuse)
    damon = ScriptedDamon(clock, n)
    host = MemoryHost(
        NumaTopology(sys_root),
        pid=4242,
        proc_root=tmp_path / "proc",
        clock=clock,
        migrate_mb_s=1000.0,
        monitor=damon,  # type: ignore[arg-type]
        syscall=table,  # type: ignore[arg-type]
    )
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = HostWriter(journal=journal, owner="mem_tier")
        mover = LinuxMemoryActuators(host, writer, None)
        agent = MemTierAgent()
        log = SimpleNamespace(info=lambda *a, **k: None)
        params = Params(min_idle_s=3.0, max_wake_prob=0.9, prior_migration_cost=0.0, prior_sensitivity=0.05)
        agent.setup(
            Context(clock, log, Sensors(memory=LinuxMemorySensors(host)), Actuators(memory=mover), params)  # type: ignore[arg-type]
        )
        yield SimpleNamespace(agent=agent, table=table, damon=damon, journal=journal, mover=mover, t=t, n=n)


def run_ticks(h: SimpleNamespace, seconds: int) -> None:
    for _ in range(seconds):
        h.t[0] += 1.0
        obs = h.agent.collect()
        assert h.agent.validate(obs)
        h.agent.learn(obs)
        h.agent.act(Prediction(h.agent.predict(), "model", None, h.t[0], h.t[0] + 3.0))


def test_on_a_fake_two_node_host_idle_ranges_go_far_and_refused_pages_are_counted(fake_host: Any) -> None:
    h = fake_host
    h.damon.hot = {0, 1, 2, 3}
    run_ticks(h, 30)
    far = {a for a, node in h.table.pages.items() if node == 1}
    for j in range(h.n):
        on_far = sum(1 for a in far if BASE + RANGE * j <= a < BASE + RANGE * (j + 1))
        expected = 0 if j < 4 else RANGE // PAGE_SIZE - (4 if j == 6 else 1 if j == 7 else 0)
        assert on_far == expected, f"region {j}"
    # refused pages are counted by errno, reported, never raised
    assert h.mover.failures == {"EBUSY": 3, "EACCES": 1, "ENOMEM": 1}
    assert h.agent.counts["bytes_failed"] == 5 * PAGE_SIZE and h.agent.counts["move_errors"] == 0
    # every range moved was journaled first with where its pages were: restore puts them back
    records = h.journal.open_records("mem_tier")
    assert {r.kind for r in records} == {"numa.pages"} and len(records) == 4
    for r in records:
        assert json.loads(r.before) == [
            [int(r.target.split(":")[1].split("-")[0], 16), json.loads(r.before)[0][1], 0]
        ]
        restore_pages(r.target, r.before, syscall=h.table)  # type: ignore[arg-type]
    assert set(h.table.pages.values()) == {0}


def test_on_the_fake_host_a_region_turning_hot_comes_back_and_mitigate_undoes_demotions(
    fake_host: Any,
) -> None:
    h = fake_host
    h.damon.hot = {0, 1, 2, 3}
    run_ticks(h, 30)
    assert h.table.pages[BASE + 5 * RANGE] == 1
    h.damon.hot = {0, 1, 2, 3, 5}  # region 5 wakes up
    run_ticks(h, 3)
    assert h.table.pages[BASE + 5 * RANGE] == 0
    h.agent.mitigate()  # the newest demotions first, within the cap (1000 MB/s: all of them)
    assert all(node == 0 for a, node in h.table.pages.items() if a not in h.table.refuse)


def test_a_workload_that_exits_is_counted_not_fatal(fake_host: Any) -> None:
    h = fake_host
    run_ticks(h, 2)
    h.table.gone = True  # the process exited: move_pages says ESRCH
    h.agent.act(Prediction(((BASE, BASE + RANGE, 1),), "model", None, h.t[0], h.t[0] + 3.0))
    assert h.agent.counts["move_errors"] == 1
    h.damon.n = 0  # DAMON's target is gone: no regions
    verdict = h.agent.validate(h.agent.collect())
    assert not verdict and "target is gone" in (verdict.reason or "")


# -- DAMON absent or someone else's: not applicable, nothing written ---------------------------


def linux_host(tmp_path: Path, sys_root: Path, pid: int) -> tuple[WorkloadHost, ClockRef]:
    clock = ClockRef()
    linux = LinuxConfig(
        sys_root=sys_root,
        cgroup_root=tmp_path / "nocgroup",
        memory=LinuxMemoryConfig(targets=(MemoryTarget(pid=pid),)),
    )
    journal = UndoJournal.open(tmp_path / "linux-undo.journal", fsync=False)
    backend = LinuxBackend(linux, clock=clock, journal=journal, facilities=("memory",))
    return WorkloadHost(backend), clock


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damon", ["absent", "owned by another kdamond"])
def test_without_a_damon_of_its_own_the_agent_is_not_applicable_and_writes_nothing(
    tmp_path: Path, damon: str
) -> None:
    sys_root = tmp_path / "sys"
    make_fake_nodes(sys_root, {0: ("0-3", 8 * GIB, 2 * GIB), 1: ("", 16 * GIB, GIB)})
    admin = sys_root / "kernel" / "mm" / "damon" / "admin"
    if damon != "absent":
        make_fake_admin(admin, nr_kdamonds=1, state="on", regions=[(BASE, BASE + RANGE, 3, 1)])
    before = tree(sys_root)
    host, _ = linux_host(tmp_path, sys_root, os.getpid())
    result = simulate(MemTierAgent(), duration=5.0, backend=host)
    assert result.state == "not-applicable"
    reason = result.status.get("reason") or result.status.get("state_reason") or str(result.status)
    assert "DAMON" in reason or "damon" in reason or "kdamond" in reason, reason
    assert tree(sys_root) == before  # not one file of someone else's kdamond written
    assert result.ground_truth.get("mem.bytes_migrated", 0.0) == 0.0


def test_a_host_with_one_memory_node_has_no_far_tier(tmp_path: Path) -> None:
    sys_root = tmp_path / "sys"
    make_fake_nodes(sys_root, {0: ("0-3", 8 * GIB, 2 * GIB)})
    host = MemoryHost(
        NumaTopology(sys_root),
        pid=1,
        proc_root=tmp_path,
        clock=SimpleNamespace(now=lambda: 1.0, consume=lambda s: None),
        migrate_mb_s=100.0,
        monitor=ScriptedDamon(SimpleNamespace(now=lambda: 1.0), 2),  # type: ignore[arg-type]
        syscall=PageTable({}),  # type: ignore[arg-type]
    )
    sensors = Sensors(memory=LinuxMemorySensors(host))
    actuators = Actuators(memory=SimpleNamespace(migrate=None))  # type: ignore[arg-type]
    from sol.facilities import FacilityMissing

    with pytest.raises(FacilityMissing, match="a local and a far tier"):
        MemTierAgent().setup(Context(host.clock, None, sensors, actuators, Params()))


def test_this_hosts_damon_is_left_to_its_owner(tmp_path: Path) -> None:
    if not REAL_DAMON.is_dir():
        pytest.skip("kernel without DAMON sysfs: nothing to leave alone here")
    states = {p: p.read_text() for p in REAL_DAMON.glob("kdamonds/*/state")}
    nr = (REAL_DAMON / "kdamonds" / "nr_kdamonds").read_text()
    if not states or all(s.strip() == "off" for s in states.values()):
        pytest.skip("no kdamond of anyone else's runs here: sol would start its own (not in a test)")
    with child() as (pid, _):
        host, _ = linux_host(tmp_path, Path("/sys"), pid)
        result = simulate(MemTierAgent(), duration=3.0, backend=host)
    assert result.state == "not-applicable"
    assert {p: p.read_text() for p in states} == states
    assert (REAL_DAMON / "kdamonds" / "nr_kdamonds").read_text() == nr


# -- real pages of a real child process ---------------------------------------------------------

CHILD = """
import mmap, ctypes, sys, time
n = int(sys.argv[1])
buf = mmap.mmap(-1, n)
for i in range(0, n, 4096): buf[i] = 1
print(ctypes.addressof(ctypes.c_char.from_buffer(buf)), flush=True)
time.sleep(120)
"""


class child:
    """A process with ``size`` bytes of touched anonymous memory: (pid, address)."""

    def __init__(self, size: int = 16 << 20) -> None:
        self.size = size

    def __enter__(self) -> tuple[int, int]:
        self.p = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self.size)], stdout=subprocess.PIPE, text=True
        )
        assert self.p.stdout is not None
        return self.p.pid, int(self.p.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        self.p.kill()
        self.p.wait(10)


def test_the_real_page_move_path_reports_each_pages_node(tmp_path: Path) -> None:
    nodes = NumaTopology(Path("/sys")).ids
    with child() as (pid, addr), UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        size = 16 << 20
        backend = LinuxBackend(
            LinuxConfig(memory=LinuxMemoryConfig(targets=(MemoryTarget(pid=pid),))),
            journal=journal,
            clock=SimpleNamespace(now=time.monotonic, consume=time.sleep),
            facilities=("memory",),
        )
        try:
            status = MovePages().query(pid, addr, addr + size)  # per page: its node
            assert status.size == size // PAGE_SIZE and set(status.tolist()) <= set(nodes)
            home = int(status[0])
            sensors = backend.sensors.memory
            assert sensors.placement(addr, addr + size) == {home: size}
            mover = backend.actuators_for("mem_tier", dry_run=False).memory
            m = mover.migrate(addr, addr + size, home)  # a real move_pages call to an existing node
            assert (m.bytes_moved, m.bytes_failed, m.bytes_already) == (0, 0, size)
            assert process_node_bytes(Path("/proc"), pid).get(home, 0) >= size  # numa_maps agrees
        finally:
            backend.close()


DAEMON = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from sol.config import LinuxConfig, LinuxMemoryConfig, MemoryTarget
from sol.linux.backend import LinuxBackend
from sol.safety.journal import UndoJournal
pid, addr, size, to_node = (int(a) for a in sys.argv[1:5])
journal_path = sys.argv[5]
journal = UndoJournal.open(Path(journal_path))
backend = LinuxBackend(
    LinuxConfig(memory=LinuxMemoryConfig(targets=(MemoryTarget(pid=pid),), migrate_mb_s=1.0)),
    journal=journal,
    clock=SimpleNamespace(now=time.monotonic, consume=time.sleep),
    facilities=("memory",),
)
mover = backend.actuators_for("mem_tier", dry_run=False).memory
syscall = mover._h.syscall
real = syscall.call
chunks = []
def in_flight(pid, addrs, nodes, flags=0):
    chunks.append(1)
    if len(chunks) == 5:  # the record is durable, the walk under way: stop mid-range
        print("in-flight", flush=True)
        time.sleep(120)
    return real(pid, addrs, nodes, flags)
syscall.call = in_flight
mover._h.migrator.chunk_pages = 64
m = mover.migrate(addr, addr + size, to_node)
print("done" if m.bytes_moved else "nothing to move", flush=True)
time.sleep(120)
"""


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def sigkill_mid_migration_then_restore(
    tmp_path: Path, state: Path, to_node: int, pid: int, addr: int, size: int
) -> tuple[str, bool]:
    """SIGKILL a 'daemon' while it moves ``[addr, addr+size)`` of ``pid`` to ``to_node`` (or once
    it found nothing to move), then run ``sol restore``: (its output, whether it was in flight)."""
    journal = state / "undo.journal"
    p = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(pid), str(addr), str(size), str(to_node), str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        seen = []
        for line in p.stdout:  # the daemon's log lines, then the marker
            seen.append(line)
            if line.strip() in ("in-flight", "nothing to move", "done"):
                break
        else:
            raise AssertionError("".join(seen) + (p.stderr.read() if p.stderr else ""))
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    in_flight = seen[-1].strip() == "in-flight"
    with UndoJournal.open(journal, fsync=False) as j:
        records = j.open_records()
    if in_flight:  # the range's before-image was durable before its first page moved
        (record,) = records
        assert record.kind == "numa.pages" and record.target == f"{pid}:{addr:#x}-{addr + size:#x}"
    else:  # every page already where it was sent: no write, so no record
        assert records == []
    cfg = tmp_path / "sol.toml"
    cfg.write_text(f'backend = "linux"\n\n[paths]\nstate_dir = "{state}"\n')
    out = subprocess.run([*SOL, "restore", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    with UndoJournal.open(journal, fsync=False) as j:
        assert j.open_records() == []
    return out.stdout, in_flight


def test_sigkill_during_a_move_to_its_own_node_then_sol_restore_leaves_every_page_in_place(
    tmp_path: Path, state: Path
) -> None:
    with child() as (pid, addr):
        size = 16 << 20
        home = int(MovePages().query(pid, addr, addr + PAGE_SIZE)[0])
        _, in_flight = sigkill_mid_migration_then_restore(tmp_path, state, home, pid, addr, size)
        assert not in_flight  # sent where it is: the walk finds nothing to move
        status = MovePages().query(pid, addr, addr + size)
        assert set(status.tolist()) == {home}  # every page on the node it was on
        assert process_node_bytes(Path("/proc"), pid).get(home, 0) >= size  # /proc/PID/numa_maps


def test_sigkill_mid_migration_across_two_real_nodes_is_rolled_back(tmp_path: Path, state: Path) -> None:
    nodes = NumaTopology(Path("/sys")).ids
    if len(nodes) < 2:
        pytest.skip(f"this host has {len(nodes)} NUMA node(s): moving real pages between nodes needs two")
    with child() as (pid, addr):
        size = 16 << 20
        home = int(MovePages().query(pid, addr, addr + PAGE_SIZE)[0])
        other = next(n for n in nodes if n != home)
        out, in_flight = sigkill_mid_migration_then_restore(tmp_path, state, other, pid, addr, size)
        assert in_flight, out
        status = MovePages().query(pid, addr, addr + size)
        assert set(status.tolist()) == {home}
        maps = process_node_bytes(Path("/proc"), pid)
        assert maps.get(other, 0) < size // 2  # what numa_maps shows there is not our buffer


# -- several workloads on the fake two-node host -----------------------------------------------

LOW = 0x550000000000  # the second process's regions lie below the first's, as heaps lie below mmaps


class PerProcess:
    """``move_pages(2)`` over several processes' page tables."""

    def __init__(self, tables: dict[int, PageTable]) -> None:
        self.tables = tables

    def call(self, pid: int, addrs: Sequence[int], nodes: Sequence[int] | None, flags: int = 0) -> list[int]:
        return self.tables[pid].call(pid, addrs, nodes, flags)

    def query(self, pid: int, start: int, end: int) -> list[int]:
        return self.tables[pid].query(pid, start, end)


def test_on_a_fake_two_node_host_two_workloads_are_each_monitored_and_moved(tmp_path: Path) -> None:
    from sol.linux.damon import DamonMonitor, DamonSettings

    sys_root = tmp_path / "sys"
    make_fake_nodes(sys_root, {0: ("0-3", 8 * GIB, 2 * GIB), 1: ("", 16 * GIB, GIB)})
    t = [0.0]
    clock = SimpleNamespace(now=lambda: t[0], consume=lambda s: None)
    bases = {4242: BASE, 4343: LOW}
    # each process: regions 0-1 hot, 2-3 idle
    regions = [
        (base + RANGE * j, base + RANGE * (j + 1), 15 if j < 2 else 0, 5)
        for base in bases.values()
        for j in range(4)
    ]
    admin = make_fake_admin(tmp_path / "admin", regions=regions, targets=2)
    tables = {
        pid: PageTable({base + i * PAGE_SIZE: 0 for i in range(4 * RANGE // PAGE_SIZE)})
        for pid, base in bases.items()
    }
    log = SimpleNamespace(info=lambda *a, **k: None, warning=lambda *a, **k: None, error=lambda *a, **k: None)
    monitor = DamonMonitor(
        admin, pids=list(bases), settings=DamonSettings(), kdamond=None, clock=clock.now, log=log
    )
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        monitor.start(HostWriter(journal=journal, owner="sol.linux"))
        ctx = admin / "kdamonds" / "0" / "contexts" / "0" / "targets"
        assert (ctx / "nr_targets").read_text().strip() == "2"
        assert [(ctx / str(i) / "pid_target").read_text().strip() for i in (0, 1)] == ["4242", "4343"]
        host = MemoryHost(
            NumaTopology(sys_root),
            pid=None,
            proc_root=tmp_path / "proc",
            clock=clock,
            migrate_mb_s=1000.0,
            monitor=monitor,
            syscall=PerProcess(tables),  # type: ignore[arg-type]
            targets=[("pid 4242", 4242, None, None), ("pid 4343", 4343, None, None)],
        )
        sensors = LinuxMemorySensors(host)
        assert sensors.targets() == ("pid 4242", "pid 4343")
        assert [r.start for r in sensors.regions(target="pid 4343").regions] == [
            LOW + RANGE * j for j in range(4)
        ]
        writer = HostWriter(journal=journal, owner="mem_tier")
        agent = MemTierAgent()
        params = Params(min_idle_s=3.0, max_wake_prob=0.9, prior_migration_cost=0.0, prior_sensitivity=0.05)
        agent.setup(
            Context(
                clock,
                log,
                Sensors(memory=sensors),
                Actuators(memory=LinuxMemoryActuators(host, writer, None)),
                params,
            )  # type: ignore[arg-type]
        )
        assert [w.target for w in agent.workloads] == ["pid 4242", "pid 4343"]
        for _ in range(12):
            t[0] += 1.0
            obs = agent.collect()
            assert agent.validate(obs)
            agent.learn(obs)
            agent.act(Prediction(agent.predict(), "model", None, t[0], t[0] + 3.0))
        # each process's idle ranges went far on its own page table, its hot ones stayed local
        for pid, base in bases.items():
            pages = tables[pid].pages
            assert {pages[base + RANGE * j] for j in (2, 3)} == {1}, pid
            assert {pages[base + RANGE * j] for j in (0, 1)} == {0}, pid
        # regions that cannot be told apart (the second process above the first) are refused,
        # not guessed: every workload's read fails, the agent says so and raises nothing
        import shutil

        tried = admin / "kdamonds" / "0" / "contexts" / "0" / "schemes" / "0" / "tried_regions"
        shutil.rmtree(tried)
        make_fake_admin(tmp_path / "admin2", regions=sorted(regions), targets=2)
        shutil.copytree(
            tmp_path / "admin2" / "kdamonds" / "0" / "contexts" / "0" / "schemes" / "0" / "tried_regions",
            tried,
        )
        t[0] += 1.0
        v = agent.validate(agent.collect())
        assert not v and "cannot tell the targets' regions apart" in str(v.reason)
        monitor.stop(HostWriter(journal=journal, owner="sol.linux"))
