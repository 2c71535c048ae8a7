"""Logical cgroup resources: the v1 and v2 files of each, values, validators, read-backs."""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest

import sol.actuators.cgroup as cgroup_module
from sol.actuators.cgroup import (
    CPU_MAX,
    CPU_WEIGHT,
    CPUSET_CPUS,
    CPUSET_MEMORY_MIGRATE,
    CPUSET_MEMS,
    MEMORY_HIGH,
    MEMORY_LOW,
    MEMORY_MAX,
    CgroupResource,
    CpuMax,
)
from sol.kernel.cgroupfs import CgroupLayout, check_group_name
from sol.kernel.errors import Unsupported


def test_module_examples_run() -> None:
    assert doctest.testmod(cgroup_module).failed == 0


@pytest.mark.parametrize(
    ("resource", "value", "v1", "v2"),
    [
        (CPUSET_CPUS, [3, 1, 2], [("cpuset.cpus", "1-3")], [("cpuset.cpus", "1-3")]),
        (CPUSET_MEMS, [0], [("cpuset.mems", "0")], [("cpuset.mems", "0")]),
        (CPUSET_MEMORY_MIGRATE, True, [("cpuset.memory_migrate", "1")], None),
        (
            CPU_MAX,
            CpuMax(250_000, 100_000),
            [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "250000")],
            [("cpu.max", "250000 100000")],
        ),
        (
            CPU_MAX,
            CpuMax(None, 50_000),
            [("cpu.cfs_period_us", "50000"), ("cpu.cfs_quota_us", "-1")],
            [("cpu.max", "max 50000")],
        ),
        (CPU_WEIGHT, 1, [("cpu.shares", "10")], [("cpu.weight", "1")]),
        (CPU_WEIGHT, 10_000, [("cpu.shares", "102400")], [("cpu.weight", "10000")]),
        (MEMORY_MAX, 1 << 30, [("memory.limit_in_bytes", str(1 << 30))], [("memory.max", str(1 << 30))]),
        (MEMORY_MAX, None, [("memory.limit_in_bytes", "-1")], [("memory.max", "max")]),
        (MEMORY_LOW, 4096, [("memory.soft_limit_in_bytes", "4096")], [("memory.low", "4096")]),
        (MEMORY_HIGH, None, None, [("memory.high", "max")]),
    ],
    ids=[
        "cpus",
        "mems",
        "memory-migrate",
        "cpu-max",
        "cpu-max-unlimited",
        "weight-min",
        "weight-max",
        "memory-max",
        "memory-max-unlimited",
        "memory-low",
        "memory-high",
    ],
)
def test_each_resource_maps_to_its_version_files(
    resource: CgroupResource, value: Any, v1: list[tuple[str, str]] | None, v2: list[tuple[str, str]] | None
) -> None:
    for version, expected in ((1, v1), (2, v2)):
        if expected is None:
            with pytest.raises(Unsupported):
                resource.texts(version, value)
        else:
            assert resource.texts(version, value) == expected


@pytest.mark.parametrize(
    ("resource", "value"),
    [
        (CPUSET_CPUS, []),
        (CPUSET_CPUS, [-1]),
        (CPU_WEIGHT, 0),
        (CPU_WEIGHT, 10_001),
        (CPU_WEIGHT, True),
        (MEMORY_MAX, -5),
        (CPU_MAX, 100),
        (CPUSET_MEMORY_MIGRATE, 1),
    ],
    ids=[
        "cpus-empty",
        "cpus-negative",
        "weight-0",
        "weight-big",
        "weight-bool",
        "memory-negative",
        "cpu-max-not-cpumax",
        "migrate-int",
    ],
)
def test_invalid_values_are_refused_before_any_write(resource: CgroupResource, value: Any) -> None:
    with pytest.raises(ValueError):
        resource.texts(1, value)


@pytest.mark.parametrize(
    ("quota", "period"),
    [(999, 100_000), (1000, 999), (1000, 1_000_001)],
    ids=["quota-below-1ms", "period-below-1ms", "period-above-1s"],
)
def test_cfs_limits_of_the_kernel_are_validated(quota: int, period: int) -> None:
    with pytest.raises(ValueError):
        CpuMax(quota, period)


@pytest.mark.parametrize(
    ("resource", "version", "file", "written", "readback", "same"),
    [
        (CPUSET_CPUS, 1, "cpuset.cpus", "0,1,2", "0-2\n", True),
        (CPUSET_CPUS, 2, "cpuset.cpus", "0-2", "0-3\n", False),
        (CPU_MAX, 1, "cpu.cfs_quota_us", "-1", "-1\n", True),
        (CPU_MAX, 2, "cpu.max", "max 100000", "max 100000\n", True),
        (MEMORY_MAX, 1, "memory.limit_in_bytes", "-1", "9223372036854771712\n", True),
        (MEMORY_MAX, 1, "memory.limit_in_bytes", "10000", "8192\n", True),
        (MEMORY_MAX, 1, "memory.limit_in_bytes", "10000", "4096\n", False),
        (MEMORY_MAX, 2, "memory.max", "max", "max\n", True),
    ],
    ids=[
        "cpuset-reformatted",
        "cpuset-differs",
        "quota-unlimited",
        "cpu-max",
        "v1-unlimited-memory",
        "v1-page-rounded",
        "v1-wrong-value",
        "v2-memory-max",
    ],
)
def test_read_backs_compare_in_the_kernels_form(
    resource: CgroupResource, version: int, file: str, written: str, readback: str, same: bool
) -> None:
    assert resource.same(version, file, written, readback) is same


def test_read_decodes_v1_and_v2_golden_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "g").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpuset cpu memory\n")
    for name, text in {
        "cpu.max": "50000 100000\n",
        "cpu.weight": "100\n",
        "cpuset.cpus": "0-1,3\n",
        "memory.max": "max\n",
        "memory.low": "1048576\n",
    }.items():
        (v2 / "g" / name).write_text(text)
    layout = CgroupLayout.detect(v2)
    assert CPU_MAX.read(layout, "g") == CpuMax(50_000, 100_000)
    assert CPU_WEIGHT.read(layout, "g") == 100
    assert CPUSET_CPUS.read(layout, "g") == (0, 1, 3)
    assert MEMORY_MAX.read(layout, "g") is None and MEMORY_LOW.read(layout, "g") == 1 << 20

    v1 = tmp_path / "v1"
    for ctl, files in {
        "cpu": {"cpu.shares": "512\n", "cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"},
        "memory": {"memory.limit_in_bytes": "9223372036854771712\n"},
    }.items():
        (v1 / ctl / "g").mkdir(parents=True)
        (v1 / ctl / "cpu.shares").write_text("1024\n") if ctl == "cpu" else (
            v1 / ctl / "memory.limit_in_bytes"
        ).write_text("1\n")
        for name, text in files.items():
            (v1 / ctl / "g" / name).write_text(text)
    layout1 = CgroupLayout.detect(v1)
    assert layout1.version == 1 and layout1.unified is None
    assert CPU_MAX.read(layout1, "g") == CpuMax(None, 100_000)
    assert CPU_WEIGHT.read(layout1, "g") == 50
    assert MEMORY_MAX.read(layout1, "g") is None
    with pytest.raises(Unsupported, match="no v1 hierarchy for cpuset"):
        CPUSET_CPUS.read(layout1, "g")


@pytest.mark.parametrize("name", ["../etc", "/abs", "a//b", "a/./b", "a/.."])
def test_group_paths_cannot_escape_the_hierarchy(name: str) -> None:
    with pytest.raises(ValueError, match="bad cgroup path"):
        check_group_name(name)
