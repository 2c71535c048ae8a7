"""NUMA actuators: move_pages pacing, planning on a fake two-node topology, restorers,
and migratepages (package numactl) on a real child process."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sol.actuators.base import HostWriter
from sol.actuators.numa import (
    PAGE_SIZE,
    DamosScheme,
    PageMigrator,
    PagesKnob,
    ProcessNodesKnob,
    migratepages_available,
    plan_migration,
    restore_pages,
    restore_process,
    runs_of,
)
from sol.actuators.restorers import default_restorers
from sol.linux.numa import process_node_bytes
from sol.safety.journal import UndoJournal

MB = 1_000_000


class FakeMovePages:
    """move_pages(2) over a fake two-node machine: a page table {addr: node}."""

    def __init__(self, pages: dict[int, int], *, full: set[int] = frozenset(), gone: bool = False) -> None:  # type: ignore[assignment]
        self.pages = pages
        self.full = full
        self.gone = gone
        self.calls = 0

    def call(self, pid: int, addrs: Sequence[int], nodes: Sequence[int] | None, flags: int = 0) -> list[int]:
        self.calls += 1
        if self.gone:
            raise OSError(errno.ESRCH, "no such process")
        out = []
        for i, a in enumerate(addrs):
            if a not in self.pages:
                out.append(-errno.ENOENT)
            elif nodes is None:
                out.append(self.pages[a])
            elif nodes[i] in self.full:
                out.append(-errno.ENOMEM)
            else:
                self.pages[a] = nodes[i]
                out.append(nodes[i])
        return out

    def query(self, pid: int, start: int, end: int) -> list[int]:
        return self.call(pid, range(start, end, PAGE_SIZE), None)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.waited = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, s: float) -> None:
        self.t += s
        self.waited += s


def pages(n: int, node: int, base: int = 0x10000000) -> dict[int, int]:
    return {base + i * PAGE_SIZE: node for i in range(n)}


def test_migration_is_paced_under_the_mb_s_cap() -> None:
    n = 4096 * 4  # 64 MiB in 4 chunks
    fake = FakeMovePages(pages(n, 0))
    clock = Clock()
    m = PageMigrator(fake, rate_mb_s=16, now=clock.now, wait=clock.wait)  # type: ignore[arg-type]
    out = m.migrate(1, 0x10000000, 0x10000000 + n * PAGE_SIZE, 1)
    assert out.moved == n * PAGE_SIZE and out.failed == 0
    # the first chunk goes at once, each later one waits for its share of the budget
    assert clock.waited == pytest.approx(3 * 4096 * PAGE_SIZE / (16 * MB))
    assert set(fake.pages.values()) == {1}


def test_a_full_destination_fails_pages_with_enomem_and_counts_them() -> None:
    fake = FakeMovePages(pages(8, 0), full={1})
    clock = Clock()
    out = PageMigrator(fake, rate_mb_s=100, now=clock.now, wait=clock.wait).migrate(  # type: ignore[arg-type]
        1, 0x10000000, 0x10000000 + 10 * PAGE_SIZE, 1
    )
    assert (out.moved, out.failed, out.already, out.absent) == (0, 8 * PAGE_SIZE, 0, 2 * PAGE_SIZE)


@pytest.mark.parametrize(
    ("to", "free", "placement", "planned", "reason"),
    [
        (1, {0: 1 << 30, 1: 1 << 30}, {0: 64 << 20}, 64 << 20, None),
        (1, {0: 1 << 30, 1: 96 << 20}, {0: 64 << 20}, 32 << 20, "64 MiB reserved"),
        (1, {0: 1 << 30, 1: 16 << 20}, {0: 64 << 20}, 0, "bytes planned"),
        (0, {0: 1 << 30, 1: 1 << 30}, {0: 64 << 20}, 0, None),
    ],
    ids=["fits", "trimmed-to-room", "no-room", "already-there"],
)
def test_plan_checks_the_destination_node_room_on_a_two_node_topology(
    to: int, free: dict[int, int], placement: dict[int, int], planned: int, reason: str | None
) -> None:
    plan = plan_migration(0, 64 << 20, to, free_bytes=free, placement=placement, reserve_bytes=64 << 20)
    assert plan.bytes == planned
    if reason is None:
        assert plan.reason is None
    else:
        assert plan.reason is not None and (reason.split()[-1] in plan.reason)


def test_plan_refuses_an_unknown_node() -> None:
    with pytest.raises(ValueError, match="unknown NUMA node 3"):
        plan_migration(0, PAGE_SIZE, 3, free_bytes={0: 1, 1: 1}, placement={})


def test_pages_knob_journals_runs_and_restore_moves_them_back(tmp_path: Path) -> None:
    base = 0x20000000
    table = pages(4, 0, base) | pages(4, 1, base + 4 * PAGE_SIZE)
    fake = FakeMovePages(dict(table))
    clock = Clock()
    knob = PagesKnob(
        PageMigrator(fake, rate_mb_s=100, now=clock.now, wait=clock.wait),
        7,
        base,  # type: ignore[arg-type]
        base + 8 * PAGE_SIZE,
    )
    assert knob.target == f"7:{base:#x}-{base + 8 * PAGE_SIZE:#x}"
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        result = HostWriter(journal=journal, owner="mem").write(knob, "1")
        assert result.applied and set(fake.pages.values()) == {1}
        (record,) = journal.open_records()
        assert json.loads(record.before) == [
            [base, base + 4 * PAGE_SIZE, 0],
            [base + 4 * PAGE_SIZE, base + 8 * PAGE_SIZE, 1],
        ]
        restore_pages(record.target, record.before, syscall=fake)  # type: ignore[arg-type]
    assert fake.pages == table


def test_restoring_pages_of_a_process_that_exited_is_a_no_op() -> None:
    restore_pages("7:0x1000-0x3000", [[0x1000, 0x3000, 0]], syscall=FakeMovePages({}, gone=True))  # type: ignore[arg-type]


def test_runs_of_skip_absent_pages() -> None:
    assert runs_of(0, [0, 0, -errno.ENOENT, 1]) == [[0, 2 * PAGE_SIZE, 0], [3 * PAGE_SIZE, 4 * PAGE_SIZE, 1]]


def test_every_new_kind_has_a_restorer() -> None:
    assert {"numa.pages", "numa.process", "damos.scheme", "damon.kdamond"} <= set(default_restorers())


@pytest.mark.parametrize("bad", [{"action": "pageout"}, {"nr_accesses": (5, 1)}], ids=["action", "range"])
def test_damos_schemes_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DamosScheme(**bad)  # type: ignore[arg-type]


@pytest.fixture
def child() -> Iterator[int]:
    p = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(8 << 20); time.sleep(30)"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait(10)


def test_migratepages_moves_a_real_process_and_restore_puts_it_back(child: int, tmp_path: Path) -> None:
    if migratepages_available() is None:
        pytest.skip("migratepages not installed (Debian package numactl; .ci/run installs it)")
    knob = ProcessNodesKnob(child, lambda p: sorted(process_node_bytes(Path("/proc"), p)))
    nodes = json.loads(knob.read())
    assert nodes, "the child has memory on some node"
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        # one node here: moving node N to node N is the real command doing nothing, exit 0
        spec = f"{nodes[0]}>{nodes[0]}"
        result = HostWriter(journal=journal, owner="mem").write(knob, spec)
        assert result.applied and result.reason == "unchanged"  # no page is off node N: no write
        knob.write(spec)  # the real command, run anyway: exits 0
        for record in journal.open_records():
            restore_process(record.target, record.before)


def test_migratepages_of_a_process_that_does_not_exist_is_an_error() -> None:
    if migratepages_available() is None:
        pytest.skip("migratepages not installed (Debian package numactl; .ci/run installs it)")
    from sol.actuators.numa import run_migratepages

    with pytest.raises(OSError):
        run_migratepages(2**22 + 12345, "0", "0")


def test_restore_of_a_process_gone_is_a_no_op() -> None:
    restore_process(str(2**22 + 12345), [0])
    assert os.path.exists("/proc/self")
