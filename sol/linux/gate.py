"""An owner's write gate: what makes ``LinuxBackend.revoke`` airtight.

Each agent (owner) has one gate: a flag and a lock held across each kernel write. ``revoke``
takes the lock (so a write already inside the kernel finishes first) and sets the flag;
every later write is refused with ``WriteError(reason="revoked")``. The runtime revokes
before it restores the agent's undo records, so no write can land after the restore.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sol.actuators.base import HostWriter, Knob, WriteError, WriteResult
from sol.safety.guard import ActuationGuard

__all__ = ["Gate", "OwnerWriter", "check_writer", "gated"]


class Gate:
    """One owner's permission to write: a flag, and a lock held across each kernel write."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.revoked = False


class _GatedKnob:
    """A knob whose ``write`` runs under the owner's gate (and is refused once revoked)."""

    def __init__(self, knob: Knob, gate: Gate, owner: str) -> None:
        self._knob = knob
        self._gate = gate
        self._owner = owner

    @property
    def kind(self) -> str:
        return self._knob.kind

    @property
    def target(self) -> str:
        return self._knob.target

    def read(self) -> str:
        return self._knob.read()

    def write(self, raw: str) -> None:
        with self._gate.lock:
            if self._gate.revoked:
                raise _revoked(self._owner, self.target)
            self._knob.write(raw)

    def matches(self, written: str, readback: str) -> bool:
        return self._knob.matches(written, readback)


def _revoked(owner: str, target: str) -> WriteError:
    return WriteError(
        f"actuators of {owner!r} are revoked (agent quarantined or stopped): write to {target} refused",
        target=target,
        reason="revoked",
    )


class OwnerWriter(HostWriter):
    """A :class:`HostWriter` behind an owner's revocation gate."""

    def __init__(self, *, gate: Gate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gate = gate

    def check(self, target: str) -> None:
        """Raise ``WriteError(reason="revoked")`` if this owner may no longer write."""
        if self._gate.revoked:
            raise _revoked(self.owner, target)

    def write(
        self, knob: Knob, value: str, *, guard: ActuationGuard | None = None, now: float = 0.0
    ) -> WriteResult:
        self.check(knob.target)
        return super().write(_GatedKnob(knob, self._gate, self.owner), value, guard=guard, now=now)

    def gated(self, target: str, action: Callable[[], Any]) -> Any:
        """Run a host change that is not a knob write (e.g. ``mkdir``) under the gate."""
        with self._gate.lock:
            if self._gate.revoked:
                raise _revoked(self.owner, target)
            return action()


def check_writer(writer: HostWriter, target: str) -> None:
    """Refuse early if ``writer`` is an owner's writer that was revoked."""
    if isinstance(writer, OwnerWriter):
        writer.check(target)


def gated(writer: HostWriter, target: str, action: Callable[[], Any]) -> Any:
    """Run a host change that is not a knob write under ``writer``'s gate (if it has one)."""
    if isinstance(writer, OwnerWriter):
        return writer.gated(target, action)
    return action()
