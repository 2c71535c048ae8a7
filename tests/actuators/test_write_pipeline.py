"""The host write gate: guard -> undo record -> write -> read-back; dry-run; errors (DESIGN §5)."""

from __future__ import annotations

import doctest
import errno
import os
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from structlog.testing import capture_logs

import sol.actuators.base as base_module
import sol.actuators.file as file_module
import sol.actuators.restorers as restorers_module
from sol.actuators.base import HostWriter, Knob, WriteError
from sol.actuators.file import FileKnob
from sol.safety.guard import ActuationGuard
from sol.safety.journal import UndoJournal


@pytest.mark.parametrize("module", [base_module, file_module, restorers_module], ids=lambda m: m.__name__)
def test_module_examples_run(module: ModuleType) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[UndoJournal]:
    with UndoJournal.open(tmp_path / "journal" / "undo.journal", fsync=False) as j:
        yield j


@pytest.fixture
def knob_path(tmp_path: Path) -> Path:
    path = tmp_path / "cpu.shares"
    path.write_text("1024\n")
    return path


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


class FakeKnob:
    """A knob in memory: the kernel's reformatting and errors, scripted."""

    kind = "file"

    def __init__(
        self,
        value: str = "100",
        *,
        rewrite: dict[str, str] | None = None,
        write_error: int | None = None,
        read_errors_after_write: int | None = None,
    ) -> None:
        self.target = "/fake/knob"
        self.value = value
        self.rewrite = rewrite or {}
        self.write_error = write_error
        self.read_errors_after_write = read_errors_after_write
        self.writes: list[str] = []

    def read(self) -> str:
        if self.writes and self.read_errors_after_write is not None:
            raise OSError(self.read_errors_after_write, os.strerror(self.read_errors_after_write))
        return self.value

    def write(self, raw: str) -> None:
        if self.write_error is not None:
            raise OSError(self.write_error, os.strerror(self.write_error), self.target)
        self.writes.append(raw)
        self.value = self.rewrite.get(raw, raw)

    def matches(self, written: str, readback: str) -> bool:
        return written.strip() == readback.strip()


def test_knobs_satisfy_the_protocol(knob_path: Path) -> None:
    assert isinstance(FileKnob(knob_path), Knob)
    assert isinstance(FakeKnob(), Knob)


def test_a_write_is_journaled_first_then_made_and_verified(journal: UndoJournal, knob_path: Path) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    with capture_logs() as logs:
        result = writer.write(FileKnob(knob_path), "2048")
    assert knob_path.read_text() == "2048"
    assert (result.before, result.written, result.readback, result.applied, result.dry_run) == (
        "1024\n",
        "2048",
        "2048",
        True,
        False,
    )
    [record] = journal.open_records("agent")
    assert (record.id, record.kind, record.target, record.before) == (
        result.record_id,
        "file",
        str(knob_path),
        "1024\n",
    )
    [event] = events(logs, "actuation.write")
    assert event["target"] == str(knob_path) and event["before"] == "1024\n" and event["written"] == "2048"
    assert (writer.writes, writer.failures) == (1, 0)


def test_repeated_writes_keep_the_first_before_image_and_restore_returns_to_it(
    journal: UndoJournal, knob_path: Path
) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    for value in ("1", "2", "3"):
        writer.write(FileKnob(knob_path), value)
    assert [r.before for r in journal.open_records()] == ["1024\n"]
    assert writer.restore().ok
    assert knob_path.read_text() == "1024\n"
    assert journal.open_records() == []


@pytest.mark.parametrize("with_journal", [True, False], ids=["journal", "no-journal"])
def test_dry_run_changes_nothing_and_logs_the_intended_write(
    journal: UndoJournal, knob_path: Path, with_journal: bool
) -> None:
    writer = HostWriter(journal=journal if with_journal else None, owner="agent", dry_run=True)
    guard = ActuationGuard(lo=2, hi=4096, max_step=None, min_interval=10.0)
    with capture_logs() as logs:
        result = writer.write(FileKnob(knob_path), "9999", guard=guard, now=1.0)
        again = writer.write(FileKnob(knob_path), "3000", guard=guard, now=2.0)
    assert knob_path.read_text() == "1024\n"
    assert journal.open_records() == []
    assert (result.applied, result.dry_run, result.written) == (False, True, "4096")
    assert again.reason is not None and again.reason.startswith("rate"), "dry-run makes the real decisions"
    [event] = events(logs, "actuation.dry_run")
    assert (event["target"], event["before"], event["requested"], event["would_write"]) == (
        str(knob_path),
        "1024\n",
        "9999",
        "4096",
    )
    assert not events(logs, "actuation.write")
    assert (writer.writes, writer.dry_runs) == (0, 1)


def test_a_real_writer_needs_a_journal() -> None:
    with pytest.raises(ValueError, match="needs an undo journal"):
        HostWriter(journal=None, owner="agent")
    HostWriter(journal=None, owner="agent", simulated=True)


def test_writing_the_current_value_writes_nothing(journal: UndoJournal, knob_path: Path) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    mtime = knob_path.stat().st_mtime_ns
    result = writer.write(FileKnob(knob_path), " 1024 ")
    assert (result.applied, result.written, result.reason) == (True, None, "unchanged")
    assert knob_path.stat().st_mtime_ns == mtime and journal.open_records() == []
    assert (writer.writes, writer.unchanged) == (0, 1)


@pytest.mark.parametrize(
    ("requested", "guard", "file_after", "applied", "reason"),
    [
        ("1500", ActuationGuard(2, 4096, 1024, None), "1500", True, None),
        ("8192", ActuationGuard(2, 4096, None, None), "4096", True, "above hi 4096"),
        ("1536.0", ActuationGuard(2, 4096, 256, None), "1280", True, "step limited"),
        ("1024.5", ActuationGuard(2, 4096, 0.25, None), "1024.25", True, "step limited"),
        ("nan", ActuationGuard(2, 4096, None, None), "1024\n", False, "non-finite"),
        ("0", ActuationGuard(1024, 4096, None, None), "1024\n", True, "unchanged (below lo 1024"),
    ],
    ids=[
        "allowed",
        "clamped-to-hi",
        "step-limited-written-as-integer",
        "fractional",
        "nan-rejected",
        "clamped-to-current",
    ],
)
def test_the_guard_decides_what_is_written(
    journal: UndoJournal,
    knob_path: Path,
    requested: str,
    guard: ActuationGuard,
    file_after: str,
    applied: bool,
    reason: str | None,
) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    with capture_logs() as logs:
        result = writer.write(FileKnob(knob_path), requested, guard=guard, now=5.0)
    assert knob_path.read_text() == file_after
    assert result.applied is applied and result.requested == requested
    if reason is None:
        assert result.reason is None
    else:
        assert result.reason is not None and reason in result.reason
    wrote = file_after != "1024\n"
    assert bool(journal.open_records()) is wrote, "a before-image only for a write made"
    assert (guard.last_applied_at == 5.0) is wrote
    if not applied:
        assert events(logs, "actuation.rejected") and writer.rejected == 1


def test_a_rate_limited_write_is_rejected_not_raised(journal: UndoJournal, knob_path: Path) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    guard = ActuationGuard(None, None, None, min_interval=1.0)
    writer.write(FileKnob(knob_path), "2000", guard=guard, now=10.0)
    result = writer.write(FileKnob(knob_path), "3000", guard=guard, now=10.5)
    assert (result.applied, result.written) == (False, None) and "rate" in (result.reason or "")
    assert knob_path.read_text() == "2000"
    assert writer.write(FileKnob(knob_path), "3000", guard=guard, now=11.0).applied


def test_a_non_numeric_value_for_a_guarded_knob_is_an_error(journal: UndoJournal, knob_path: Path) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    with pytest.raises(WriteError, match="not a number") as info:
        writer.write(FileKnob(knob_path), "lots", guard=ActuationGuard(0, 10, None, None))
    assert info.value.reason == "not-numeric" and knob_path.read_text() == "1024\n"


@pytest.mark.parametrize(
    ("knob", "written", "readback"),
    [
        (FakeKnob("1024", rewrite={"1": "2"}), "1", "2"),
        (FakeKnob("0-3", rewrite={"0,1": "0-1"}), "0,1", "0-1"),
        (FakeKnob("on", rewrite={"off": "on"}), "off", "on"),
    ],
    ids=["kernel-clamps-shares", "cpulist-reformatted-without-normaliser", "write-silently-ignored"],
)
def test_a_value_that_does_not_read_back_is_a_write_error(
    journal: UndoJournal, knob: FakeKnob, written: str, readback: str
) -> None:
    writer = HostWriter(journal=journal, owner="agent")
    with capture_logs() as logs, pytest.raises(WriteError, match=f"reads back '{readback}'") as info:
        writer.write(knob, written)
    error = info.value
    assert (error.reason, error.target, error.errno_name) == ("readback-mismatch", knob.target, None)
    assert knob.writes == [written]
    assert journal.open_records(), "the before-image stays open so restore can undo it"
    assert [e["reason"] for e in events(logs, "actuation.failed")] == ["readback-mismatch"]
    assert writer.failures == 1


def test_a_normaliser_accepts_the_kernels_own_format(journal: UndoJournal, tmp_path: Path) -> None:
    def cpulist(text: str) -> str:
        cpus: set[int] = set()
        for part in text.strip().split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        return ",".join(map(str, sorted(cpus)))

    path = tmp_path / "cpuset.cpus"
    path.write_text("0-3\n")
    knob = FileKnob(path, normalise=cpulist)
    assert knob.matches("0,1,2", "0-2\n") and not knob.matches("0,1", "0-2")
    assert HostWriter(journal=journal, owner="agent").write(knob, "0,1").applied


def _missing(tmp_path: Path) -> FileKnob:
    return FileKnob(tmp_path / "no-such-knob")


@pytest.mark.parametrize(
    ("make_knob", "reason", "errno_name", "hint"),
    [
        (lambda tmp: FakeKnob(write_error=errno.EPERM), "write-failed", "EPERM", "needs root"),
        (lambda tmp: FakeKnob(write_error=errno.EACCES), "write-failed", "EACCES", "needs root"),
        (lambda tmp: FakeKnob(write_error=errno.EROFS), "write-failed", "EROFS", "read-only"),
        (lambda tmp: FakeKnob(write_error=errno.EBUSY), "write-failed", "EBUSY", "busy"),
        (lambda tmp: FakeKnob(write_error=errno.EINVAL), "write-failed", "EINVAL", "rejected the value"),
        (lambda tmp: FakeKnob(read_errors_after_write=errno.EIO), "readback-failed", "EIO", "read back"),
        (_missing, "read-failed", "ENOENT", "does not exist"),
        (lambda tmp: FileKnob(tmp), "read-failed", "EISDIR", "Is a directory"),
        (lambda tmp: FileKnob(Path("/proc/version")), "write-failed", "EIO", "cannot write"),
    ],
    ids=[
        "eperm",
        "eacces",
        "erofs",
        "ebusy",
        "einval",
        "readback-eio",
        "enoent-real",
        "eisdir-real",
        "eio-real-proc",
    ],
)
def test_os_errors_become_write_errors_naming_the_errno_and_target(
    journal: UndoJournal,
    tmp_path: Path,
    make_knob: Callable[[Path], FakeKnob | FileKnob],
    reason: str,
    errno_name: str,
    hint: str,
) -> None:
    knob = make_knob(tmp_path)
    writer = HostWriter(journal=journal, owner="agent")
    with capture_logs() as logs, pytest.raises(WriteError) as info:
        writer.write(knob, "7")
    error = info.value
    assert (error.reason, error.errno_name, error.target) == (reason, errno_name, knob.target)
    assert knob.target in str(error) and errno_name in str(error) and hint in str(error)
    assert isinstance(error.__cause__, OSError)
    [event] = events(logs, "actuation.failed")
    assert (event["errno"], event["reason"], event["target"]) == (errno_name, reason, knob.target)
    assert writer.failures == 1
    # a read that fails first records nothing; a failed write leaves its (harmless) before-image
    assert bool(journal.open_records()) is (reason != "read-failed")
    journal.release()


def test_a_knob_file_is_never_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileKnob(tmp_path / "new").write("1")
    assert not (tmp_path / "new").exists()


def test_a_plain_file_holds_exactly_the_new_text(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text("a long old value\n")
    FileKnob(path).write("short")
    assert path.read_text() == "short"
