"""Fake host trees for the Linux backend tests: cgroup v1, cgroup v2, procfs, NUMA sysfs.

Each builder writes the files the kernel would show, with the kernel's formats (golden
contents copied from a real 6.x host); tests point the backend's roots at them. A fake tree
cannot play the kernel on ``mkdir`` (a real cgroupfs fills a new directory with its files),
so groups a test needs are created here with their files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sol.linux.damon import make_fake_admin as fake_damon  # noqa: F401  (re-exported for the tests)

#: the real cgroup root of this host
REAL_CGROUP = Path("/sys/fs/cgroup")


class StepClock:
    """A clock a test moves by hand; ``consume`` advances it (nothing really waits)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def consume(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


PSI_IDLE = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def psi_text(some10: float, some60: float = 0.0, total_us: int = 0, full10: float = 0.0) -> str:
    return (
        f"some avg10={some10:.2f} avg60={some60:.2f} avg300=0.00 total={total_us}\n"
        f"full avg10={full10:.2f} avg60=0.00 avg300=0.00 total=0\n"
    )


def _write(path: Path, files: Mapping[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


class FakeV1:
    """``<root>/{cpu,cpuacct,cpuset,memory}`` hierarchies plus ``<root>/unified`` (hybrid)."""

    def __init__(self, root: Path, cpus: str = "0-3", *, unified: bool = True) -> None:
        self.root = root
        self.cpus = cpus
        _write(
            root / "cpu",
            {
                "cpu.shares": "1024\n",
                "cpu.cfs_quota_us": "-1\n",
                "cpu.cfs_period_us": "100000\n",
                "tasks": "",
                "cgroup.procs": "",
            },
        )
        _write(root / "cpuacct", {"cpuacct.usage": "0\n", "tasks": "", "cgroup.procs": ""})
        _write(
            root / "cpuset",
            {
                "cpuset.cpus": f"{cpus}\n",
                "cpuset.effective_cpus": f"{cpus}\n",
                "cpuset.mems": "0\n",
                "cpuset.effective_mems": "0\n",
                "cpuset.memory_migrate": "0\n",
                "tasks": "",
                "cgroup.procs": "",
            },
        )
        _write(
            root / "memory",
            {
                "memory.limit_in_bytes": "9223372036854771712\n",
                "memory.soft_limit_in_bytes": "9223372036854771712\n",
                "tasks": "",
                "cgroup.procs": "",
            },
        )
        if unified:
            _write(
                root / "unified",
                {
                    "cgroup.controllers": "",
                    "cgroup.subtree_control": "",
                    "cpu.pressure": PSI_IDLE,
                    "cpu.stat": "usage_usec 0\n",
                },
            )

    def add_group(
        self,
        name: str,
        *,
        cpus: str = "3",
        quota: int = 1000,
        usage_ns: int = 0,
        tasks: str = "",
        psi: str | None = None,
    ) -> None:
        _write(
            self.root / "cpu" / name,
            {
                "cpu.stat": "nr_periods 50\nnr_throttled 20\nthrottled_time 1500000000\n",
                "cpu.shares": "10\n",
                "cpu.cfs_quota_us": f"{quota}\n",
                "cpu.cfs_period_us": "100000\n",
                "tasks": tasks,
                "cgroup.procs": tasks,
            },
        )
        _write(self.root / "cpuacct" / name, {"cpuacct.usage": f"{usage_ns}\n", "tasks": tasks})
        _write(
            self.root / "cpuset" / name,
            {
                "cpuset.cpus": f"{cpus}\n",
                "cpuset.effective_cpus": f"{cpus}\n",
                "cpuset.mems": "0\n",
                "cpuset.memory_migrate": "0\n",
                "tasks": tasks,
            },
        )
        _write(
            self.root / "memory" / name,
            {
                "memory.limit_in_bytes": "9223372036854771712\n",
                "memory.soft_limit_in_bytes": "9223372036854771712\n",
                "tasks": tasks,
                "cgroup.procs": tasks,
            },
        )
        if psi is not None:
            _write(self.root / "unified" / name, {"cpu.pressure": psi, "cgroup.threads": tasks})

    def set_usage(self, group: str, ns: int) -> None:
        (self.root / "cpuacct" / group / "cpuacct.usage").write_text(f"{ns}\n")


class FakeV2:
    """A cgroup v2 root with cpuset, cpu and memory enabled for children."""

    def __init__(self, root: Path, cpus: str = "0-3") -> None:
        self.root = root
        _write(
            root,
            {
                "cgroup.controllers": "cpuset cpu io memory hugetlb pids\n",
                "cgroup.subtree_control": "cpuset cpu memory\n",
                "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
                "cpu.pressure": PSI_IDLE,
                "cpuset.cpus.effective": f"{cpus}\n",
                "cpuset.mems.effective": "0\n",
                "cgroup.procs": "",
                "cgroup.threads": "",
            },
        )

    def add_group(
        self,
        name: str,
        *,
        cpus: str = "3",
        cpu_max: str = "1000 100000",
        usage_us: int = 0,
        threads: str = "",
        psi: str = PSI_IDLE,
    ) -> None:
        _write(
            self.root / name,
            {
                "cgroup.controllers": "cpuset cpu memory\n",
                "cgroup.subtree_control": "",
                "cpu.stat": f"usage_usec {usage_us}\nuser_usec {usage_us}\nsystem_usec 0\nnr_periods 0\n"
                "nr_throttled 0\nthrottled_usec 0\n",
                "cpu.max": f"{cpu_max}\n",
                "cpu.weight": "1\n",
                "cpu.pressure": psi,
                "cpuset.cpus": f"{cpus}\n",
                "cpuset.cpus.effective": f"{cpus}\n",
                "cpuset.mems": "\n",
                "memory.max": "max\n",
                "memory.high": "max\n",
                "memory.low": "0\n",
                "cgroup.procs": threads,
                "cgroup.threads": threads,
            },
        )

    def set_usage(self, group: str, usec: int) -> None:
        (self.root / group / "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec {usec}\nsystem_usec 0\n")


class FakeProc:
    """``<root>/pressure/*``, ``<root>/<tid>/schedstat`` and ``<root>/<pid>/task/<tid>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        _write(root / "pressure", {"cpu": PSI_IDLE, "memory": PSI_IDLE, "io": PSI_IDLE})
        _write(root / "sys" / "kernel", {"task_delayacct": "0\n"})

    def task(
        self, pid: int, tid: int | None = None, *, run_ns: int = 0, wait_ns: int = 0, slices: int = 0
    ) -> None:
        tid = pid if tid is None else tid
        text = f"{run_ns} {wait_ns} {slices}\n"
        _write(self.root / str(pid) / "task" / str(tid), {"schedstat": text})
        _write(self.root / str(tid), {"schedstat": text})

