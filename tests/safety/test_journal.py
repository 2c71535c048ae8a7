"""The undo journal: durability, restore, compaction, corruption, locking (DESIGN §4.8)."""

from __future__ import annotations

import contextlib
import doctest
import errno
import io
import json
import os
import resource
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import sol.safety.journal as journal_module
from sol.actuators.base import HostWriter, WriteError
from sol.actuators.file import FileKnob
from sol.actuators.restorers import RestoreMismatch, Restorer, default_restorers
from sol.safety.journal import (
    JournalError,
    JournalFormatError,
    JournalLocked,
    UndoJournal,
    restore_command,
)

CHILD = Path(__file__).with_name("_journal_child.py")
HEADER = "sol-undo-journal v1\n"


class _Anywhere:
    """A restore scope that refuses nothing: these tests' knobs are plain files in a temp dir."""

    def refuses(self, kind: str, target: str) -> str | None:
        return None


ANYWHERE = _Anywhere()


def line(payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"))
    return f"{zlib.crc32(body.encode()):08x} {body}\n"


def opened(rid: int, target: str, before: Any = "x", owner: str = "a", kind: str = "file") -> str:
    return line(
        {"op": "open", "id": rid, "owner": owner, "kind": kind, "target": target, "before": before, "t": 1.0}
    )


def closed(rid: int, how: str = "restored") -> str:
    return line({"op": "close", "id": rid, "how": how})


@pytest.fixture
def jpath(tmp_path: Path) -> Path:
    return tmp_path / "state" / "undo.journal"


@pytest.fixture
def journal(jpath: Path) -> Iterator[UndoJournal]:
    with UndoJournal.open(jpath, fsync=False) as j:
        yield j


def recording_restorers(calls: list[tuple[str, Any]]) -> dict[str, Restorer]:
    def restore(target: str, before: Any) -> None:
        calls.append((target, before))

    return {"file": restore, "other": restore}


def test_module_examples_run() -> None:
    assert doctest.testmod(journal_module).failed == 0


def test_round_trip_keeps_every_field(jpath: Path) -> None:
    befores: list[Any] = ["1024\n", 7, 2.5, None, True, ["a", 1], {"k": {"n": [1, 2]}}]
    with UndoJournal.open(jpath) as j:
        ids = [j.record("agent", "file", f"/knob/{i}", b) for i, b in enumerate(befores)]
        written = j.open_records()
    with UndoJournal.open(jpath) as j:
        again = j.open_records()
        assert j.problems == []
    assert again == written
    assert [r.id for r in again] == ids
    assert [r.before for r in again] == befores
    assert all(r.owner == "agent" and r.kind == "file" for r in again)


def test_new_journal_has_private_modes(jpath: Path) -> None:
    with UndoJournal.open(jpath):
        pass
    assert jpath.stat().st_mode & 0o777 == 0o600
    assert jpath.parent.stat().st_mode & 0o777 == 0o700
    assert jpath.read_text() == HEADER


def test_record_is_on_disk_when_record_returns(journal: UndoJournal, jpath: Path) -> None:
    rid = journal.record("a", "file", "/k", "old")
    last = jpath.read_bytes().splitlines()[-1]
    crc, body = last.split(b" ", 1)
    assert int(crc, 16) == zlib.crc32(body)
    assert json.loads(body)["id"] == rid


def test_record_survives_sigkill_right_after_it_returns(tmp_path: Path) -> None:
    knob = tmp_path / "knob"
    knob.write_text("before\n")
    jpath = tmp_path / "undo.journal"
    proc = subprocess.run(
        [sys.executable, str(CHILD), "record-then-die", "--journal", str(jpath), "--knob", str(knob)],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with UndoJournal.open(jpath, fsync=False) as j:
        assert [(r.target, r.before) for r in j.open_records()] == [(str(knob), "before\n")]


def test_second_record_of_a_target_keeps_the_oldest_before_image(journal: UndoJournal, jpath: Path) -> None:
    first = journal.record("a", "file", "/k", "oldest")
    size = jpath.stat().st_size
    assert journal.record("a", "file", "/k", "newer") == first
    assert jpath.stat().st_size == size, "the fast path must not write"
    assert journal.record("a", "other", "/k", "other kind") != first
    assert [r.before for r in journal.open_records()] == ["oldest", "other kind"]


def test_restore_goes_newest_first_and_is_idempotent(jpath: Path) -> None:
    calls: list[tuple[str, Any]] = []
    with UndoJournal.open(jpath, fsync=False) as j:
        for i in range(4):
            j.record("a", "file", f"/k{i}", i)
        report = j.restore(recording_restorers(calls), identities={})
        assert calls == [("/k3", 3), ("/k2", 2), ("/k1", 1), ("/k0", 0)]
        assert report.ok and [r.target for r in report.restored] == ["/k3", "/k2", "/k1", "/k0"]
        assert report.summary() == "restored 4 before-image(s), 0 failed"
        assert not j.restore(recording_restorers(calls), identities={}).restored
    with UndoJournal.open(jpath, fsync=False) as j:
        assert j.open_records() == []
        assert not j.restore(recording_restorers(calls), identities={}).restored
    assert len(calls) == 4


def test_restore_only_touches_the_given_owner(journal: UndoJournal) -> None:
    calls: list[tuple[str, Any]] = []
    journal.record("a", "file", "/a", 1)
    journal.record("b", "file", "/b", 2)
    journal.restore(recording_restorers(calls), owner="b", identities={})
    assert calls == [("/b", 2)]
    assert [r.owner for r in journal.open_records()] == ["a"]


def _raise_eperm(target: str, before: Any) -> None:
    raise PermissionError(errno.EPERM, "Operation not permitted", target)


def _raise_mismatch(target: str, before: Any) -> None:
    raise RestoreMismatch(f"{target} reads back 2")


@pytest.mark.parametrize(
    ("kind", "restorer", "expected"),
    [
        ("gpu", None, "no restorer for kind 'gpu' (known: file, other)"),
        ("file", _raise_eperm, "EPERM"),
        ("file", _raise_mismatch, "RestoreMismatch"),
    ],
    ids=["unknown-kind", "oserror", "readback-mismatch"],
)
def test_a_failed_restore_is_reported_keeps_its_record_and_the_rest_continue(
    journal: UndoJournal,
    kind: str,
    restorer: Callable[[str, Any], None] | None,
    expected: str,
) -> None:
    calls: list[tuple[str, Any]] = []
    journal.record("a", "file", "/first", 1)
    bad = journal.record("a", kind, "/bad", 2)
    journal.record("a", "file", "/last", 3)
    restorers = recording_restorers(calls)
    if restorer is not None:
        good, bad_restorer = restorers["file"], restorer
        restorers["file"] = lambda target, before: (bad_restorer if target == "/bad" else good)(
            target, before
        )
    with capture_logs() as logs:
        report = journal.restore(restorers, identities={})
    assert calls == [("/last", 3), ("/first", 1)]
    assert [f.record.id for f in report.failed] == [bad]
    assert expected in report.failed[0].error
    assert expected in report.summary() and not report.ok
    assert [r.id for r in journal.open_records()] == [bad]
    assert any(e["event"] == "journal.restore_failed" for e in logs)


def test_release_closes_without_restoring(jpath: Path) -> None:
    calls: list[tuple[str, Any]] = []
    with UndoJournal.open(jpath, fsync=False) as j:
        j.record("a", "file", "/a", 1)
        j.record("b", "file", "/b", 2)
        assert [r.target for r in j.release("a")] == ["/a"]
        assert [r.owner for r in j.open_records()] == ["b"]
        j.release()
    with UndoJournal.open(jpath, fsync=False) as j:
        assert j.open_records() == []
        j.restore(recording_restorers(calls), identities={})
    assert calls == []


def test_a_restored_target_is_recorded_afresh(journal: UndoJournal) -> None:
    first = journal.record("a", "file", "/k", "v1")
    journal.restore(recording_restorers([]), identities={})
    second = journal.record("a", "file", "/k", "v2")
    assert second > first
    assert [r.before for r in journal.open_records()] == ["v2"]


def test_compaction_keeps_open_records_and_ids_and_replaces_the_file_atomically(
    journal: UndoJournal, jpath: Path
) -> None:
    for i in range(6):
        journal.record("a", "file", f"/k{i}", i)
    journal.release("a")
    keep = [journal.record("b", "file", f"/keep{i}", i) for i in range(2)]
    inode = jpath.stat().st_ino
    journal.compact()
    assert jpath.stat().st_ino != inode, "compaction renames a new file over the journal"
    assert jpath.read_text() == HEADER + "".join(
        line(
            {
                "op": "open",
                "id": r.id,
                "owner": "b",
                "kind": "file",
                "target": r.target,
                "before": r.before,
                "t": r.t,
            }
        )
        for r in journal.open_records()
    )
    assert sorted(p.name for p in jpath.parent.iterdir()) == [
        "undo.journal",
        "undo.journal.lock",
        "undo.journal.state",
    ]
    # appends after compaction must land in the new file, not the renamed-away inode
    new = journal.record("b", "file", "/after", "x")
    assert new > max(keep)
    journal.close()
    with UndoJournal.open(jpath, fsync=False) as again:
        assert [r.id for r in again.open_records()] == [*keep, new]


def test_compaction_runs_by_itself_past_the_dead_line_threshold(jpath: Path) -> None:
    with UndoJournal.open(jpath, fsync=False, compact_after=10) as j:
        j.record("a", "file", "/stays", "s")
        for i in range(100):
            j.record("a", "file", "/k", i)
            if i % 2:
                j.restore(recording_restorers([]), owner="a", identities={})
            else:
                j.release()
            j.record("a", "file", "/stays", "s")
        assert len(jpath.read_text().splitlines()) <= 1 + 1 + 10 + 2
    with UndoJournal.open(jpath, fsync=False) as j:
        assert j.problems == []


def test_open_compacts_away_closed_records_and_stale_temp_files(jpath: Path) -> None:
    jpath.parent.mkdir()
    jpath.write_text(HEADER + opened(1, "/a") + opened(2, "/b") + closed(1))
    stale = jpath.with_name(".undo.journal.tmp-99999")
    stale.write_text("half a compaction")
    with UndoJournal.open(jpath, fsync=False) as j:
        assert [r.id for r in j.open_records()] == [2]
    assert jpath.read_text() == HEADER + opened(2, "/b")
    assert not stale.exists()


@pytest.mark.parametrize(
    ("content", "bad_line", "problem"),
    [
        (HEADER + opened(1, "/a") + opened(2, "/b") + '0badc0de {"op":"op', 4, "truncated"),
        (HEADER + opened(1, "/a") + opened(9, "/x").replace("/x", "/y") + opened(2, "/b"), 3, "checksum"),
        (
            HEADER + opened(1, "/a") + "hello, I am not a record\n" + opened(2, "/b"),
            3,
            "not a journal record",
        ),
        (
            HEADER
            + opened(1, "/a")
            + line({"op": "open"}).replace('{"op":"open"}', '{"op":"open"')
            + opened(2, "/b"),
            3,
            "checksum",
        ),
        (
            HEADER + opened(1, "/a") + f"{zlib.crc32(b'{bad json'):08x} {{bad json\n" + opened(2, "/b"),
            3,
            "bad JSON",
        ),
        (HEADER + opened(1, "/a") + closed(42) + opened(2, "/b"), 3, "close for unknown id 42"),
        (HEADER + opened(1, "/a") + line({"op": "frobnicate", "id": 5}) + opened(2, "/b"), 3, "unknown op"),
        (HEADER + opened(1, "/a") + line({"op": "open", "id": 3, "owner": "a"}) + opened(2, "/b"), 3, "kind"),
        (HEADER + opened(1, "/a") + opened(1, "/dup") + opened(2, "/b"), 3, "duplicate"),
    ],
    ids=[
        "torn-tail",
        "bad-crc-middle",
        "garbage-line",
        "truncated-json-bad-crc",
        "bad-json-good-crc",
        "close-for-unknown-id",
        "unknown-op",
        "missing-fields",
        "duplicate-id",
    ],
)
def test_corrupt_records_are_reported_and_skipped_and_valid_ones_kept(
    jpath: Path, content: str, bad_line: int, problem: str
) -> None:
    jpath.parent.mkdir()
    jpath.write_text(content)
    with capture_logs() as logs, UndoJournal.open(jpath, fsync=False) as j:
        assert [(r.id, r.target) for r in j.open_records()] == [(1, "/a"), (2, "/b")]
        assert len(j.problems) == 1
        assert j.problems[0].startswith(f"line {bad_line}:") and problem in j.problems[0]
        new = j.record("a", "file", "/new", "n")
    events = [e for e in logs if e["event"] == "journal.corrupt_record"]
    assert [e["line"] for e in events] == [bad_line] and problem in events[0]["problem"]
    with UndoJournal.open(jpath, fsync=False) as j:
        assert j.problems == [], "the corrupt line was compacted away"
        assert [r.id for r in j.open_records()] == [1, 2, new]


def _block_compaction(jpath: Path) -> Path:
    # A directory where compaction wants its temp file: EISDIR, which root cannot bypass.
    blocker = jpath.with_name(f".{jpath.name}.tmp-{os.getpid()}")
    blocker.mkdir()
    return blocker


def test_a_record_after_a_torn_tail_is_not_glued_to_it_when_compaction_fails(jpath: Path) -> None:
    jpath.parent.mkdir()
    jpath.write_text(HEADER + opened(1, "/a") + '0badc0de {"op":"op')
    blocker = _block_compaction(jpath)
    with capture_logs() as logs, UndoJournal.open(jpath, fsync=False) as j:
        j.record("a", "file", "/b", "b")
    assert [e["event"] for e in logs if e["event"] == "journal.compact_failed"] == ["journal.compact_failed"]
    blocker.rmdir()
    with UndoJournal.open(jpath, fsync=False) as j:
        assert [r.target for r in j.open_records()] == ["/a", "/b"]
        assert len(j.problems) == 1 and j.problems[0].startswith("line 3: ")


def test_a_failed_compaction_leaves_the_journal_whole_and_usable(journal: UndoJournal, jpath: Path) -> None:
    journal.record("a", "file", "/a", 1)
    journal.release()
    before = jpath.read_bytes()
    blocker = _block_compaction(jpath)
    with pytest.raises(JournalError, match=r"cannot compact.*EISDIR"):
        journal.compact()
    assert jpath.read_bytes() == before
    journal.record("a", "file", "/b", 2)
    blocker.rmdir()
    journal.compact()
    assert [r.target for r in journal.open_records()] == ["/b"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("sol-undo-journal v2\n", "format v2; this sol reads v1"),
        ("sol-undo-journal v99\n", "format v99"),
        ('{"some": "json"}\n', "is not a sol undo journal"),
        ("sol-undo-journal\n", "is not a sol undo journal"),
        ("sol-undo-jou", "no complete header line"),
    ],
    ids=["newer-version", "far-newer-version", "other-file", "no-version", "torn-header"],
)
def test_an_unknown_format_is_refused_with_what_to_do_and_left_untouched(
    jpath: Path, header: str, message: str
) -> None:
    jpath.parent.mkdir()
    content = header + opened(1, "/a") if header.endswith("\n") else header
    jpath.write_text(content)
    with pytest.raises(JournalFormatError, match=message) as info:
        UndoJournal.open(jpath, fsync=False)
    assert str(jpath) in str(info.value)
    assert "sol restore" in str(info.value) or "Move it aside" in str(info.value)
    assert jpath.read_text() == content
    # and the lock was released: a fixed journal can be opened by the same process
    jpath.write_text(HEADER)
    UndoJournal.open(jpath, fsync=False).close()


def test_an_empty_file_is_a_fresh_journal(jpath: Path) -> None:
    jpath.parent.mkdir()
    jpath.touch()
    with UndoJournal.open(jpath, fsync=False) as j:
        j.record("a", "file", "/a", 1)
    assert jpath.read_text().startswith(HEADER)


def test_the_lock_keeps_a_second_opener_out_and_names_the_holder(journal: UndoJournal, jpath: Path) -> None:
    with pytest.raises(JournalLocked) as info:
        UndoJournal.open(jpath, fsync=False)
    assert info.value.pid == os.getpid()
    assert str(jpath) in str(info.value) and str(os.getpid()) in str(info.value)
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 3
    assert str(os.getpid()) in out.getvalue()
    journal.close()
    UndoJournal.open(jpath, fsync=False).close()


def test_the_lock_is_held_across_processes(journal: UndoJournal, jpath: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from sol.safety.journal import *\n"
        "try: UndoJournal.open(Path(sys.argv[1]))\n"
        "except JournalLocked as e: print(e.pid); sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(jpath)], capture_output=True, text=True, timeout=30
    )
    assert (proc.returncode, proc.stdout.strip()) == (3, str(os.getpid())), proc.stderr


def _under_a_regular_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("")
    return tmp / "a-file" / "undo.journal"


@pytest.mark.parametrize(
    ("make_path", "errno_name"),
    [
        (_under_a_regular_file, "ENOTDIR"),
        (lambda tmp: Path("/proc/sol-no-such-dir/undo.journal"), "ENOENT"),
        (lambda tmp: Path("/proc/self/undo.journal"), "ENOENT"),
    ],
    ids=["parent-is-a-regular-file", "dir-under-proc", "file-in-proc"],
)
def test_an_unwritable_place_is_a_journal_error(
    tmp_path: Path, make_path: Callable[[Path], Path], errno_name: str
) -> None:
    path = make_path(tmp_path)
    with pytest.raises(JournalError, match=f"undo journal {path}.*{errno_name}"):
        UndoJournal.open(path, fsync=False)


def test_a_journal_value_that_is_not_json_is_a_journal_error(journal: UndoJournal) -> None:
    with pytest.raises(JournalError, match="encode"):
        journal.record("a", "file", "/k", {"bytes": b"raw"})
    with pytest.raises(JournalError, match="encode"):
        journal.record("a", "file", "/k", float("nan"))
    assert journal.open_records() == []


class _FileSizeLimit:
    """RLIMIT_FSIZE: a limit on file growth that root cannot bypass (EFBIG / short writes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __enter__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self.saved[1]))

    def __exit__(self, *exc: object) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)
        signal.signal(signal.SIGXFSZ, self.handler)


@pytest.mark.parametrize("room", [0, 10], ids=["no-room-efbig", "partial-line-short-write"])
def test_a_failed_append_raises_and_leaves_no_torn_line(journal: UndoJournal, jpath: Path, room: int) -> None:
    journal.record("a", "file", "/a", "a")
    size = jpath.stat().st_size
    with _FileSizeLimit(size + room), pytest.raises(JournalError, match="cannot append"):
        journal.record("a", "file", "/b", "b")
    assert jpath.stat().st_size == size, "a partial line is cut back"
    assert [r.target for r in journal.open_records()] == ["/a"]
    journal.record("a", "file", "/b", "b")  # the journal still works once there is room
    journal.close()
    with UndoJournal.open(jpath, fsync=False) as j:
        assert j.problems == [] and [r.target for r in j.open_records()] == ["/a", "/b"]


@pytest.mark.parametrize("failure", ["file-size-limit", "closed-journal"])
def test_no_host_write_without_a_durable_undo_record(tmp_path: Path, jpath: Path, failure: str) -> None:
    knob_path = tmp_path / "knob"
    knob_path.write_text("old\n")
    with UndoJournal.open(jpath, fsync=False) as j:
        writer = HostWriter(journal=j, owner="a")
        if failure == "closed-journal":
            j.close()
            fault: Any = contextlib.nullcontext()
        else:
            fault = _FileSizeLimit(jpath.stat().st_size)
        with capture_logs() as logs, pytest.raises(WriteError) as info, fault:
            writer.write(FileKnob(knob_path), "new")
    assert info.value.reason == "journal" and info.value.target == str(knob_path)
    assert knob_path.read_text() == "old\n", "the write must not be made"
    assert writer.writes == 0 and writer.failures == 1
    assert [e["reason"] for e in logs if e["event"] == "actuation.failed"] == ["journal"]


# -- sol restore ------------------------------------------------------------------------------
def test_restore_command_without_a_journal_has_nothing_to_do(tmp_path: Path) -> None:
    out = io.StringIO()
    assert restore_command(tmp_path / "none" / "undo.journal", out=out, scope=ANYWHERE) == 0
    assert "nothing to restore" in out.getvalue()
    assert not (tmp_path / "none").exists()


def test_restore_command_restores_reports_and_is_safe_to_run_twice(tmp_path: Path, jpath: Path) -> None:
    knobs = [tmp_path / f"knob{i}" for i in range(3)]
    for i, knob in enumerate(knobs):
        knob.write_text(f"before {i}\n")
    with UndoJournal.open(jpath) as j:
        writer = HostWriter(journal=j, owner="a")
        for knob in knobs:
            writer.write(FileKnob(knob), "after")
    with open(jpath, "a") as raw:
        raw.write("garbage\n")
    out = io.StringIO()
    # every knob is back, but a journal that changed behind sol's back is said loudly: exit 1
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 1
    assert [k.read_text() for k in knobs] == ["before 0\n", "before 1\n", "before 2\n"]
    text = out.getvalue()
    assert "corrupt record skipped" in text and "line 5" in text and "DAMAGED" in text
    assert text.count("restored  #") == 3 and "restored 3 before-image(s), 0 failed" in text
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 0
    assert "nothing to restore" in out.getvalue()


def test_restore_command_fails_loudly_when_a_knob_cannot_be_restored(tmp_path: Path, jpath: Path) -> None:
    gone, fine = tmp_path / "gone", tmp_path / "fine"
    for knob in (gone, fine):
        knob.write_text("before")
    with UndoJournal.open(jpath) as j:
        writer = HostWriter(journal=j, owner="a")
        writer.write(FileKnob(gone), "after")
        writer.write(FileKnob(fine), "after")
        j.record("a", "nvml", "gpu0", 250)
    gone.unlink()
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 1
    text = out.getvalue()
    assert fine.read_text() == "before" and not gone.exists(), "restore never creates a file"
    # a knob that is gone has nothing left to restore: closed and listed, not failed forever
    assert f"closed    #1 file {gone} (owner a): gone" in text
    assert "no restorer for kind 'nvml' (known: " in text and "file" in text
    assert "restored 1 before-image(s), 1 failed, 1 gone" in text
    again = io.StringIO()
    assert restore_command(jpath, out=again, scope=ANYWHERE) == 1, "the failed record stays open"
    assert "1 open before-image(s)" in again.getvalue()


def test_restore_command_refuses_a_newer_journal(jpath: Path) -> None:
    jpath.parent.mkdir()
    jpath.write_text("sol-undo-journal v2\n")
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 1
    assert "format v2" in out.getvalue()


def test_restore_interrupted_by_sigkill_is_finished_by_the_next_run(tmp_path: Path) -> None:
    knobs = [tmp_path / f"knob{i}" for i in range(4)]
    for i, knob in enumerate(knobs):
        knob.write_text(f"before {i}\n")
    jpath = tmp_path / "undo.journal"
    args = [sys.executable, str(CHILD), "restore-then-die", "--journal", str(jpath)]
    for knob in knobs:
        args += ["--knob", str(knob)]
    proc = subprocess.run(args, capture_output=True, timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with UndoJournal.open(jpath, fsync=False) as j:
        # killed after the 2nd restorer ran but before its close: 1 closed, 3 still open
        assert len(j.open_records()) == 3
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 0, out.getvalue()
    assert [k.read_text() for k in knobs] == [f"before {i}\n" for i in range(4)]
    out = io.StringIO()
    assert restore_command(jpath, out=out, scope=ANYWHERE) == 0
    assert "nothing to restore" in out.getvalue()


def test_default_restorers_are_a_fresh_mapping_with_file() -> None:
    first = default_restorers()
    first.pop("file")
    assert "file" in default_restorers()
