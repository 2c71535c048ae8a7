"""The crash guarantee, for real (DESIGN §4.8): SIGKILL a writer at a random point, then
``sol restore`` puts every knob back, cgroup v1 files included.

The test makes its own cgroup ``/sys/fs/cgroup/cpu/sol_test_<uuid8>`` (no task is ever moved
into it) and removes it afterwards; it never touches a cgroup it did not create.
"""

from __future__ import annotations

import io
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sol.actuators.base import HostWriter, WriteError
from sol.actuators.file import FileKnob
from sol.safety.journal import UndoJournal, restore_command

CHILD = Path(__file__).with_name("_journal_child.py")
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
ITERATIONS = int(os.environ.get("SOL_CRASH_ITERATIONS", "25"))
SEED = int(os.environ.get("SOL_CRASH_SEED", "20240611"))

pytestmark = pytest.mark.linux


class _Anywhere:
    """A restore scope that refuses nothing: these tests' knobs are plain files in a temp dir."""

    def refuses(self, kind: str, target: str) -> str | None:
        return None


ANYWHERE = _Anywhere()


def _cgroup_v1_cpu_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a test cgroup"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError as exc:
        return f"cannot read /proc/self/mounts: {exc}"
    for mount in mounts:
        fields = mount.split()
        if len(fields) >= 4 and fields[1] == str(CPU_ROOT) and fields[2] == "cgroup":
            options = fields[3].split(",")
            if "cpu" not in options:
                return f"{CPU_ROOT} is a cgroup v1 mount without the cpu controller"
            if "ro" in options:
                return f"{CPU_ROOT} is mounted read-only"
            return None
    return f"{CPU_ROOT} is not a cgroup v1 hierarchy on this host"


@pytest.fixture
def cgroup() -> Iterator[Path]:
    reason = _cgroup_v1_cpu_skip_reason()
    if reason is not None:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    path = CPU_ROOT / f"sol_test_{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:
        print(f"skipping: cannot create {path}: {exc}")
        pytest.skip(f"cannot create {path}: {exc}")
    try:
        yield path
    finally:
        # Only the directory we made; it never has tasks, so rmdir cannot fail on EBUSY.
        path.rmdir()


def _spawn(
    mode: str, journal: Path, knobs: list[Path], seed: int, compact_after: int
) -> subprocess.Popen[str]:
    args = [sys.executable, str(CHILD), mode, "--journal", str(journal), "--seed", str(seed)]
    args += ["--compact-after", str(compact_after)]
    for knob in knobs:
        args += ["--knob", str(knob)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"writer child did not start: {line!r}\n{err}")


def test_sigkill_at_a_random_point_then_restore_returns_every_knob(cgroup: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    shares, quota = cgroup / "cpu.shares", cgroup / "cpu.cfs_quota_us"
    plain = tmp_path / "plain.state"
    plain.write_text("")
    knobs = [shares, quota, plain]
    journal = tmp_path / "state" / "undo.journal"
    kills_after_a_write = 0
    started = time.monotonic()
    for iteration in range(ITERATIONS):
        # Fresh before-images each round, set directly: this is the state to come back to.
        before = {
            shares: str(rng.randint(2, 262144)),
            quota: rng.choice(["-1", str(rng.randint(1000, 1_000_000))]),
            plain: f"before {iteration}\n",
        }
        for path, value in before.items():
            path.write_text(value)
        mode = "cycle" if iteration % 2 else "loop"
        delay = rng.uniform(0.0, 0.060)
        context = f"iteration {iteration}, mode {mode}, delay {delay * 1000:.1f} ms, SOL_CRASH_SEED={SEED}"

        proc = _spawn(mode, journal, knobs, seed=rng.getrandbits(32), compact_after=3)
        try:
            _wait_ready(proc)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"{context}: child exited on its own:\n{err}"
        if any(path.read_text().strip() != value.strip() for path, value in before.items()):
            kills_after_a_write += 1

        out = io.StringIO()
        assert restore_command(journal, out=out, scope=ANYWHERE) == 0, f"{context}:\n{out.getvalue()}"
        after = {path: path.read_text().strip() for path in knobs}
        expected = {path: value.strip() for path, value in before.items()}
        assert after == expected, f"{context}:\n{out.getvalue()}"
        again = io.StringIO()
        assert restore_command(journal, out=again, scope=ANYWHERE) == 0, f"{context}:\n{again.getvalue()}"
        assert "nothing to restore" in again.getvalue(), context
    # The random delays must actually have interrupted writers that had changed the host.
    assert kills_after_a_write >= ITERATIONS // 2, f"only {kills_after_a_write} kills landed after a write"
    assert time.monotonic() - started < 30


def test_the_kernel_rewriting_a_value_is_a_readback_mismatch_and_restore_undoes_it(
    cgroup: Path, tmp_path: Path
) -> None:
    shares = cgroup / "cpu.shares"
    shares.write_text("1024")
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = HostWriter(journal=journal, owner="agent")
        # cgroup v1 raises cpu.shares below MIN_SHARES (2) to 2
        with pytest.raises(WriteError, match="reads back '2'") as info:
            writer.write(FileKnob(shares), "1")
        assert info.value.reason == "readback-mismatch"
        assert writer.restore().ok
    assert shares.read_text().strip() == "1024"


def test_the_kernel_refusing_a_value_is_einval_and_nothing_changes(cgroup: Path, tmp_path: Path) -> None:
    quota = cgroup / "cpu.cfs_quota_us"
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        writer = HostWriter(journal=journal, owner="agent")
        with pytest.raises(WriteError, match="EINVAL") as info:
            writer.write(FileKnob(quota), "100")  # below the kernel's 1 ms minimum
        assert (info.value.reason, info.value.errno_name) == ("write-failed", "EINVAL")
        assert writer.restore().ok
    assert quota.read_text().strip() == "-1"
