"""The systemd notification protocol (``sd_notify(3)``), without libsystemd.

systemd gives a ``Type=notify`` service the address of a datagram socket in
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and, with
``WatchdogSec=``, the watchdog interval in ``$WATCHDOG_USEC`` (for the process in
``$WATCHDOG_PID``, when set). The service sends newline-separated ``KEY=VALUE`` lines:

- ``READY=1`` once it serves (here: after every agent is set up, the control socket and
  the metrics endpoint are listening);
- ``WATCHDOG=1`` at least every ``WATCHDOG_USEC``; systemd kills and (``Restart=on-failure``)
  restarts a service that stops sending it;
- ``STATUS=...`` a one-line summary that ``systemctl status`` shows;
- ``RELOADING=1`` (with ``MONOTONIC_USEC=``) at the start of a reload, ``READY=1`` at its end;
- ``STOPPING=1`` when shutting down.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemon code never asks
whether it runs under systemd. A failing send is logged once and never raised: a
notification is never worth crashing a daemon that keeps a host safe.

>>> n = Notifier(environ={})
>>> n.enabled, n.watchdog_interval, n.ready()
(False, None, False)
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["Notifier"]


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (read once, at construction)."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, log: Any = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.log = log
        # made once here: the main loop and the control socket's thread both notify
        self._sock: socket.socket | None = (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if self.address else None
        )
        self._failed = False
        self.watchdog_usec = _watchdog_usec(env)
        self.last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """How often to send ``WATCHDOG=1`` (half the interval systemd enforces), or None."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        return self.watchdog_usec / 2e6

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` lines (``ready=1`` -> ``READY=1``); True when sent."""
        if self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")  # one value per line, by protocol
            lines.append(f"{key.upper()}={text}")
        payload = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        if self._sock is None:  # closed
            return False
        try:
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            if not self._failed and self.log is not None:
                self.log.error("notify.failed", socket=str(self.address), error=str(exc))
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        if status is not None:
            self.last_status = status
            return self.notify(ready=1, status=status)
        return self.notify(ready=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this to its reload job
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(reloading=1, monotonic_usec=usec)

    def stopping(self, status: str | None = None) -> bool:
        if status is not None:
            return self.notify(stopping=1, status=status)
        return self.notify(stopping=1)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def status(self, text: str) -> bool:
        """``STATUS=``; only sent when it changed (systemd keeps the last one)."""
        if text == self.last_status:
            return False
        self.last_status = text
        return self.notify(status=text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not for a host daemon


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent); not ours to keep alive
    return usec
