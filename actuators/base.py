"""The one gate every host write goes through (DESIGN §5, §4 guarantee 8).

Order, for each write: read the current value (the before-image) -> guard (bounds, step,
rate) -> durable undo record -> write -> read back and compare. Each step that fails stops
the ones after it: a rejected guard writes nothing, an undo record that cannot be made durable
writes nothing, a failed write is reported with the kernel's errno. In dry-run the intended
write is logged and nothing on the host changes (no journal record either).

>>> import tempfile, pathlib
>>> from sol.actuators.file import FileKnob
>>> from sol.safety.guard import ActuationGuard
>>> from sol.safety.journal import UndoJournal
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "cpu.shares").write_text("1024\\n")
>>> quiet = structlog.testing.CapturingLogger()
>>> journal = UndoJournal.open(d / "undo.journal", log=quiet)
>>> writer = HostWriter(journal=journal, owner="demo", log=quiet)
>>> r = writer.write(FileKnob(d / "cpu.shares"), "4096", guard=ActuationGuard(2, 2048, None, None))
>>> r.applied, r.written, r.reason
(True, '2048', 'above hi 2048 -> 2048')
>>> [rec.before for rec in journal.open_records("demo")]
['1024\\n']
>>> writer.restore().summary(), (d / "cpu.shares").read_text()
('restored 1 before-image(s), 0 failed', '1024\\n')
>>> journal.close()
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from sol.actuators.restorers import Restorer, default_identities, default_restorers
from sol.safety.guard import ActuationGuard
from sol.safety.journal import JournalError, KnobOwned, RestoreReport, UndoJournal

__all__ = ["HostWriter", "Knob", "WriteError", "WriteResult"]


@runtime_checkable
class Knob(Protocol):
    """One host setting, as text. ``kind`` names the restorer of its before-images."""

    @property
    def kind(self) -> str: ...

    @property
    def target(self) -> str: ...

    def read(self) -> str: ...

    def write(self, raw: str) -> None: ...

    def matches(self, written: str, readback: str) -> bool:
        """Whether ``readback`` shows ``written`` took effect (the kernel may reformat)."""
        ...


class WriteError(Exception):
    """A host write that failed or could not be verified; never a bare ``OSError``.

    ``reason`` is one of ``read-failed``, ``not-numeric``, ``journal``, ``owned`` (another
    agent writes this knob), ``write-failed``,
    ``readback-failed``, ``readback-mismatch``; ``errno_name`` (``EPERM``, ``EROFS``,
    ``ENOENT``, ``EBUSY``, ``EINVAL``, ``EIO``, ...) is set when the kernel refused.
    """

    def __init__(self, message: str, *, target: str, reason: str, errno_name: str | None = None) -> None:
        super().__init__(message)
        self.target = target
        self.reason = reason
        self.errno_name = errno_name


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What :meth:`HostWriter.write` did.

    ``applied``: the host now holds the (guarded) value, by this write or because it already
    did (``reason="unchanged"``). ``written``: the text written, ``None`` if no write was
    made; in dry-run, the text that would have been written. ``reason``: why the value
    differs from the request (clamped), or why nothing was written (rejected, unchanged).
    """

    target: str
    before: str
    requested: str
    written: str | None
    readback: str | None
    applied: bool
    dry_run: bool
    reason: str | None = None
    #: the undo record guarding this knob's before-image, if one was written or reused
    record_id: int | None = None


# What an operator should check for the errors kernel knobs give in practice.
_ERRNO_HINTS = {
    "EPERM": "not permitted: sol needs root (CAP_SYS_ADMIN) for host knobs",
    "EACCES": "permission denied: sol needs root (CAP_SYS_ADMIN) for host knobs",
    "EROFS": "read-only file system: is /sys mounted read-only here (a container)?",
    "ENOENT": "the knob does not exist: cgroup removed, controller not enabled, or wrong root",
    "EBUSY": "the kernel reports the resource busy (e.g. in use by a child cgroup)",
    "EINVAL": "the kernel rejected the value",
    "ENOSPC": "the kernel rejected the value (no such CPU/memory node, or a limit reached)",
    "EIO": "I/O error",
}


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "EIO")


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _format_number(value: float) -> str:
    """Kernel integer knobs refuse ``"1536.0"``: write integral values as integers."""
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


class HostWriter:
    """Writes knobs for one owner (an agent) through guard -> undo record -> write -> read-back.

    ``journal`` may be ``None`` only in dry-run or with ``simulated=True`` (knobs that are a
    simulator's twin, not the host). Counters (``writes``, ``failures``, ``rejected``,
    ``dry_runs``, ``unchanged``) are plain attributes for the metrics layer to read.
    """

    def __init__(
        self,
        *,
        journal: UndoJournal | None,
        owner: str,
        dry_run: bool = False,
        log: Any = None,
        simulated: bool = False,
    ) -> None:
        if journal is None and not (dry_run or simulated):
            raise ValueError(
                f"HostWriter for {owner!r} needs an undo journal: host writes without a before-image "
                "break the crash guarantee (journal=None is only for dry_run or simulated knobs)"
            )
        self.journal = journal
        self.owner = owner
        self.dry_run = dry_run
        self.simulated = simulated
        self._log = log if log is not None else structlog.get_logger("sol.actuators")
        self.writes = 0
        self.failures = 0
        self.rejected = 0
        self.dry_runs = 0
        self.unchanged = 0
        self._identities = default_identities()

    def write(
        self,
        knob: Knob,
        value: str,
        *,
        guard: ActuationGuard | None = None,
        now: float = 0.0,
    ) -> WriteResult:
        """Set ``knob`` to ``value`` safely; see the module docstring for the order of steps.

        With a ``guard`` the knob is numeric: ``value`` and the current value are parsed as
        floats and the guard's decision is applied (a clamped value is written instead, a
        rejected one is not written). ``now`` is the caller's clock, for the guard's rate limit.
        Raises :class:`WriteError`; a rejection is a result, not an error.
        """
        target = knob.target
        try:
            before = knob.read()
        except OSError as exc:
            raise self._os_failure(
                knob, value, "read-failed", "cannot read the current value of", exc
            ) from exc
        if knob.matches(value, before):
            return self._unchanged(knob, before, value, None)

        to_write = value
        reason: str | None = None
        if guard is not None:
            proposed = _parse_float(value)
            if proposed is None:
                raise self._failure(
                    knob, value, "not-numeric", f"refusing to write {value!r} to {target}: not a number"
                )
            decision = guard.check(_parse_float(before), proposed, now)
            if decision.rejected or decision.value is None:
                self.rejected += 1
                self._log.info(
                    "actuation.rejected",
                    owner=self.owner,
                    target=target,
                    requested=value,
                    reason=decision.reason,
                )
                return WriteResult(
                    target,
                    before,
                    value,
                    None,
                    None,
                    applied=False,
                    dry_run=self.dry_run,
                    reason=decision.reason,
                )
            if decision.clamped:
                to_write = _format_number(decision.value)
                reason = decision.reason
                if knob.matches(to_write, before):
                    return self._unchanged(knob, before, value, reason)

        if self.dry_run:
            self.dry_runs += 1
            if guard is not None:
                # Dry-run makes the same decisions a real run would, rate limit included.
                guard.applied(float(to_write), now)
            self._log.info(
                "actuation.dry_run",
                owner=self.owner,
                kind=knob.kind,
                target=target,
                before=before,
                requested=value,
                would_write=to_write,
                reason=reason,
            )
            return WriteResult(
                target, before, value, to_write, None, applied=False, dry_run=True, reason=reason
            )

        record_id: int | None = None
        if self.journal is not None:
            identify = self._identities.get(knob.kind)
            try:
                record_id = self.journal.record(
                    self.owner,
                    knob.kind,
                    target,
                    before,
                    ident=(lambda: identify(target)) if identify is not None else None,
                )
            except KnobOwned as exc:
                raise self._failure(knob, to_write, "owned", f"not writing {to_write!r}: {exc}") from exc
            except JournalError as exc:
                raise self._failure(
                    knob,
                    to_write,
                    "journal",
                    f"not writing {to_write!r} to {target}: undo record not durable ({exc})",
                ) from exc

        try:
            knob.write(to_write)
        except OSError as exc:
            raise self._os_failure(
                knob, to_write, "write-failed", f"cannot write {to_write!r} to", exc
            ) from exc
        self.writes += 1
        if guard is not None:
            guard.applied(float(to_write), now)

        try:
            readback = knob.read()
        except OSError as exc:
            raise self._os_failure(
                knob, to_write, "readback-failed", f"wrote {to_write!r} but cannot read back", exc
            ) from exc
        if not knob.matches(to_write, readback):
            # The before-image stays open in the journal: mitigate/restore puts it back.
            raise self._failure(
                knob,
                to_write,
                "readback-mismatch",
                f"wrote {to_write!r} to {target} but it reads back {readback.strip()!r}",
            )
        self._log.info(
            "actuation.write",
            owner=self.owner,
            kind=knob.kind,
            target=target,
            before=before,
            written=to_write,
            readback=readback,
            reason=reason,
        )
        return WriteResult(
            target,
            before,
            value,
            to_write,
            readback,
            applied=True,
            dry_run=False,
            reason=reason,
            record_id=record_id,
        )

    def restore(self, restorers: Mapping[str, Restorer] | None = None) -> RestoreReport:
        """Put back every before-image this owner has open (mitigate / clean-up / quarantine)."""
        if self.journal is None:
            return RestoreReport()
        return self.journal.restore(
            restorers if restorers is not None else default_restorers(),
            owner=self.owner,
            log=self._log,
            identities=self._identities,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _unchanged(self, knob: Knob, before: str, requested: str, reason: str | None) -> WriteResult:
        self.unchanged += 1
        self._log.debug("actuation.unchanged", owner=self.owner, target=knob.target, value=before)
        return WriteResult(
            knob.target,
            before,
            requested,
            None,
            before,
            applied=True,
            dry_run=self.dry_run,
            reason="unchanged" if reason is None else f"unchanged ({reason})",
        )

    def _failure(
        self,
        knob: Knob,
        value: str,
        reason: str,
        message: str,
        errno_name: str | None = None,
    ) -> WriteError:
        self.failures += 1
        self._log.warning(
            "actuation.failed",
            owner=self.owner,
            kind=knob.kind,
            target=knob.target,
            value=value,
            reason=reason,
            errno=errno_name,
            error=message,
        )
        return WriteError(message, target=knob.target, reason=reason, errno_name=errno_name)

    def _os_failure(self, knob: Knob, value: str, reason: str, what: str, exc: OSError) -> WriteError:
        name = _errno_name(exc)
        detail = exc.strerror or os.strerror(exc.errno or errno.EIO)
        hint = _ERRNO_HINTS.get(name)
        message = f"{what} {knob.target}: {name} ({detail})" + (f"; {hint}" if hint else "")
        return self._failure(knob, value, reason, message, errno_name=name)
