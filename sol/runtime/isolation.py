"""Agents may not start threads: the runtime refuses a thread started inside an agent callback.

Every guarantee the runtime gives about an agent's cost is enforced on the threads it runs the
agent's callbacks on: the model side's ``cpu_budget`` is charged from the lane's thread-CPU
clock, ``callback_timeout`` is measured around the call, a quarantine ends the lanes. A thread
the agent starts itself escapes all of it: its CPU is charged to nobody, it keeps running after
a timeout, a quarantine, a stop. So a thread start from inside a callback (``setup`` and
``clean_up`` included) raises :class:`AgentThreadError` in the agent's code, the thread is not
started, and the executor reports the callback as failed (``agent.thread_refused``), even if
the agent caught the error: the runtime counts it as any other error, and repeated ones
quarantine the agent. Threads the runtime starts for itself (lanes, the watchdog, detached
``setup``/``clean_up`` calls) are started outside any callback and are not affected.

How a start is seen. Python 3.12 and later raise the audit event ``_thread.start_new_thread``
(3.13: ``_thread.start_joinable_thread`` for ``threading``) in the thread that starts the
new one, before it exists; one audit hook per process refuses it there. Python 3.11 raises no
event for a thread start, so there the same check wraps the start functions of ``_thread`` and
``threading`` instead (``threading.Thread.start`` and everything built on it: executors, timers).
A reference to ``_thread.start_new_thread`` taken before the first executor was built bypasses
the wrapper on 3.11; native threads (a C library's own pool) are out of reach on every version.

The flag that says "this thread is inside callback C of agent A" is a thread-local the
executors set around each agent call. It is module state because the audit hook is: a hook is
installed for the life of the process and cannot be removed, so both live here, once.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["AgentThreadError", "enter", "install", "leave"]

#: The audit events CPython raises, in the starting thread, before a thread starts.
THREAD_START_EVENTS = frozenset({"_thread.start_new_thread", "_thread.start_joinable_thread"})


class AgentThreadError(RuntimeError):
    """An agent callback tried to start a thread (refused: see the module docstring)."""


class _Where(threading.local):
    #: (agent, callback) while this thread runs an agent callback, else None
    inside: tuple[str, str] | None = None
    #: the refusal of a thread start during the current callback, if any
    refused: str | None = None


_WHERE = _Where()
_installed = False
_install_lock = threading.Lock()


def refusal(agent: str, callback: str) -> str:
    return (
        f"agent {agent!r} started a thread in {callback}(): threads escape the runtime's CPU "
        f"budget, callback timeouts and quarantine, so agents may not start them; do the work "
        f"in the callback (each agent has its own model and actuator lanes) or spread it over ticks"
    )


def _check() -> None:
    where = _WHERE.inside
    if where is not None:
        msg = refusal(*where)
        _WHERE.refused = msg
        raise AgentThreadError(msg)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Sees every audit event of the process (every open(), import, compile ...): one set
    # lookup on a string whose hash is cached, and nothing else unless a thread starts.
    if event in THREAD_START_EVENTS:
        _check()


def _guarded(start: Callable[..., Any]) -> Callable[..., Any]:
    def start_new_thread(*args: Any, **kwargs: Any) -> Any:
        _check()
        return start(*args, **kwargs)

    start_new_thread.__wrapped__ = start  # type: ignore[attr-defined]
    start_new_thread.__doc__ = start.__doc__
    return start_new_thread


def install() -> None:
    """Refuse thread starts inside agent callbacks, from now on, in this process (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        if sys.version_info >= (3, 12):
            sys.addaudithook(_audit)
        else:
            # 3.11 raises no audit event for a thread start (added in 3.12, gh-99377)
            guarded = _guarded(_thread.start_new_thread)
            _thread.start_new_thread = guarded
            _thread.start_new = guarded  # type: ignore[attr-defined]
            threading._start_new_thread = guarded  # type: ignore[attr-defined]
        _installed = True


def enter(agent: str, callback: str) -> None:
    """This thread now runs ``callback`` of ``agent``: a thread it starts is refused."""
    _WHERE.inside = (agent, callback)


def leave() -> str | None:
    """The callback returned (or raised): the refusal message if it tried to start a thread."""
    where = _WHERE
    where.inside = None
    refused = where.refused
    if refused is not None:
        where.refused = None
    return refused
