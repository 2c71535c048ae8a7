"""Parsers of kernel text files: real files of this host, golden texts, and garbage."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import pytest

import sol.kernel.cgroupfs
import sol.kernel.errors
import sol.kernel.procfs
from sol.kernel.errors import SensorError
from sol.kernel.procfs import (
    format_cpulist,
    parse_cpulist,
    parse_flat_keyed,
    parse_node_meminfo,
    parse_numa_maps,
    parse_proc_schedstat,
    parse_psi,
    parse_schedstat,
    read_file,
)


@pytest.mark.parametrize(
    "module", [sol.kernel.procfs, sol.kernel.errors, sol.kernel.cgroupfs], ids=lambda m: m.__name__
)
def test_module_examples_run(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["cpu", "memory", "io"])
def test_system_psi_of_this_host_parses(name: str) -> None:
    path = Path("/proc/pressure") / name
    if not path.exists():
        pytest.skip(f"{path} absent: kernel without PSI")
    psi = parse_psi(read_file(path), path)
    assert 0.0 <= psi.some_avg10 <= 1.0 and psi.some_total_s >= 0.0


def test_own_schedstat_parses_and_counts_run_time() -> None:
    path = Path(f"/proc/{os.getpid()}/schedstat")
    if not path.exists():
        pytest.skip("kernel without schedstat")
    stat = parse_schedstat(read_file(path), path)
    assert stat.run_ns > 0 and stat.wait_ns >= 0


def test_numa_maps_of_this_process_give_bytes_per_node() -> None:
    path = Path(f"/proc/{os.getpid()}/numa_maps")
    if not path.exists():
        pytest.skip("kernel without NUMA maps")
    maps = parse_numa_maps(read_file(path), path)
    assert maps and sum(sum(m.node_bytes.values()) for m in maps) > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ()), ("0\n", (0,)), ("0-3", (0, 1, 2, 3)), ("0-1,4,6-7\n", (0, 1, 4, 6, 7)), ("3,1", (1, 3))],
    ids=["empty", "one", "range", "mixed", "unsorted"],
)
def test_cpulist_round_trips(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cpulist(text, "f") == expected
    assert parse_cpulist(format_cpulist(expected), "f") == expected


@pytest.mark.parametrize(
    ("parser", "text", "needle"),
    [
        (parse_cpulist, "0-a", "bad CPU/node list"),
        (parse_cpulist, "3-1", "range 3-1"),
        (parse_psi, "some avg10=1.00 avg60=x avg300=0.00 total=1\n", "line 1"),
        (parse_psi, "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", "no 'some' line"),
        (parse_psi, "some avg10=101.00 avg60=0.00 avg300=0.00 total=0\n", "above 100%"),
        (parse_schedstat, "1 2\n", "three counters"),
        (parse_schedstat, "1 -2 3\n", "three counters"),
        (parse_proc_schedstat, "cpu0 0 0 0 0 0 0 1 2 3\n", "no 'version' line"),
        (parse_proc_schedstat, "version 12\ncpu0 0 0 0 0 0 0 1 2 3\n", "jiffies"),
        (parse_proc_schedstat, "version 15\ncpu0 0 0 0 0 0 0 1 x 3\n", "line 2"),
        (parse_proc_schedstat, "version 15\ntimestamp 4\n", "no 'cpuN' lines"),
        (parse_flat_keyed, "usage_usec twelve\n", "line 1"),
        (parse_node_meminfo, "Node 0 MemFree: 10 kB\n", "no MemTotal"),
        (parse_node_meminfo, "garbage\n", "line 1"),
        (parse_numa_maps, "zzzz default\n", "line 1"),
        (parse_numa_maps, "7f00 default N0=x\n", "bad page count"),
    ],
    ids=[
        "cpulist-letter",
        "cpulist-backwards",
        "psi-garbage",
        "psi-no-some",
        "psi-over-100",
        "schedstat-short",
        "schedstat-negative",
        "proc-schedstat-no-version",
        "proc-schedstat-jiffies",
        "proc-schedstat-garbage",
        "proc-schedstat-no-cpus",
        "keyed-garbage",
        "meminfo-no-total",
        "meminfo-garbage",
        "numa-maps-address",
        "numa-maps-count",
    ],
)
def test_garbage_is_a_sensor_error_naming_the_file(parser: object, text: str, needle: str) -> None:
    with pytest.raises(SensorError) as info:
        parser(text, "/fake/file")  # type: ignore[operator]
    assert info.value.path == "/fake/file" and needle in str(info.value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"12\x0034\n", "NUL bytes"), (b"\xff\xfe\n", "non-ASCII")],
    ids=["nul", "binary"],
)
def test_binary_garbage_in_a_kernel_file_is_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "cpu.stat"
    path.write_bytes(content)
    with pytest.raises(SensorError, match=needle):
        read_file(path)


def test_missing_file_is_a_sensor_error_with_errno_and_hint(tmp_path: Path) -> None:
    with pytest.raises(SensorError) as info:
        read_file(tmp_path / "gone" / "cpu.stat")
    assert info.value.errno_name == "ENOENT" and "vanished" in str(info.value)


def test_node_meminfo_golden() -> None:
    text = (
        "Node 0 MemTotal:        4286240 kB\n"
        "Node 0 MemFree:         3798028 kB\n"
        "Node 0 HugePages_Total:     0\n"
    )
    info = parse_node_meminfo(text, "meminfo")
    assert info == {"MemTotal": 4286240 * 1024, "MemFree": 3798028 * 1024, "HugePages_Total": 0}


def test_kept_open_rereads_in_place_and_bounds_its_descriptors(tmp_path: Path) -> None:
    from sol.kernel.procfs import KeptOpen

    files = KeptOpen(limit=2)
    paths = [tmp_path / f"f{i}" for i in range(3)]
    for i, p in enumerate(paths):
        p.write_text(f"{i}\n")
    assert [files.read(str(p)) for p in paths] == ["0\n", "1\n", "2\n"]
    assert len(files) == 2  # the oldest was closed to stay within the limit
    paths[2].write_text("22\n")  # rewritten in place: the kept descriptor sees it
    assert files.read(str(paths[2])) == "22\n"
    big = tmp_path / "big"
    big.write_text("x" * 5000)
    assert len(files.read(str(big))) == 5000  # larger than one pread: by path, never kept
    paths[1].write_bytes(b"1\0")
    with pytest.raises(SensorError, match="NUL"):
        files.read(str(paths[1]))
    with pytest.raises(SensorError, match="missing"):
        files.read(str(tmp_path / "absent"))
    files.close()
    assert len(files) == 0
