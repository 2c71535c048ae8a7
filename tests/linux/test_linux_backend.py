"""LinuxBackend: per-agent actuators, dry-run on this real host, revoke, and safe fallback."""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from linux_fakes import FakeProc, FakeV1, StepClock
from structlog.testing import capture_logs

from sol.actuators.base import WriteError
from sol.actuators.file import FileKnob
from sol.actuators.restorers import default_restorers
from sol.backend import Backend
from sol.config import LinuxConfig, LinuxCpuConfig
from sol.linux import LinuxBackend
from sol.linux.gate import Gate, OwnerWriter
from sol.runtime.base import AgentSpec
from sol.runtime.virtual import VirtualExecutor
from sol.safety.journal import UndoJournal

HARVEST = "sol-harvest"
ROOT = Path(__file__).resolve().parents[2]


def fake_backend(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, journal: UndoJournal | None, clock: Any
) -> LinuxBackend:
    linux = LinuxConfig(cgroup_root=v1.root, proc_root=proc.root, sys_root=fake_sys)
    return LinuxBackend(linux, journal=journal, clock=clock, facilities=("cpu",))


def test_on_this_host_it_reads_real_sensors_and_dry_run_writes_nothing() -> None:
    backend = LinuxBackend(LinuxConfig(cpu=LinuxCpuConfig(harvest_cgroup="sol_test_never_created")))
    try:
        assert isinstance(backend, Backend) and backend.name == "linux"
        if backend.sensors.cpu is None:
            pytest.skip(f"no CPU facility here: {backend.features}")
        cpu = backend.sensors.cpu
        assert cpu.total_cores() == os.cpu_count()
        assert cpu.usage("primary").cores >= 0.0
        assert 0.0 <= cpu.pressure("primary").some_avg10 <= 1.0
        assert cpu.run_queue_delay("primary").total_s > 0.0
        act = backend.actuators_for("example", dry_run=True)
        assert act.tc is not None and act.cgroups is not None
        with capture_logs() as logs:
            act.cpu.set_harvest_cores(1)
        assert [e["kind"] for e in logs if e["event"] == "actuation.dry_run"] == ["cgroup.create"]
        assert not Path("/sys/fs/cgroup/cpu/sol_test_never_created").exists()
        assert backend.ground_truth() == {}
        backend.advance(123.0)
    finally:
        backend.close()


def test_a_facility_the_host_lacks_is_none_with_the_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with capture_logs() as logs:
        backend = LinuxBackend(LinuxConfig(cgroup_root=empty, proc_root=empty, sys_root=empty))
    assert backend.sensors.cpu is None and backend.actuators_for("a", dry_run=True).cpu is None
    reasons = {
        e["feature"]: e["detail"] for e in logs if e["event"] == "linux.feature" and not e["supported"]
    }
    assert "no cgroup hierarchy" in reasons["cgroup"] and "cpu" in reasons


def test_writes_without_a_journal_are_refused_unless_dry_run(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock
) -> None:
    backend = fake_backend(v1, proc, fake_sys, None, clock)
    with pytest.raises(ValueError, match="only run in dry-run"):
        backend.actuators_for("harvester", dry_run=False)
    assert backend.actuators_for("harvester", dry_run=True).cpu is not None


def test_undo_records_carry_the_agent_name_and_restore_is_per_agent(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, journal: UndoJournal
) -> None:
    v1.add_group(HARVEST)
    v1.add_group("other")
    backend = fake_backend(v1, proc, fake_sys, journal, clock)
    a, b = backend.actuators_for("a", dry_run=False), backend.actuators_for("b", dry_run=False)
    a.cpu.set_harvest_cores(2)
    from sol.actuators.cgroup import CPU_WEIGHT

    b.cgroups.set(CPU_WEIGHT, "other", 200)
    assert {r.owner for r in journal.open_records()} == {"a", "b"}
    report = journal.restore(default_restorers(), owner="a")
    assert report.ok and {r.owner for r in journal.open_records()} == {"b"}
    assert (v1.root / "cpu" / "other" / "cpu.shares").read_text().strip() == "2048"
    assert (v1.root / "cpuset" / HARVEST / "cpuset.cpus").read_text().strip() == "3"


class SlowKnob(FileKnob):
    """A knob whose write blocks until released: a write stuck in the kernel."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, raw: str) -> None:
        self.entered.set()
        self.release.wait(10)
        super().write(raw)


def test_revoke_waits_for_a_write_in_flight_then_refuses_every_later_one(
    tmp_path: Path, journal: UndoJournal
) -> None:
    knob_path = tmp_path / "cpu.shares"
    knob_path.write_text("1024\n")
    gate = Gate()
    writer = OwnerWriter(gate=gate, journal=journal, owner="hung")
    knob = SlowKnob(knob_path)
    worker = threading.Thread(target=writer.write, args=(knob, "2048"))
    worker.start()
    assert knob.entered.wait(5)
    backend = LinuxBackend.__new__(LinuxBackend)  # only the gate machinery is exercised
    backend._gates, backend._gates_lock, backend.log = {"hung": gate}, threading.Lock(), _NullLog()
    revoker = threading.Thread(target=backend.revoke, args=("hung",))
    revoker.start()
    time.sleep(0.1)
    assert revoker.is_alive(), "revoke must wait for the write inside the kernel"
    knob.release.set()
    worker.join(5)
    revoker.join(5)
    assert knob_path.read_text() == "2048"  # landed before the revoke returned...
    assert journal.restore(default_restorers(), owner="hung").ok  # ...so the restore covers it
    assert knob_path.read_text() == "1024\n"
    with pytest.raises(WriteError) as info:
        writer.write(FileKnob(knob_path), "4096")
    assert info.value.reason == "revoked" and knob_path.read_text() == "1024\n"


class _NullLog:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Any]:
    """Mark files immutable (ext4 ``chattr +i``): even root's writes fail with EPERM."""
    marked: list[Path] = []

    def set_flag(path: Path, on: bool) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            buf = bytearray(struct.pack("l", 0))
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
            flags = struct.unpack("l", buf)[0]
            flags = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", flags))
        finally:
            os.close(fd)

    def mark(path: Path) -> None:
        try:
            set_flag(path, True)
        except OSError as exc:
            pytest.skip(f"cannot make {path} immutable here: {exc}")
        marked.append(path)

    yield mark
    for path in marked:
        set_flag(path, False)


class ProxyClock:
    def __init__(self) -> None:
        self.target: Any = StepClock()

    def now(self) -> float:
        return float(self.target.now())

    def consume(self, seconds: float) -> None:
        self.target.consume(seconds)


def test_an_agent_whose_writes_fail_with_eperm_falls_back_and_is_quarantined_host_unchanged(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, journal: UndoJournal, immutable: Any
) -> None:
    from sol.agents.example_ewma import ExampleEwmaAgent, Params

    v1.add_group(HARVEST)
    knob = v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us"  # every grant lifts the quota
    immutable(knob)
    clock = ProxyClock()
    backend = fake_backend(v1, proc, fake_sys, journal, clock)
    executor = VirtualExecutor(
        [AgentSpec(ExampleEwmaAgent(), None, Params())],
        backend=backend,
        log=structlog.get_logger("test"),
        journal=journal,
        restorers=default_restorers(),
    )
    clock.target = executor.vclock
    with capture_logs() as logs:
        executor.run(120.0)
    runner = executor.runners[0]
    failures = [e for e in logs if e["event"] == "actuation.failed"]
    assert failures and all(e["errno"] == "EPERM" for e in failures)
    assert runner.state in ("quarantined", "stopped")
    assert any(e["event"] == "linux.revoked" for e in logs)
    assert knob.read_text().strip() == "1000"
    # The restore could not write the immutable file either: its before-image stays open
    # for the next start (or `sol restore`) rather than being dropped.
    assert [r.before.strip() for r in journal.open_records() if r.target == str(knob)] == ["1000"]


def test_eperm_erofs_and_enoent_of_real_files_are_write_errors_with_their_errno(
    tmp_path: Path, journal: UndoJournal, immutable: Any
) -> None:
    writer = OwnerWriter(gate=Gate(), journal=journal, owner="t")
    locked = tmp_path / "locked"
    locked.write_text("1\n")
    immutable(locked)
    with pytest.raises(WriteError) as info:
        writer.write(FileKnob(locked), "2")
    assert info.value.errno_name == "EPERM"
    with pytest.raises(WriteError) as info:
        writer.write(FileKnob(tmp_path / "vanished"), "2")
    assert info.value.errno_name == "ENOENT"
    ro = tmp_path / "ro"
    ro.mkdir()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"sol-test", str(ro).encode(), b"tmpfs", 0, b"size=64k") != 0:
        pytest.skip(f"cannot mount a tmpfs here: {os.strerror(ctypes.get_errno())}")
    try:
        (ro / "cpu.weight").write_text("100\n")
        ms_remount, ms_rdonly = 32, 1
        assert libc.mount(b"sol-test", str(ro).encode(), b"tmpfs", ms_remount | ms_rdonly, None) == 0
        with pytest.raises(WriteError) as info:
            writer.write(FileKnob(ro / "cpu.weight"), "200")
        assert info.value.errno_name == "EROFS" and "read-only" in str(info.value)
    finally:
        libc.umount2(str(ro).encode(), 2)  # MNT_DETACH


def test_sol_run_linux_dry_run_on_this_host(tmp_path: Path) -> None:
    config = tmp_path / "sol.toml"
    config.write_text(
        f'backend = "linux"\n[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        '[linux.cpu]\nharvest_cgroup = "sol_test_dry_run_never_created"\n'
        "[agents.noop]\nenabled = true\n[agents.example_ewma]\nenabled = true\n"
    )
    sol = Path(sys.executable).with_name("sol")
    out = subprocess.run(
        [str(sol), "run", "--config", str(config), "--dry-run", "--duration", "2.5s", "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "Traceback" not in text
    assert '"linux.backend_ready"' in text and '"daemon.stopped"' in text
    assert not Path("/sys/fs/cgroup/cpu/sol_test_dry_run_never_created").exists()


def test_starting_the_daemon_imports_no_heavy_library_until_an_agent_needs_it() -> None:
    # Every daemon start and restart pays its imports (four times over under the unit's
    # CPUQuota=25%): pyroute2 alone costs ~0.45 s and ~23 MiB, river.stats ~0.3 s (it loads
    # SciPy), numpy ~0.15 s and ~15 MiB. No built-in agent binds tc, moves pages or scans
    # page-cache residency, and cpu_harvest's learners are written without them.
    code = textwrap.dedent(
        """
        import sys
        from sol.config import LinuxConfig, LinuxCpuConfig
        from sol.linux import LinuxBackend
        from sol.registry import Registry
        import sol.cli, sol.daemon, sol.control, sol.metrics_http
        backend = LinuxBackend(LinuxConfig(cpu=LinuxCpuConfig(harvest_cgroup="sol_test_never_created")))
        act = backend.actuators_for("example", dry_run=True)
        registry = Registry(plugins=False)
        agents = [registry.get(name)() for name in registry.names()]
        heavy = sorted(
            {m.split(".")[0] for m in sys.modules} & {"pyroute2", "numpy", "river", "scipy", "sklearn"}
        )
        print(act.tc is not None, next(f.supported for f in backend.features if f.name == "tc"), heavy)
        backend.close()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # tc is still reported usable (pyroute2 is installed) and its actuators are bound
    assert proc.stdout.strip().splitlines()[-1] == "True True []", proc.stdout + proc.stderr


def test_sol_restore_in_a_fresh_process_puts_back_every_kind_this_backend_wrote(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, tmp_path: Path
) -> None:
    from sol.actuators.pagecache import PageCacheKnob, advise, residency

    v1.add_group(HARVEST)
    blob = tmp_path / "blob"
    with open(blob, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    advise(blob, os.POSIX_FADV_DONTNEED)
    path = tmp_path / "crash" / "undo.journal"
    journal = UndoJournal.open(path, fsync=True)
    backend = fake_backend(v1, proc, fake_sys, journal, StepClock())
    act = backend.actuators_for("cpu_harvest", dry_run=False)
    act.cpu.set_harvest_cores(3)
    act.writer.write(PageCacheKnob(blob), "willneed")
    journal.close()  # ... as if the daemon were SIGKILLed here
    assert (v1.root / "cpuset" / HARVEST / "cpuset.cpus").read_text().strip() == "1-3"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from sol.safety.journal import restore_command; "
            "from sol.actuators.restorers import TargetScope as S; P = pathlib.Path; "
            "scope = S(cgroup_root=P(sys.argv[2]), sys_root=P(sys.argv[3]), cache_dir=P(sys.argv[4])); "
            "sys.exit(restore_command(P(sys.argv[1]), out=sys.stdout, scope=scope))",
            str(path),
            str(v1.root),
            str(fake_sys),
            str(blob.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restored 3 before-image(s), 0 failed" in out.stdout
    assert (v1.root / "cpuset" / HARVEST / "cpuset.cpus").read_text().strip() == "3"
    assert (v1.root / "cpu" / HARVEST / "cpu.cfs_quota_us").read_text().strip() == "1000"
    if residency(blob).resident_bytes:
        time.sleep(0.05)
    assert residency(blob).resident_bytes == 0  # pre-warmed by sol, dropped again on restore
