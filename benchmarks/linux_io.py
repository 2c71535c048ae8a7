"""Costs of the Linux backend's kernel I/O on this host.

    .venv/bin/python benchmarks/linux_io.py [--quick]

1. Sensor reads (µs per call, median and p99): every sensor the agents use, on this host's
   real files (cgroup v1/v2, PSI, schedstat, taskstats netlink, NUMA sysfs, numa_maps,
   move_pages queries, mincore), plus DAMON on a fake sysfs tree where the real one is not
   sol's to use, and NVML through the fake NVML where there is no GPU. Lines say which.
2. One cgroup write with its undo record (µs): guard -> fsync'd journal record -> write(2) ->
   read-back, on a real cgroup v1/v2 file of a benchmark cgroup made for the run; also
   without fsync, in dry-run, and a bare write(2) for reference.
3. ``move_pages(2)`` throughput (pages/s) on a buffer of this process: the placement query,
   and migration to the node the pages are on (this host may have one node, where the kernel
   still walks, locks and checks every page but copies none; on two nodes the copy adds to it).

Needs root for the cgroup write; every cgroup it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from sol.actuators.base import HostWriter
from sol.actuators.cgroup import CPU_WEIGHT
from sol.actuators.numa import PAGE_SIZE, MovePages, PageMigrator
from sol.actuators.pagecache import residency
from sol.config import LinuxConfig, LinuxFaasConfig, LinuxMemoryConfig, MemoryTarget
from sol.kernel.cgroupfs import CgroupLayout
from sol.kernel.errors import SensorError, Unsupported
from sol.kernel.procfs import parse_psi, parse_schedstat, read_file
from sol.linux import LinuxBackend
from sol.linux.damon import DamonMonitor, DamonSettings, make_fake_admin
from sol.linux.fake_nvml import FakeGpu, FakeNvml
from sol.linux.gate import Gate, OwnerWriter
from sol.linux.numa import process_node_bytes
from sol.linux.taskstats import TaskstatsReader
from sol.safety.journal import UndoJournal


class Clock:
    def now(self) -> float:
        return time.monotonic()

    def consume(self, s: float) -> None:
        if s > 0:
            time.sleep(s)


def timed(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    """(median µs, p99 µs) of ``n`` calls after a few warm-up calls."""
    for _ in range(min(5, n)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def table(title: str, rows: list[tuple[str, ...]]) -> None:
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        cells = zip(r, widths, strict=True)
        print("  " + "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in cells).rstrip())
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.replace(",", "").replace(".", "").isdigit()


def sensor_rows(n: int, tmp: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("sensor read", "source", "median µs", "p99 µs")]
    quiet = structlog.get_logger("bench")
    pid = os.getpid()
    buf = mmap.mmap(-1, 64 << 20)
    for i in range(0, len(buf), PAGE_SIZE):
        buf[i] = 1
    anchor = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(anchor)
    blob = tmp / "blob"
    blob.write_bytes(os.urandom(64 << 20))
    backend = LinuxBackend(
        LinuxConfig(
            memory=LinuxMemoryConfig(targets=(MemoryTarget(pid=pid),)),
            faas=LinuxFaasConfig(cache_dir=tmp),
        ),
        clock=Clock(),
        log=quiet,
        nvml=FakeNvml([FakeGpu(uuid="GPU-fake")]),
    )
    try:
        cpu = backend.sensors.cpu
        if cpu is not None:
            for group in ("primary", "harvest"):
                rows.append(
                    (
                        f"cpu.usage({group!r})",
                        "cpuacct.usage / cpu.stat",
                        *_fmt(timed(lambda g=group: cpu.usage(g), n)),
                    )
                )
            rows.append(
                (
                    "cpu.pressure('primary')",
                    "/proc/pressure/cpu",
                    *_fmt(timed(lambda: cpu.pressure("primary"), n)),
                )
            )
            host = backend.cpu_host
            if host is not None:
                source = (
                    "/proc/schedstat - harvest threads"
                    if host.uses_proc_schedstat
                    else f"schedstat, all {len(os.listdir('/proc'))} /proc entries' threads"
                )
                rows.append(
                    (
                        "cpu.run_queue_delay('primary'), fresh",
                        source,
                        *_fmt(timed(lambda: host.run_queue_delay("primary", fresh=True), max(10, n // 20))),
                    )
                )
            rows.append(
                (
                    "cpu.run_queue_delay('primary')",
                    "as agents read it (reused under run_delay_cpu_share)",
                    *_fmt(timed(lambda: cpu.run_queue_delay("primary"), n)),
                )
            )
        ss = Path(f"/proc/{pid}/schedstat")
        rows.append(
            ("one task's schedstat", str(ss), *_fmt(timed(lambda: parse_schedstat(read_file(ss), ss), n)))
        )
        psi = Path("/proc/pressure/cpu")
        if psi.exists():
            rows.append(
                ("system PSI parse", str(psi), *_fmt(timed(lambda: parse_psi(read_file(psi), psi), n)))
            )
        ts = TaskstatsReader()
        try:
            ts.delay(pid)
            rows.append(
                ("one task's taskstats", "genetlink TASKSTATS", *_fmt(timed(lambda: ts.delay(pid), n)))
            )
        except SensorError as exc:
            rows.append(("one task's taskstats", f"unavailable: {exc}", "-", "-"))
        finally:
            ts.close()
        mem = backend.sensors.memory
        if mem is not None:
            rows.append(("memory.nodes()", "/sys/devices/system/node", *_fmt(timed(mem.nodes, n))))
            rows.append(
                (
                    "memory.placement(64 MiB)",
                    "move_pages query, 16384 pages",
                    *_fmt(timed(lambda: mem.placement(addr, addr + (64 << 20)), max(10, n // 10))),
                )
            )
            rows.append(
                (
                    "numa_maps of this process",
                    f"/proc/{pid}/numa_maps",
                    *_fmt(timed(lambda: process_node_bytes(Path("/proc"), pid), max(10, n // 10))),
                )
            )
            try:
                mem.regions()
                rows.append(("memory.regions()", "real DAMON sysfs", *_fmt(timed(mem.regions, n))))
            except Unsupported as exc:
                rows.append(("memory.regions()", f"real DAMON not sol's here ({exc.reason[:48]}…)", "-", "-"))
                rows.append(_fake_damon_row(tmp, n))
        faas = backend.sensors.faas
        if faas is not None:
            rows.append(
                (
                    "faas.residency(64 MiB file)",
                    "mmap + mincore",
                    *_fmt(timed(lambda: faas.residency("blob"), n)),
                )
            )
        rows.append(
            (
                "mincore of a 64 MiB file",
                "actuators.pagecache.residency",
                *_fmt(timed(lambda: residency(blob), n)),
            )
        )
        gpu = backend.sensors.gpu
        if gpu is not None:
            rows.append(
                (
                    "gpu.power_usage_mw(0)",
                    "fake NVML (no GPU here)",
                    *_fmt(timed(lambda: gpu.power_usage_mw(0), n)),
                )
            )
    finally:
        backend.close()
        del anchor
        buf.close()
    return rows


def _fake_damon_row(tmp: Path, n: int) -> tuple[str, ...]:
    admin = make_fake_admin(tmp / "damon", regions=[(i << 21, (i + 1) << 21, i % 20, i) for i in range(100)])
    with UndoJournal.open(tmp / "damon.journal", fsync=False) as j:
        m = DamonMonitor(
            admin,
            pids=[os.getpid()],
            settings=DamonSettings(),
            kdamond=None,
            clock=time.monotonic,
            log=structlog.get_logger("bench"),
        )
        w = OwnerWriter(gate=Gate(), journal=j, owner="sol.linux")
        m.start(w)
        try:
            return (
                "memory.regions(), 100 regions",
                "fake DAMON sysfs tree (tmpfs/ext4)",
                *_fmt(timed(m.snapshot, n)),
            )
        finally:
            m.stop(w)


def write_rows(n: int, tmp: Path) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("cgroup write (cpu.weight of a bench cgroup)", "median µs", "p99 µs")]
    layout = CgroupLayout.detect(Path("/sys/fs/cgroup"))
    if not layout.has("cpu") or os.geteuid() != 0:
        return [*rows, ("needs root and a cpu controller", "-", "-")]
    group = f"sol_bench_{uuid.uuid4().hex[:8]}"
    path = layout.path("cpu", group)
    path.mkdir()
    quiet = structlog.get_logger("bench")
    try:
        file = CPU_WEIGHT.files(layout.version)[0]
        knob = CPU_WEIGHT.knob(layout, group, file)
        for label, fsync, dry in (
            ("guard + undo record (fsync) + write + read-back", True, False),
            ("same, journal without fsync", False, False),
            ("dry-run (read + log only)", False, True),
        ):
            with UndoJournal.open(tmp / f"undo-{fsync}-{dry}.journal", fsync=fsync, log=quiet) as journal:
                writer = HostWriter(
                    journal=None if dry else journal, owner=f"bench{len(rows)}", dry_run=dry, log=quiet
                )
                # a new owner per call: each write needs a fresh undo record (the journal
                # keeps only the oldest image per owner, kind and target)
                values = iter(range(10**9))

                def one(
                    w: HostWriter = writer, j: UndoJournal = journal, d: bool = dry, vs: Any = values
                ) -> None:
                    v = next(vs)
                    w.owner = f"bench-{v}"
                    w.write(knob, CPU_WEIGHT.texts(layout.version, 100 + v % 2)[0][1])
                    if not d:
                        j.release(w.owner)

                rows.append((label, *_fmt(timed(one, n))))
        raw = path / file
        toggle = iter(range(10**9))
        rows.append(
            (
                "bare write(2) + read-back, for reference",
                *_fmt(timed(lambda: (raw.write_text(str(2 + next(toggle) % 2 * 8)), raw.read_text()), n)),
            )
        )
    finally:
        path.rmdir()
    return rows


def move_pages_rows(mib: int) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("move_pages(2)", "pages", "seconds", "pages/s")]
    size = mib << 20
    buf = mmap.mmap(-1, size)
    for i in range(0, size, PAGE_SIZE):
        buf[i] = 1
    anchor = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(anchor)
    pages = size // PAGE_SIZE
    try:
        mp = MovePages()
        pid = os.getpid()
        t0 = time.perf_counter()
        status = mp.query(pid, addr, addr + size)
        dt = time.perf_counter() - t0
        rows.append(("query (nodes=NULL)", str(pages), f"{dt:.4f}", f"{pages / dt:,.0f}"))
        node = int(np.bincount(status[status >= 0]).argmax())
        addrs = np.arange(addr, addr + size, PAGE_SIZE, dtype=np.uint64)
        t0 = time.perf_counter()
        for i in range(0, pages, 4096):
            chunk = addrs[i : i + 4096]
            mp.call(pid, chunk, np.full(chunk.size, node, dtype=np.int64))
        dt = time.perf_counter() - t0
        rows.append(
            (f"move to node {node} (pages already there)", str(pages), f"{dt:.4f}", f"{pages / dt:,.0f}")
        )
        clock = Clock()
        migrator = PageMigrator(mp, rate_mb_s=1e9, now=clock.now, wait=clock.consume)
        t0 = time.perf_counter()
        out = migrator.migrate(pid, addr, addr + size, node)
        dt = time.perf_counter() - t0
        rows.append(
            ("PageMigrator.migrate (query + move, unpaced)", str(pages), f"{dt:.4f}", f"{pages / dt:,.0f}")
        )
        assert out.already == size
    finally:
        del anchor
        buf.close()
    return rows


def _fmt(pair: tuple[float, float]) -> tuple[str, str]:
    return f"{pair[0]:,.1f}", f"{pair[1]:,.1f}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args(argv)
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # keep the tables clean
    n = 50 if args.quick else 400
    print(
        f"sol Linux backend I/O costs: {platform.node()}, kernel {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {n} calls per figure"
    )
    with tempfile.TemporaryDirectory(prefix="sol-bench-") as d:
        tmp = Path(d)
        table("1. sensor reads", sensor_rows(n, tmp))
        table("2. one cgroup write with its undo record", write_rows(max(20, n // 4), tmp))
    nodes = [d for d in os.listdir("/sys/devices/system/node") if d.startswith("node")]
    mib = 64 if args.quick else 256
    table(
        f"3. move_pages throughput ({mib} MiB of this process, {len(nodes)} NUMA node(s))",
        move_pages_rows(mib),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
