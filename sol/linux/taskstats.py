"""Per-task CPU delay over the taskstats generic-netlink family (pyroute2).

Documentation/accounting/taskstats.rst: a ``TASKSTATS_CMD_GET`` with
``TASKSTATS_CMD_ATTR_PID`` answers one ``struct taskstats`` for the task;
Documentation/accounting/delay-accounting.rst: ``cpu_delay_total`` is the time the task
waited on a run queue (ns), ``cpu_count`` the number of waits. The CPU delay comes from the
scheduler's ``sched_info`` and is filled in even with ``kernel.task_delayacct = 0``; the
block-I/O and swap-in delays need delay accounting on. Only fields whose offset is the same
in every struct version are used (``cpu_count``, ``cpu_delay_total``).
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sol.kernel.errors import SensorError, Unsupported

__all__ = ["TaskDelay", "TaskstatsReader", "delayacct_enabled"]

_SOURCE = "netlink:TASKSTATS"


@dataclass(frozen=True, slots=True)
class TaskDelay:
    tid: int
    cpu_count: int
    cpu_delay_ns: int


def delayacct_enabled(proc_root: Path) -> bool | None:
    """``kernel.task_delayacct`` (``None`` when the kernel has no such sysctl)."""
    try:
        return (proc_root / "sys" / "kernel" / "task_delayacct").read_text().strip() == "1"
    except OSError:
        return None


def _find(tree: Any, key: str) -> Any:
    """Depth-first search of pyroute2's nested ``attrs`` for ``key``."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    elif isinstance(tree, (list, tuple)):
        if len(tree) == 2 and tree[0] == key:
            return tree[1]
        for item in tree:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def _stats(reply: Any) -> Any:
    """The ``struct taskstats`` of a reply: pyroute2 messages (``get_attr``), or plain data."""
    for msg in reply:
        if hasattr(msg, "get_attr"):
            for aggr_name in ("TASKSTATS_TYPE_AGGR_PID", "TASKSTATS_TYPE_AGGR_TGID"):
                aggr = msg.get_attr(aggr_name)
                if aggr is not None and hasattr(aggr, "get_attr"):
                    return aggr.get_attr("TASKSTATS_TYPE_STATS")
    return _find(list(reply), "TASKSTATS_TYPE_STATS")


class TaskstatsReader:
    """One bound TASKSTATS socket; thread-safe. ``factory`` builds the socket (tests pass fakes)."""

    def __init__(self, factory: Any = None) -> None:
        self._factory = factory
        self._sock: Any = None
        self._lock = threading.Lock()

    def _socket(self) -> Any:
        if self._sock is None:
            factory = self._factory
            if factory is None:
                try:
                    from pyroute2 import TaskStats
                except ImportError as exc:
                    raise Unsupported("taskstats", "pyroute2 is not installed") from exc
                factory = TaskStats
            sock = factory()
            try:
                sock.bind()
            except Exception as exc:
                sock.close()
                raise Unsupported("taskstats", f"cannot bind the TASKSTATS family: {exc}") from exc
            self._sock = sock
        return self._sock

    def delay(self, tid: int) -> TaskDelay:
        with self._lock:
            sock = self._socket()
            try:
                reply = sock.get_pid_stat(tid)
            except Exception as exc:
                code = getattr(exc, "code", None)
                if code == errno.ESRCH:
                    raise SensorError(
                        f"{_SOURCE} pid {tid}", "ESRCH: the task exited", errno_name="ESRCH"
                    ) from exc
                if code == errno.EPERM:
                    raise SensorError(
                        f"{_SOURCE} pid {tid}", "EPERM: needs root", errno_name="EPERM"
                    ) from exc
                raise SensorError(f"{_SOURCE} pid {tid}", f"request failed: {exc}") from exc
        stats = _stats(reply)
        if not isinstance(stats, dict):
            raise SensorError(f"{_SOURCE} pid {tid}", "reply without TASKSTATS_TYPE_STATS")
        count, delay = stats.get("cpu_count"), stats.get("cpu_delay_total")
        if not isinstance(count, int) or not isinstance(delay, int) or count < 0 or delay < 0:
            raise SensorError(
                f"{_SOURCE} pid {tid}", f"bad counters cpu_count={count!r} cpu_delay_total={delay!r}"
            )
        return TaskDelay(tid, count, delay)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.close()
                finally:
                    self._sock = None
