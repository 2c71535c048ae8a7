"""The undo journal: a durable before-image for every host write (DESIGN §4 guarantee 8).

Before the first write to a host knob, the value it held is appended to this journal and
fsync'd; only then is the write made. After a crash (SIGKILL included) the next start, or
``sol restore`` run by systemd ``ExecStopPost=``, writes every before-image still open back
to the host. If the before-image cannot be made durable, the write is not made.

File format (one line each, UTF-8, ``\\n``-terminated)::

    sol-undo-journal v1
    <crc32 of payload, 8 hex digits> <compact JSON payload>
    ...

with payloads ``{"op":"open","id":N,"owner":...,"kind":...,"target":...,"before":...,"t":...}``
and ``{"op":"close","id":N,"how":"restored"|"released"|"gone"|"superseded"}`` (an open
record may also carry ``"ident"``, the identity of the object it was written to, so that a
restore never writes to a new object that took the name of a removed one). Appends are single
``write(2)``
calls on an ``O_APPEND`` descriptor; a torn or corrupt line is reported and skipped, never
fatal: every intact record is kept. Compaction rewrites the open records to a temporary file
in the same directory, fsyncs it, renames it over the journal and fsyncs the directory, so a
crash at any point leaves either the old or the new journal, both complete.

A second sidecar, ``<journal>.state``, mirrors the open records (same line format, ended by a
``seal`` line with the next record id and the count), rewritten atomically after every change.
The journal alone cannot tell a crash mid-append from a journal that was emptied, truncated or
bit-flipped afterwards; with the state file it can. At open the two are compared: a record the
state holds open but the journal lost is put back from the state and reported as damage
(:attr:`UndoJournal.damage`), and ``sol restore`` then exits non-zero so that ``ExecStopPost=``
and operators see it. A journal without a state file (written by an older sol) is read as before.

A sidecar ``<journal>.lock`` carries an exclusive ``flock`` (and the holder's pid), so two
daemons, or a daemon and ``sol restore``, never work on one journal at once. The lock is not
on the journal itself because compaction replaces the journal's inode.

>>> import tempfile, pathlib, structlog
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> quiet = structlog.testing.CapturingLogger()
>>> with UndoJournal.open(d / "undo.journal", log=quiet) as j:
...     rid = j.record("demo", "file", "/tmp/knob", "1024\\n")
...     j.record("demo", "file", "/tmp/knob", "2048\\n") == rid  # the oldest image is kept
...     [(r.target, r.before) for r in j.open_records()]
True
[('/tmp/knob', '1024\\n')]
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypeAlias

import structlog

if TYPE_CHECKING:
    from sol.actuators.restorers import HostRoots, Identity, Restorer, Scope

__all__ = [
    "FORMAT_VERSION",
    "JSONValue",
    "JournalError",
    "JournalFormatError",
    "JournalLocked",
    "KnobOwned",
    "RestoreFailure",
    "RestoreReport",
    "UndoJournal",
    "UndoRecord",
    "restore_command",
]

#: The journal format this code writes and reads. Bump it on any incompatible change.
FORMAT_VERSION = 1
_MAGIC = "sol-undo-journal"
_HEADER = f"{_MAGIC} v{FORMAT_VERSION}\n".encode()
#: The most a journal (or its state file) may weigh before it is refused unread: compaction
#: keeps it to its open records, a few hundred bytes each, so 64 MiB is far beyond any real one.
MAX_BYTES = 64 << 20

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
CloseHow = Literal["restored", "released", "gone", "superseded"]
_CLOSE_KINDS = ("restored", "released", "gone", "superseded")
_STATE_MAGIC = "sol-undo-state"
_STATE_HEADER = f"{_STATE_MAGIC} v{FORMAT_VERSION}\n".encode()


class JournalError(Exception):
    """The journal cannot be used (I/O failure, closed, unreadable). No host write may follow."""


class JournalLocked(JournalError):
    """Another process (a running daemon, another ``sol restore``) holds the journal."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"undo journal {path} is locked by {holder}; stop that sol daemon first "
            "(it restores on stop), or wait for it to exit"
        )
        self.path = path
        self.pid = pid


class KnobOwned(JournalError):
    """Another agent of this daemon already writes this knob: each knob has one owner."""

    def __init__(self, kind: str, target: str, owner: str, holder: str) -> None:
        super().__init__(
            f"{target} ({kind}) is written by agent {holder!r}; agent {owner!r} may not write it too "
            "(two agents on one knob undo each other's work). Give each agent its own target, "
            "or enable only one of them"
        )
        self.kind, self.target, self.owner, self.holder = kind, target, owner, holder


class JournalFormatError(JournalError):
    """The file is not a journal this version of sol can read; refused rather than guessed at."""


@dataclass(frozen=True, slots=True)
class UndoRecord:
    """One open before-image: what ``target`` (of restorer ``kind``) held before ``owner`` wrote."""

    id: int
    owner: str
    kind: str
    target: str
    before: Any
    #: wall-clock time (seconds since the epoch) the record was written, for operators
    t: float
    #: identity of the object written (e.g. ``dev:ino`` of a cgroup file), if its kind has one
    ident: str | None = None

    def describe(self) -> str:
        return f"#{self.id} {self.kind} {self.target} (owner {self.owner})"


@dataclass(frozen=True, slots=True)
class RestoreFailure:
    record: UndoRecord
    error: str


@dataclass(slots=True)
class RestoreReport:
    """What a restore did: records put back (and closed), and those that stay open."""

    restored: list[UndoRecord] = field(default_factory=list)
    failed: list[RestoreFailure] = field(default_factory=list)
    #: records closed without a write: the object is gone, or replaced by a new one of its name
    gone: list[RestoreFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for logs and the CLI.

        >>> RestoreReport().summary()
        'restored 0 before-image(s), 0 failed'
        """
        line = f"restored {len(self.restored)} before-image(s), {len(self.failed)} failed"
        if self.gone:
            line += f", {len(self.gone)} gone"
        if self.failed:
            line += ": " + "; ".join(f"{f.record.kind} {f.record.target}: {f.error}" for f in self.failed)
        return line


def _default_log() -> Any:
    # A lazy proxy: it resolves the structlog configuration at each call, so loggers made
    # before structlog is configured (or before capture_logs in tests) still behave.
    return structlog.get_logger("sol.safety.journal")


def _encode(payload: Mapping[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _oserror_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "EIO")
    return f"{name}: {exc.strerror or exc}"


@dataclass(slots=True)
class _Parsed:
    open: dict[int, UndoRecord]
    next_id: int
    dead_lines: int
    problems: list[str]
    #: the file does not end in a newline (a crash mid-append); an empty file counts too
    torn_tail: bool
    #: the file is empty: no header yet
    empty: bool = False
    #: ids whose close record was read
    closed: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _State:
    #: the next record id the state file saw; None: no state file, or a damaged one
    next_id: int | None
    records: dict[int, UndoRecord]
    problems: list[str]

    def stale(self, parsed: _Parsed) -> bool:
        """Whether the state file must be rewritten to match the journal."""
        return self.next_id != parsed.next_id or set(self.records) != set(parsed.open)


class UndoJournal:
    """An append-only, checksummed, fsync'd journal of before-images. Use :meth:`open`.

    Thread-safe within a process; exclusive across processes (``flock`` on a sidecar).
    """

    def __init__(
        self,
        path: Path,
        *,
        fd: int,
        lock_fd: int,
        parsed: _Parsed,
        fsync: bool,
        compact_after: int,
        log: Any,
    ) -> None:
        self.path = path
        #: corrupt or inconsistent lines found at open, with their line numbers
        self.problems: list[str] = list(parsed.problems)
        #: what the journal lost since it was written (records missing, lines corrupt, a
        #: damaged state file), found at open by comparing it with its state file; a torn last
        #: line (a crash mid-append) is not damage: that record's write was never made
        self.damage: list[str] = []
        self._fd: int | None = fd
        self._lock_fd: int | None = lock_fd
        self._open: dict[int, UndoRecord] = dict(parsed.open)
        self._by_key: dict[tuple[str, str], int] = {}
        for rid in sorted(self._open):
            self._by_key.setdefault((self._open[rid].kind, self._open[rid].target), rid)
        self._next_id = parsed.next_id
        #: records this process opened (the others were left by an earlier run)
        self._mine: set[int] = set()
        #: knob -> the agent that writes it, for the life of that agent (see :meth:`release_claims`)
        self._claims: dict[tuple[str, str], str] = {}
        self._dead_lines = parsed.dead_lines
        self._fsync = fsync
        self._compact_after = compact_after
        self._log = log
        self._mutex = threading.RLock()
        #: set after an fsync failure or an append that could not be rolled back: the file's
        #: state is unknown, so no further before-image may be trusted to it
        self._broken: str | None = None
        self._size = os.fstat(fd).st_size
        #: end the torn last line before the next append (set only if compaction failed)
        self._torn_tail = False

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: Path,
        *,
        log: Any = None,
        fsync: bool = True,
        compact_after: int = 1000,
    ) -> UndoJournal:
        """Open (creating if absent) and lock the journal at ``path``; load its open records.

        Raises :class:`JournalLocked` if another process holds it, :class:`JournalFormatError`
        for a file of another format or a newer version, :class:`JournalError` on I/O errors.
        ``fsync=False`` drops the fsyncs (survives a process crash, not a power loss): tests only.
        Compacts on open when there is anything to drop.
        """
        path = Path(path)
        log = log if log is not None else _default_log()
        if compact_after < 1:
            raise ValueError(f"compact_after must be >= 1, got {compact_after}")
        try:
            created_dir = not path.parent.exists()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if created_dir:
                os.chmod(path.parent, 0o700)
        except FileExistsError as exc:
            raise JournalError(
                f"cannot create the directory of undo journal {path}: ENOTDIR: "
                f"{path.parent} exists and is not a directory"
            ) from exc
        except OSError as exc:
            raise JournalError(
                f"cannot create the directory of undo journal {path}: {_oserror_text(exc)}"
            ) from exc
        lock_fd = cls._lock(path)
        # We hold the lock, so a temp file beside the journal is left over from a compaction
        # a crash interrupted before its rename: the journal itself is complete without it.
        for stale in path.parent.glob(f".{path.name}.tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        fd: int | None = None
        try:
            state = cls._read_state(path, log)
            if not path.exists():
                cls._create(path, fsync=fsync)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise JournalFormatError(f"undo journal {path} is not a regular file; move it aside")
            if st.st_size > MAX_BYTES:
                raise JournalFormatError(
                    f"undo journal {path} is {st.st_size} bytes, more than the {MAX_BYTES} sol ever "
                    "writes: it is not a journal sol wrote. Move it aside, then start sol again."
                )
            data = cls._read_all(fd)
            try:
                parsed = cls._parse(path, data, log)
            except JournalFormatError as exc:
                if state.next_id is None or re.match(rb"%s v[0-9]+\n" % _MAGIC.encode(), data):
                    raise  # no witness to rebuild from, or a journal of another sol version
                # the header itself is gone (truncated, flipped): keep the file for the operator,
                # start a fresh one and let the state file put back what it holds
                aside = path.with_name(f"{path.name}.damaged-{time.time_ns()}")
                os.rename(path, aside)
                os.close(fd)
                fd = None
                cls._create(path, fsync=fsync)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
                unreadable = f"the journal had no readable header ({exc}); the file is kept as {aside}"
                parsed = _Parsed({}, 1, 0, [unreadable], torn_tail=False)
            damage = cls._merge_state(path, parsed, state, log)
            journal = cls(
                path,
                fd=fd,
                lock_fd=lock_fd,
                parsed=parsed,
                fsync=fsync,
                compact_after=compact_after,
                log=log,
            )
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            os.close(lock_fd)
            raise JournalError(f"cannot open undo journal {path}: {_oserror_text(exc)}") from exc
        except BaseException:
            if fd is not None:
                os.close(fd)
            os.close(lock_fd)
            raise
        journal.damage = damage
        if parsed.dead_lines or parsed.problems or parsed.torn_tail or damage or state.stale(parsed):
            try:
                journal.compact()
            except JournalError as exc:
                if parsed.empty or journal._broken is not None:
                    # No header could be written, or the file's state is unknown: unusable.
                    journal.close()
                    raise
                # Not fatal: appends still work (a torn tail is ended first, see _append).
                journal._torn_tail = parsed.torn_tail
                log.warning("journal.compact_failed", path=str(path), error=str(exc))
        log.info("journal.opened", path=str(path), open_records=len(journal._open))
        return journal

    # -- the state file ---------------------------------------------------------------------
    @staticmethod
    def state_path(path: Path) -> Path:
        """Where the state file of the journal at ``path`` lives."""
        return path.with_name(path.name + ".state")

    @classmethod
    def _read_state(cls, path: Path, log: Any) -> _State:
        spath = cls.state_path(path)
        try:
            fd = os.open(spath, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return _State(None, {}, [])
        except OSError as exc:
            return _State(None, {}, [f"state file {spath} cannot be read: {_oserror_text(exc)}"])
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
                return _State(None, {}, [f"state file {spath} is not a regular file of a sane size"])
            data = cls._read_all(fd)
        except OSError as exc:
            return _State(None, {}, [f"state file {spath} cannot be read: {_oserror_text(exc)}"])
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        if lines[-1] != b"" or len(lines) < 3 or lines[0] + b"\n" != _STATE_HEADER:
            return _State(None, {}, [f"state file {spath} is damaged (no header or not ended)"])
        records: dict[int, UndoRecord] = {}
        try:
            for line in lines[1:-2]:
                payload = cls._decode(line)
                if payload.get("op") != "open":
                    raise ValueError("a state line that is not an open record")
                record = cls._record_from(payload)
                records[record.id] = record
            seal = cls._decode(lines[-2])
            next_id, count = seal.get("next_id"), seal.get("count")
            whole = count == len(records) == len(lines) - 3  # no record line lost or repeated
            if seal.get("op") != "seal" or not isinstance(next_id, int) or not whole:
                raise ValueError(f"seal {seal!r} does not match {len(records)} record(s)")
        except ValueError as exc:
            log.warning("journal.state_damaged", path=str(spath), problem=str(exc))
            return _State(None, {}, [f"state file {spath} is damaged: {exc}"])
        return _State(next_id, records, [])

    @staticmethod
    def _merge_state(path: Path, parsed: _Parsed, state: _State, log: Any) -> list[str]:
        """Put back into ``parsed`` what the journal lost and the state file kept; say what."""
        damage = list(state.problems)
        if state.next_id is None:
            # no (usable) witness: only what the journal itself shows is known
            damage += [p for p in parsed.problems if "crash mid-append" not in p]
            return damage
        for rid, record in state.records.items():
            if rid in parsed.open or rid in parsed.closed:
                continue
            # the state saw it open, the journal has neither its open nor its close: lost
            parsed.open[rid] = record
            damage.append(
                f"record {record.describe()} was missing from the journal; recovered from its state file"
            )
        for rid in list(parsed.open):
            if rid < state.next_id and rid not in state.records:
                # The state file is rewritten after every close: a crash between the two leaves
                # the state saying open and the journal closed, never the reverse. So this close
                # line was lost (dropped, flipped): the record is closed, as the state says.
                record = parsed.open.pop(rid)
                parsed.closed.add(rid)
                damage.append(
                    f"record {record.describe()}: its close was lost; closed as the state file says"
                )
        damage += [p for p in parsed.problems if "crash mid-append" not in p]
        parsed.next_id = max(parsed.next_id, state.next_id, max(parsed.open, default=0) + 1)
        for problem in damage:
            log.error("journal.damaged", path=str(path), problem=problem)
        return damage

    def _write_state(self) -> None:
        """Mirror the open records into the state file (temp file, fsync, rename)."""
        chunks = [_STATE_HEADER]
        chunks += [_encode(self._payload(r)) for _, r in sorted(self._open.items())]
        chunks.append(_encode({"op": "seal", "next_id": self._next_id, "count": len(self._open)}))
        try:
            self._replace(self.state_path(self.path), chunks, fsync=self._fsync)
        except OSError as exc:
            raise JournalError(
                f"cannot write the state file of undo journal {self.path}: {_oserror_text(exc)}"
            ) from exc

    @staticmethod
    def _payload(record: UndoRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "op": "open",
            "id": record.id,
            "owner": record.owner,
            "kind": record.kind,
            "target": record.target,
            "before": record.before,
            "t": record.t,
        }
        if record.ident is not None:
            payload["ident"] = record.ident
        return payload

    @staticmethod
    def _lock_path(path: Path) -> Path:
        return path.with_name(path.name + ".lock")

    @classmethod
    def _lock(cls, path: Path) -> int:
        lock_path = cls._lock_path(path)
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise JournalError(
                f"cannot open the lock file {lock_path} of undo journal {path}: {_oserror_text(exc)}"
            ) from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid: int | None = None
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(lock_fd, 32, 0).decode().strip())
            os.close(lock_fd)
            raise JournalLocked(path, pid) from None
        except OSError as exc:
            os.close(lock_fd)
            raise JournalError(f"cannot lock undo journal {path}: {_oserror_text(exc)}") from exc
        # The pid is advisory (for the message a second opener prints); the flock is the lock.
        with contextlib.suppress(OSError):
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        return lock_fd

    @classmethod
    def _create(cls, path: Path, *, fsync: bool) -> None:
        # Created whole (header included) under a temporary name and renamed into place, so
        # a crash never leaves a journal without its header.
        cls._replace(path, [_HEADER], fsync=fsync)
        if fsync:
            _fsync_dir(path.parent)

    @staticmethod
    def _replace(path: Path, chunks: list[bytes], *, fsync: bool) -> None:
        """Write ``chunks`` to a temp file beside ``path``, fsync it, rename it over ``path``."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                data = b"".join(chunks)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    def _read_all(fd: int) -> bytes:
        chunks = []
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    @classmethod
    def _parse(cls, path: Path, data: bytes, log: Any) -> _Parsed:
        problems: list[str] = []

        def problem(lineno: int, text: str) -> None:
            problems.append(f"line {lineno}: {text}")
            log.warning("journal.corrupt_record", path=str(path), line=lineno, problem=text)

        lines = data.split(b"\n")
        torn_tail = lines[-1] != b""  # data not ending in \n: a crash mid-append
        tail = lines.pop()
        if not lines:
            if not tail:
                # An empty file (created by hand, or by an older tool): treat as a fresh journal.
                return _Parsed({}, 1, 0, [], torn_tail=True, empty=True)
            raise JournalFormatError(
                f"{path} has no complete header line: it is not a sol undo journal. Move it "
                "aside (it may be restored by hand), then start sol again."
            )
        cls._check_header(path, lines[0])
        open_records: dict[int, UndoRecord] = {}
        closed: set[int] = set()
        max_id = 0
        dead = 0
        for lineno, line in enumerate(lines[1:], start=2):
            try:
                payload = cls._decode(line)
                op = payload.get("op")
                rid = payload.get("id")
                if not isinstance(rid, int) or isinstance(rid, bool) or rid < 1:
                    raise ValueError(f"bad record id {rid!r}")
                if op == "open":
                    record = cls._record_from(payload)
                    if rid in open_records or rid in closed:
                        raise ValueError(f"duplicate open record for id {rid}")
                    open_records[rid] = record
                    max_id = max(max_id, rid)
                elif op == "close":
                    if payload.get("how") not in _CLOSE_KINDS:
                        raise ValueError(f"bad close kind {payload.get('how')!r}")
                    if rid in closed:
                        dead += 1
                        problem(lineno, f"second close for id {rid} (ignored)")
                        continue
                    if rid not in open_records:
                        raise ValueError(f"close for unknown id {rid}")
                    del open_records[rid]
                    closed.add(rid)
                    max_id = max(max_id, rid)
                    dead += 2  # this close and its open are both dead weight now
                else:
                    raise ValueError(f"unknown op {op!r}")
            except ValueError as exc:
                dead += 1
                problem(lineno, f"{exc} (record skipped)")
        if torn_tail:
            problem(len(lines) + 1, "truncated record at the end (crash mid-append; skipped)")
        return _Parsed(open_records, max_id + 1, dead, problems, torn_tail, closed=closed)

    @staticmethod
    def _check_header(path: Path, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        magic, _, version = text.partition(" ")
        if magic != _MAGIC or not version.startswith("v") or not version[1:].isdigit():
            raise JournalFormatError(
                f"{path} is not a sol undo journal (header {text[:60]!r}). Move it aside, "
                "then start sol again; nothing was restored from it."
            )
        found = int(version[1:])
        if found != FORMAT_VERSION:
            raise JournalFormatError(
                f"undo journal {path} has format v{found}; this sol reads v{FORMAT_VERSION}. "
                f"Run `sol restore` with the sol release that wrote it (v{found} format) to put "
                "the host back, then remove the file and start this release. Refusing to guess."
            )

    @staticmethod
    def _decode(line: bytes) -> dict[str, Any]:
        crc_text, sep, body = line.partition(b" ")
        if not sep or len(crc_text) != 8:
            raise ValueError("not a journal record")
        try:
            crc = int(crc_text, 16)
        except ValueError:
            raise ValueError("not a journal record") from None
        if zlib.crc32(body) != crc:
            raise ValueError("checksum mismatch")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"bad JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
        return payload

    @staticmethod
    def _record_from(payload: dict[str, Any]) -> UndoRecord:
        for key in ("owner", "kind", "target"):
            if not isinstance(payload.get(key), str):
                raise ValueError(f"open record without a string {key!r}")
        if "before" not in payload:
            raise ValueError("open record without a before-image")
        t = payload.get("t")
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError("open record without a time")
        ident = payload.get("ident")
        if ident is not None and not isinstance(ident, str):
            raise ValueError("open record with a non-string ident")
        return UndoRecord(
            id=payload["id"],
            owner=payload["owner"],
            kind=payload["kind"],
            target=payload["target"],
            before=payload["before"],
            t=float(t),
            ident=ident,
        )

    # -- writing --------------------------------------------------------------------------
    def _check_usable(self) -> int:
        if self._fd is None:
            raise JournalError(f"undo journal {self.path} is closed")
        if self._broken is not None:
            raise JournalError(
                f"undo journal {self.path} is unusable after an earlier failure ({self._broken}); "
                "no further writes are journaled. Restart sol to restore and reopen it."
            )
        return self._fd

    def _append(self, payload: Mapping[str, Any]) -> None:
        fd = self._check_usable()
        try:
            line = _encode(payload)
        except (TypeError, ValueError) as exc:
            raise JournalError(f"cannot encode record for undo journal {self.path}: {exc}") from exc
        if self._torn_tail:
            # End the torn line first, so this record is not glued onto it (and lost).
            line = b"\n" + line
        try:
            # One write(2) on an O_APPEND fd: the line lands whole at the end or not at all,
            # short of a power loss, which the checksum then catches.
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            self._roll_back_append()
            raise JournalError(f"cannot append to undo journal {self.path}: {_oserror_text(exc)}") from exc
        if self._fsync:
            try:
                os.fdatasync(fd)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the dirty pages: whether the
                # record is on disk is unknown, and retrying cannot tell. Stop trusting the file.
                self._broken = f"fsync failed: {_oserror_text(exc)}"
                raise JournalError(
                    f"cannot make undo journal {self.path} durable: {_oserror_text(exc)}"
                ) from exc
        self._size += len(line)
        self._torn_tail = False

    def _roll_back_append(self) -> None:
        # A failed write may have left part of a line behind; cut the file back so the next
        # record starts on a line of its own. If that fails too, the file is unusable.
        assert self._fd is not None
        try:
            if os.fstat(self._fd).st_size != self._size:
                os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self._broken = f"could not undo a partial append: {_oserror_text(exc)}"

    def record(
        self,
        owner: str,
        kind: str,
        target: str,
        before: JSONValue,
        *,
        ident: Callable[[], str | None] | None = None,
    ) -> int:
        """Make ``before`` durable as the value to restore ``target`` to; return the record id.

        If this process already holds a record for ``(kind, target)``, its id is returned and
        nothing is written: the oldest image is the state to go back to (and repeated writes
        stay cheap). A record left open by an earlier run (its restore failed) is not reused:
        it is closed as ``superseded`` and a fresh before-image taken, so that a clean stop puts
        back what the knob held when this run first wrote it. ``ident`` (called only when a new
        record is opened) gives the identity of the object, checked again before any restore.

        Each knob has one owner for the life of this journal or until :meth:`release_claims`:
        another owner's record raises :class:`KnobOwned`. Raises :class:`JournalError` if the
        record could not be made durable: then the caller must not write.
        """
        key = (kind, target)
        with self._mutex:
            self._check_usable()
            holder = self._claims.get(key)
            if holder is not None and holder != owner:
                self._log.error("journal.knob_owned", kind=kind, target=target, owner=owner, held_by=holder)
                raise KnobOwned(kind, target, owner, holder)
            existing = self._by_key.get(key)
            if existing is not None and existing in self._mine:
                old = self._open[existing]
                if old.ident is None or ident is None or ident() == old.ident:
                    self._claims[key] = owner
                    return existing
                # the object it was taken from is gone (a cgroup removed and made again): its
                # image belongs to nothing now, and the new object needs one of its own
                self._log.info("journal.target_replaced", record=old.describe())
                self._close_record(old, "gone")
                existing = None
            if existing is not None:
                old = self._open[existing]
                self._log.warning(
                    "journal.leftover_superseded",
                    record=old.describe(),
                    stale_before=old.before,
                    before=before,
                    why="left open by an earlier run whose restore failed; the knob now holds another value",
                )
                self._close_record(old, "superseded")
            rid = self._next_id
            t = time.time()
            record = UndoRecord(rid, owner, kind, target, before, t, ident() if ident is not None else None)
            self._append(self._payload(record))
            self._next_id = rid + 1
            self._open[rid] = record
            self._by_key[key] = rid
            self._mine.add(rid)
            self._claims[key] = owner
            self._write_state()
            return rid

    def release_claims(self, owner: str) -> None:
        """``owner`` (an agent) has stopped: other agents may write its knobs from now on."""
        with self._mutex:
            for key in [k for k, o in self._claims.items() if o == owner]:
                del self._claims[key]

    def open_records(self, owner: str | None = None) -> list[UndoRecord]:
        """Open records (of ``owner``, or all), oldest first."""
        with self._mutex:
            return [r for _, r in sorted(self._open.items()) if owner is None or r.owner == owner]

    def _close_record(self, record: UndoRecord, how: CloseHow) -> None:
        self._append({"op": "close", "id": record.id, "how": how})
        self._forget(record)
        try:
            self._write_state()
        except JournalError as exc:
            # The close is durable in the journal, which wins over a stale state file at the
            # next open: nothing is lost, the mirror is only behind until the next change.
            self._log.warning("journal.state_behind", path=str(self.path), error=str(exc))

    def _forget(self, record: UndoRecord) -> None:
        del self._open[record.id]
        if self._by_key.get((record.kind, record.target)) == record.id:
            del self._by_key[(record.kind, record.target)]
            # A duplicate open record for the same knob (possible only after an fsync
            # failure) takes over, so a later write still finds the key open.
            for rid in sorted(self._open):
                other = self._open[rid]
                if (other.kind, other.target) == (record.kind, record.target):
                    self._by_key[(record.kind, record.target)] = rid
                    break
        self._dead_lines += 2

    def restore(
        self,
        restorers: Mapping[str, Restorer],
        owner: str | None = None,
        log: Any = None,
        *,
        identities: Mapping[str, Identity] | None = None,
        scope: Scope | None = None,
    ) -> RestoreReport:
        """Write every open before-image (of ``owner``, or all) back, newest first.

        Each success is closed as ``restored``. A failure (no restorer for the kind, an
        ``OSError``, a read-back mismatch, ...) is collected in the report, never raised; that
        record stays open and the others continue. Running it again does only what is left.

        ``scope`` (for records read back from disk, which anyone who could write the file may
        have forged): a record whose target is not one of this sol's own knobs is refused and
        stays open. ``identities`` (default: every kind's; ``{}``: none): a record whose object
        is gone is closed as ``gone``, and one whose name now belongs to a new object (a cgroup
        removed and created again, a pid reused) is closed as ``gone`` without a write. Raises
        :class:`JournalError` only if the journal is closed.
        """
        log = log if log is not None else self._log
        if identities is None:
            # imported here: actuators build on this module, a top-level import would cycle
            from sol.actuators.restorers import default_identities

            identities = default_identities()
        report = RestoreReport()
        with self._mutex:
            if self._fd is None:
                raise JournalError(f"undo journal {self.path} is closed")
            # Newest first: if two records ever cover related state, the oldest image is
            # the last one written, so the host ends in the state before the first write.
            for record in reversed(self.open_records(owner)):
                restorer = restorers.get(record.kind)
                if restorer is None:
                    known = ", ".join(sorted(restorers)) or "none"
                    error = f"no restorer for kind {record.kind!r} (known: {known})"
                    report.failed.append(RestoreFailure(record, error))
                    log.error("journal.restore_failed", record=record.describe(), error=error)
                    continue
                refused = scope.refuses(record.kind, record.target) if scope is not None else None
                if refused is not None:
                    error = f"refused: {refused}"
                    report.failed.append(RestoreFailure(record, error))
                    log.error("journal.restore_refused", record=record.describe(), error=error)
                    continue
                gone = self._gone(record, identities)
                if gone is not None:
                    self._close_gone(record, gone, report, log)
                    continue
                try:
                    restorer(record.target, record.before)
                except Exception as exc:
                    error = _oserror_text(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
                    report.failed.append(RestoreFailure(record, error))
                    log.error("journal.restore_failed", record=record.describe(), error=error)
                    continue
                try:
                    self._close_record(record, "restored")
                except JournalError as exc:
                    # The host holds the before-image; only the bookkeeping failed, so the
                    # next restore writes the same value again (harmless) and closes it.
                    error = f"restored, but the close record was not written: {exc}"
                    report.failed.append(RestoreFailure(record, error))
                    log.error("journal.restore_failed", record=record.describe(), error=error)
                    continue
                report.restored.append(record)
                log.info("journal.restored", record=record.describe(), before=record.before)
            self._maybe_compact()
        log.info("journal.restore_done", summary=report.summary(), owner=owner)
        return report

    @staticmethod
    def _gone(record: UndoRecord, identities: Mapping[str, Identity] | None) -> str | None:
        """Why ``record``'s object is not there to restore, or None when it is (or unknown)."""
        identify = identities.get(record.kind) if identities is not None else None
        if identify is None:
            return None
        try:
            now = identify(record.target)
        except OSError:
            return None  # cannot tell: let the restorer try and report what it meets
        if now is None:
            return "gone: the object no longer exists"
        if record.ident is not None and now != record.ident:
            return (
                f"gone: {record.target} is now a different object ({now}, was {record.ident}); "
                "not written, it is not the one sol changed"
            )
        return None

    def _close_gone(self, record: UndoRecord, why: str, report: RestoreReport, log: Any) -> bool:
        try:
            self._close_record(record, "gone")
        except JournalError as exc:
            error = f"{why}, but the close record was not written: {exc}"
            report.failed.append(RestoreFailure(record, error))
            log.error("journal.restore_failed", record=record.describe(), error=error)
            return False
        report.gone.append(RestoreFailure(record, why))
        log.warning("journal.target_gone", record=record.describe(), why=why)
        return True

    def release(self, owner: str | None = None) -> list[UndoRecord]:
        """Close open records (of ``owner``, or all) without restoring: keep the host as it is.

        This is rollback policy ``not_on_exit``. Raises :class:`JournalError` if a close
        record cannot be written (those records stay open and would be restored later).
        """
        released: list[UndoRecord] = []
        with self._mutex:
            for record in self.open_records(owner):
                self._close_record(record, "released")
                released.append(record)
            # an owner that lets its settings go is leaving: its knobs are free for others
            for key in [k for k, o in self._claims.items() if owner is None or o == owner]:
                del self._claims[key]
            self._maybe_compact()
        if released:
            self._log.info("journal.released", count=len(released), owner=owner)
        return released

    def _maybe_compact(self) -> None:
        if self._dead_lines <= self._compact_after or self._fd is None or self._broken is not None:
            return
        try:
            self.compact()
        except JournalError as exc:
            self._log.warning("journal.compact_failed", path=str(self.path), error=str(exc))

    def compact(self) -> None:
        """Atomically rewrite the journal with only its open records (ids kept).

        Temp file in the same directory, fsync, rename over the journal, fsync the directory:
        a crash at any point leaves the old journal or the new one, never a mix.
        """
        with self._mutex:
            fd = self._check_usable()
            chunks = [_HEADER] + [_encode(self._payload(r)) for r in self.open_records()]
            try:
                self._replace(self.path, chunks, fsync=self._fsync)
            except OSError as exc:
                # Nothing was renamed: the old journal and our descriptor are intact.
                raise JournalError(f"cannot compact undo journal {self.path}: {_oserror_text(exc)}") from exc
            # From here on the path names the new file: appends must go there.
            try:
                new_fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except OSError as exc:
                self._broken = f"cannot reopen after compaction: {_oserror_text(exc)}"
                raise JournalError(f"cannot reopen undo journal {self.path}: {_oserror_text(exc)}") from exc
            os.close(fd)
            self._fd = new_fd
            self._size = os.fstat(new_fd).st_size
            self._dead_lines = 0
            self._torn_tail = False
            if self._fsync:
                try:
                    _fsync_dir(self.path.parent)
                except OSError as exc:
                    # The rename may not survive a power loss, and records appended to the new
                    # file would be lost with it. Stop trusting the journal.
                    self._broken = f"directory fsync after compaction failed: {_oserror_text(exc)}"
                    raise JournalError(f"undo journal {self.path}: {self._broken}") from exc
            self._write_state()
            self._log.debug("journal.compacted", path=str(self.path), open_records=len(self._open))

    # -- lifetime -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Close the journal and release the lock. Open records stay on disk for later restore."""
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._lock_fd, 0)
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> UndoJournal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[UndoRecord]:
        return iter(self.open_records())

    def __len__(self) -> int:
        return len(self._open)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._open)} open"
        return f"<UndoJournal {str(self.path)!r} {state}>"


def restore_command(
    journal_path: Path,
    *,
    out: TextIO,
    scope: Scope | None = None,
    roots: HostRoots | None = None,
    euid: int | None = None,
) -> int:
    """``sol restore``: put back every open before-image. Safe to run any number of times.

    Running as root, the journal (and every directory above it) must be root's and writable by
    no one else, as ``sol run`` requires of its config: a journal another user could write is a
    list of files they chose for root to overwrite. Every record is checked against ``scope``
    (default: the knobs of a default Linux config) before anything is written; ``roots`` are the
    host's ``/proc`` and ``/sys`` for the restorers (default: the real ones).

    Exit status: 0 nothing failed (a missing journal included; records whose object is gone
    are closed and listed), 1 some restore failed or was refused, the journal is unreadable or
    untrusted, or it was found damaged (records lost or recovered from the state file: said
    once, loudly), 3 a running daemon holds the journal.
    """
    # Imported here: actuators build on this module, so a top-level import could cycle.
    from sol.actuators.restorers import TargetScope, default_identities, default_restorers
    from sol.files import ownership_problems

    journal_path = Path(journal_path)
    state_path = UndoJournal.state_path(journal_path)
    if not journal_path.exists() and not state_path.exists():
        lock_path = UndoJournal._lock_path(journal_path)
        if lock_path.exists():
            # the lock file outlives every journal sol opened: the journal was there, and both
            # it and its state file were removed since
            print(
                f"sol restore: DAMAGED: the undo journal {journal_path} and its state file are gone, "
                f"but {lock_path} shows sol kept one there: whatever it held open is lost. Check the "
                "host's settings by hand (remove the .lock file if you deleted the journal yourself).",
                file=out,
            )
            return 1
        print(f"no undo journal at {journal_path}: nothing to restore", file=out)
        return 0
    problems = ownership_problems(journal_path, what="undo journal", euid=euid)
    problems += [
        p
        for p in ownership_problems(state_path, what="journal state file", euid=euid)
        if "directory" not in p
    ]
    if problems:
        print(
            f"sol restore: refusing undo journal {journal_path}: a root restore would write what its "
            "author chose: " + "; ".join(problems),
            file=out,
        )
        return 1
    if scope is None:
        from sol.config import LinuxConfig

        scope = TargetScope.from_linux(LinuxConfig())
    try:
        journal = UndoJournal.open(journal_path)
    except JournalLocked as exc:
        print(f"sol restore: {exc}", file=out)
        return 3
    except JournalError as exc:
        print(f"sol restore: {exc}", file=out)
        return 1
    with journal:
        for problem in journal.problems:
            print(f"corrupt record skipped in {journal_path}: {problem}", file=out)
        for damage in journal.damage:
            print(f"DAMAGED   {journal_path}: {damage}", file=out)
        pending = len(journal)
        if not pending:
            print(f"undo journal {journal_path}: nothing to restore", file=out)
        else:
            print(f"undo journal {journal_path}: {pending} open before-image(s)", file=out)
            report = journal.restore(
                default_restorers(roots), identities=default_identities(roots), scope=scope
            )
            for record in report.restored:
                print(f"restored  {record.describe()} -> {record.before!r}", file=out)
            for gone in report.gone:
                print(f"closed    {gone.record.describe()}: {gone.error}", file=out)
            for failure in report.failed:
                print(f"FAILED    {failure.record.describe()}: {failure.error}", file=out)
            print(report.summary(), file=out)
            if not report.ok:
                return 1
        if journal.damage:
            print(
                f"sol restore: the undo journal {journal_path} was damaged since it was written "
                f"({len(journal.damage)} problem(s) above); what its state file kept was restored. "
                "Check the host's settings by hand and find what changed the file.",
                file=out,
            )
            return 1
        return 0
