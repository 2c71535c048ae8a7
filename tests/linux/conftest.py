from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from linux_fakes import REAL_CGROUP, FakeProc, FakeV1, FakeV2, StepClock

from sol.safety.journal import UndoJournal


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[UndoJournal]:
    with UndoJournal.open(tmp_path / "state" / "undo.journal", fsync=False) as j:
        yield j


@pytest.fixture
def v1(tmp_path: Path) -> FakeV1:
    return FakeV1(tmp_path / "cgroup")


@pytest.fixture
def v2(tmp_path: Path) -> FakeV2:
    return FakeV2(tmp_path / "cgroup2")


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture
def fake_sys(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    (root / "devices" / "system" / "cpu").mkdir(parents=True)
    (root / "devices" / "system" / "cpu" / "online").write_text("0-3\n")
    return root


def real_v1_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create test cgroups"
    for controller, marker in (
        ("cpu", "cpu.shares"),
        ("cpuacct", "cpuacct.usage"),
        ("cpuset", "cpuset.cpus"),
    ):
        if not (REAL_CGROUP / controller / marker).is_file():
            return f"no writable cgroup v1 {controller} hierarchy at {REAL_CGROUP / controller}"
    return None


@pytest.fixture
def real_group_name() -> Iterator[str]:
    """A unique cgroup name; every directory of that name the test made is removed after it,
    its tasks (the test's own children) killed first by the test itself."""
    reason = real_v1_skip_reason()
    if reason:
        pytest.skip(reason)
    name = f"sol_test_{uuid.uuid4().hex[:8]}"
    yield name
    for controller in ("cpuset", "cpu", "cpuacct", "memory"):
        path = REAL_CGROUP / controller / name
        for child in sorted(path.glob("*/"), reverse=True) if path.is_dir() else []:
            if child.is_dir():
                child.rmdir()
        if path.is_dir():
            path.rmdir()
