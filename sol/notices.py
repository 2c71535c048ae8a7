"""Platform notices: what the node is about to do to a workload, said before it does it.

The other half of the channel :mod:`sol.hints` opens (HarmonAIze, arXiv 2501.09562): before an
action that affects a workload -- cores lent or taken back, a power cap, memory moved to the
far tier, a function's cache unloaded -- the agent publishes a :class:`Notice`: what, to whom,
when it takes effect and for how long it is expected to last. An agent states each action's
**lead time**: a non-urgent action waits until its notice has been out that long
(:meth:`AgentNotices.ready` says when); a mitigation acts at once and says so
(:meth:`AgentNotices.urgent`; the runtime publishes one itself whenever it calls an agent's
``mitigate`` or restores its settings).

Workloads read them

* over the control or workload socket (``sol notices [--follow] [--cgroup PATH]``, JSON
  lines): a client asks for the notices after the last sequence number it saw. The board keeps
  the last ``capacity`` notices in a ring; a client that falls further behind is told how many
  it missed. No subscriber holds anything in the daemon, so a slow or dead one can neither
  delay an action nor grow the daemon's memory;
* where they cannot speak to a socket, from a per-cgroup file: ``<dir>/<cgroup path>.json``
  (the cgroup's path with ``/`` kept as directories), the cgroup's last ``per_target``
  notices, rewritten atomically on each new one. A write that fails is counted, never raised.

Times are the board's clock: Unix seconds live, the simulated clock in simulation.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AgentNotices", "Notice", "NoticeBoard"]

#: notices kept for clients to catch up on
CAPACITY = 4096
#: notices kept in each per-cgroup file
PER_TARGET = 16
#: the longest lead time an agent may ask for (an hour): a notice is a warning, not a plan
MAX_LEAD_S = 3600.0


@dataclass(frozen=True, slots=True)
class Notice:
    seq: int
    agent: str
    #: what is done, e.g. "lend-cores", "take-back-cores", "power-cap", "demote-memory"
    action: str
    #: whom it affects: a cgroup path, "gpu:0", "function:NAME", or "*" (every target)
    target: str
    #: when it was published and when it takes effect (the board's clock)
    announced: float
    at: float
    #: how long it is expected to last (None: until further notice)
    duration_s: float | None = None
    urgent: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "agent": self.agent,
            "action": self.action,
            "target": self.target,
            "announced": round(self.announced, 6),
            "at": round(self.at, 6),
            "duration_s": self.duration_s,
            "urgent": self.urgent,
            "detail": dict(self.detail),
        }


def _affects(target: str, cgroup: str) -> bool:
    """A notice for ``target`` concerns ``cgroup``: the same cgroup, one above or below it, or
    every target."""
    if target == "*":
        return True
    a, b = target.strip("/"), cgroup.strip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


class NoticeBoard:
    """Every agent's notices, in order; thread-safe. ``clock()`` is the board's time."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        capacity: int = CAPACITY,
        files: Path | None = None,
        per_target: int = PER_TARGET,
        log: Any = None,
    ) -> None:
        if capacity < 1 or per_target < 1:
            raise ValueError("a notice board keeps at least one notice")
        self.clock = clock
        self.files = files
        self.per_target = per_target
        self.log = log
        self._lock = threading.Lock()
        self._ring: deque[Notice] = deque(maxlen=capacity)
        self._seq = 0
        #: (agent, action, target) -> the notice of an action not yet taken
        self._pending: dict[tuple[str, str, str], Notice] = {}
        self._by_file: dict[str, deque[Notice]] = {}
        self.file_errors = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def publish(
        self,
        agent: str,
        action: str,
        target: str,
        *,
        lead_s: float = 0.0,
        duration_s: float | None = None,
        urgent: bool = False,
        detail: Mapping[str, Any] | None = None,
    ) -> Notice:
        if not 0.0 <= lead_s <= MAX_LEAD_S:
            raise ValueError(f"a notice's lead time must be in [0, {MAX_LEAD_S:g}] s, got {lead_s!r}")
        now = self.clock()
        with self._lock:
            self._seq += 1
            n = Notice(
                self._seq, agent, action, target, now, now + lead_s, duration_s, urgent, dict(detail or {})
            )
            self._ring.append(n)
            touched = self._file_key(target)
            if touched is not None:
                self._by_file.setdefault(touched, deque(maxlen=self.per_target)).append(n)
                if len(self._by_file) > 4 * CAPACITY:  # bounded: forget the oldest files' notices
                    self._by_file.pop(next(iter(self._by_file)))
        if touched is not None:
            self._write(touched)
        if self.log is not None:
            self.log.debug("notice", **n.as_dict())
        return n

    def since(
        self, seq: int = 0, cgroup: str | None = None, limit: int = 1000
    ) -> tuple[list[Notice], int, int]:
        """Notices after ``seq`` (for ``cgroup`` only, when given), at most ``limit``; how many
        after ``seq`` were already dropped from the ring; the last sequence number."""
        with self._lock:
            ring = list(self._ring)
            last = self._seq
        oldest = ring[0].seq if ring else last + 1
        missed = max(0, oldest - seq - 1) if seq < oldest - 1 else 0
        out = [n for n in ring if n.seq > seq and (cgroup is None or _affects(n.target, cgroup))]
        return out[:limit], missed, last

    # -- per-cgroup files --------------------------------------------------------------------
    def _file_key(self, target: str) -> str | None:
        if self.files is None or target == "*" or ":" in target:
            return None
        key = target.strip("/")
        if not key or ".." in key.split("/") or "\0" in key:
            return None
        return key

    def _write(self, key: str) -> None:
        assert self.files is not None
        with self._lock:
            notices = [n.as_dict() for n in self._by_file.get(key, ())]
        path = self.files / f"{key}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"cgroup": key, "notices": notices}, f)
            os.replace(tmp, path)
        except OSError as exc:
            self.file_errors += 1
            with contextlib.suppress(OSError):
                tmp.unlink()
            if self.log is not None and self.file_errors in (1, 10, 100, 1000):
                self.log.warning(
                    "notices.file_failed", path=str(path), problem=exc.strerror, count=self.file_errors
                )

    # -- an agent's view ---------------------------------------------------------------------
    def for_agent(self, agent: str) -> AgentNotices:
        return AgentNotices(self, agent)


class AgentNotices:
    """``ctx.notices``: one agent's side of the board.

    In ``act``::

        if self.ctx.notices.ready("power-cap", "gpu:1", lead_s=2.0, duration_s=30.0):
            self.gpu.set_power_limit(1, watts)      # the notice has been out 2 s

    ``ready`` publishes the notice the first time it is asked about an action and returns True
    once its lead time has passed (the action is then taken: the next ``ready`` for the same
    action and target publishes a fresh notice). ``urgent`` publishes a notice with no lead
    time, for an action taken now (a mitigation).
    """

    def __init__(self, board: NoticeBoard, agent: str) -> None:
        self.board = board
        self.agent = agent

    def ready(
        self,
        action: str,
        target: str,
        *,
        lead_s: float,
        duration_s: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        key = (self.agent, action, target)
        board = self.board
        pending = board._pending.get(key)
        if pending is None:
            pending = board.publish(
                self.agent, action, target, lead_s=lead_s, duration_s=duration_s, detail=detail
            )
            board._pending[key] = pending
        if board.clock() + 1e-9 >= pending.at:
            board._pending.pop(key, None)
            return True
        return False

    def withdraw(self, action: str, target: str) -> None:
        """The action is no longer planned (published notices stay; a later ``ready`` starts
        a fresh lead time)."""
        self.board._pending.pop((self.agent, action, target), None)

    def urgent(
        self,
        action: str,
        target: str = "*",
        *,
        duration_s: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Notice:
        self.board._pending.pop((self.agent, action, target), None)
        return self.board.publish(
            self.agent, action, target, urgent=True, duration_s=duration_s, detail=detail
        )
