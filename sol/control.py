"""The control socket: a Unix stream socket speaking JSON lines (DESIGN §6).

One request per line, one reply per request, in order::

    -> {"cmd": "status"}
    <- {"ok": true, "result": {...}}
    -> {"cmd": "pause", "agent": "cpu_harvest", "id": 7}
    <- {"ok": false, "id": 7, "code": "forbidden", "error": "pause changes the daemon: ..."}

A request is a JSON object with a string ``cmd`` and the command's arguments; an ``id``
(string or integer) is echoed back. A reply has ``ok``; ``result`` when ok, else ``code``
(``bad-request``, ``too-long``, ``unknown-command``, ``forbidden``, ``failed``, ``busy``)
and ``error``, a sentence for the operator.

Who may do what. The socket is created mode 0600 (0660 with a configured group): only root
(and that group) can connect at all. Commands that change anything (pause, resume, dry-run,
restore, reload) are further checked against the peer's credentials (``SO_PEERCRED``, which
the kernel fills in and the client cannot forge): only root or the daemon's own user may run
them; members of the group can read status.

What a client cannot do to the daemon. Lines longer than ``MAX_LINE`` bytes get a
``too-long`` reply and the connection is closed (a stream without a newline cannot be
re-synchronised). Bytes that are not UTF-8, JSON that is not an object, deeply nested JSON,
unknown commands and wrong argument types get an error reply and the connection stays usable.
At most ``MAX_CLIENTS`` connections are served at once (more get ``busy``), an idle
connection is closed after ``IDLE_TIMEOUT`` seconds, and a client that does not read its
replies is cut off once ``MAX_PENDING`` bytes of them are queued. One thread serves every
connection with a selector, so no client can hold a thread hostage; commands run one at a
time on that thread.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import os
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CLIENTS",
    "MAX_LINE",
    "Command",
    "CommandError",
    "ControlError",
    "ControlServer",
    "Peer",
    "handle_line",
    "request",
]

#: Longest request line accepted, in bytes (newline excluded).
MAX_LINE = 64 * 1024
#: Connections served at once.
MAX_CLIENTS = 16
#: Seconds a connection may stay silent before it is closed.
IDLE_TIMEOUT = 60.0
#: Bytes of replies queued for one client before it is cut off (it is not reading).
MAX_PENDING = 1 << 20
#: AF_UNIX paths are limited to 108 bytes including the terminating NUL (Linux).
MAX_PATH = 107


class ControlError(RuntimeError):
    """The control socket cannot be set up or reached; the message says why and what to do."""


class CommandError(Exception):
    """A command refused or failed; ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as the kernel says (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Command:
    """One command: ``run(args, peer)`` returns a JSON-able result or raises ``CommandError``."""

    run: Callable[[Mapping[str, Any], Peer], Any]
    #: changes the daemon or the host: peer credentials are checked
    mutating: bool = False
    help: str = ""


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    peer: Peer
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    last: float = field(default_factory=time.monotonic)
    closing: bool = False


def _reply(ok: bool, rid: object, **body: Any) -> bytes:
    out: dict[str, Any] = {"ok": ok}
    if rid is not None:
        out["id"] = rid
    out.update(body)
    return (json.dumps(out, default=str, allow_nan=False, ensure_ascii=False) + "\n").encode()


def _error(code: str, message: str, rid: object = None) -> bytes:
    return _reply(False, rid, code=code, error=message)


def handle_line(
    line: bytes,
    peer: Peer,
    commands: Mapping[str, Command],
    *,
    admins: frozenset[int] = frozenset({0}),
    log: Any = None,
) -> bytes:
    """The reply (one JSON line) to one request line; never raises."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _error("bad-request", f"request is not UTF-8 text (byte {exc.start})")
    try:
        req = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _error("bad-request", f"request is not JSON: {str(exc)[:200]}")
    if not isinstance(req, dict):
        return _error("bad-request", 'a request is a JSON object, e.g. {"cmd": "status"}')
    rid = req.get("id")
    if rid is not None and not (
        (isinstance(rid, str) and len(rid) <= 128)
        or (isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < 2**53)
    ):
        return _error("bad-request", "id must be a string (up to 128 characters) or an integer")
    name = req.get("cmd")
    if not isinstance(name, str):
        return _error("bad-request", 'the request has no "cmd" string', rid)
    command = commands.get(name)
    if command is None:
        known = ", ".join(sorted(commands))
        return _error("unknown-command", f"unknown command {name[:64]!r}; commands: {known}", rid)
    if command.mutating and peer.uid not in admins:
        return _error(
            "forbidden",
            f"{name} changes the daemon: only root may run it (you are uid {peer.uid})",
            rid,
        )
    args = {k: v for k, v in req.items() if k not in ("cmd", "id")}
    try:
        result = command.run(args, peer)
    except CommandError as exc:
        return _error(exc.code, str(exc), rid)
    except Exception as exc:  # a bug in a command must not take the daemon down
        if log is not None:
            log.error("control.command_crashed", cmd=name, error=f"{type(exc).__name__}: {exc}")
        return _error("failed", f"{name} failed: {type(exc).__name__}: {exc}", rid)
    if log is not None and command.mutating:
        log.info("control.command", cmd=name, args=args, uid=peer.uid, pid=peer.pid)
    try:
        return _reply(True, rid, result=result)
    except ValueError as exc:  # NaN in a result, say
        return _error("failed", f"{name}: result is not JSON: {exc}", rid)


class ControlServer:
    """Serves ``commands`` on the Unix socket ``path`` until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        commands: Mapping[str, Command],
        *,
        group: str | None = None,
        log: Any = None,
        max_line: int = MAX_LINE,
        max_clients: int = MAX_CLIENTS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.path = Path(path)
        self.commands = commands
        self.group = group
        self.log = log
        self.max_line = max_line
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.admins = frozenset({0, os.geteuid()})
        self._sock: socket.socket | None = None
        self._ino: int | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = threading.Event()
        self._conns: dict[int, _Conn] = {}
        self.created_dir: Path | None = None

    # -- setup ------------------------------------------------------------------------
    def start(self) -> None:
        path = self.path
        if len(os.fsencode(path)) > MAX_PATH:
            raise ControlError(
                f"control socket path {path} is longer than {MAX_PATH} bytes (an AF_UNIX limit); "
                "set [daemon] control_socket to a shorter path"
            )
        if not path.parent.is_dir():
            try:
                path.parent.mkdir(parents=True, mode=0o755)
            except OSError as exc:
                raise ControlError(f"cannot create {path.parent} for the control socket: {exc}") from exc
            self.created_dir = path.parent
        self._clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # Created 0600 by the umask, so there is no moment when anyone else may connect.
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create the control socket {path}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old)
        self._ino = os.stat(path).st_ino
        if self.group:
            self._grant_group(path, self.group)
        sock.listen(self.max_clients)
        sock.setblocking(False)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="sol-control", daemon=True)
        self._thread.start()
        if self.log is not None:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            self.log.info("control.listening", socket=str(path), mode=f"{mode:04o}", group=self.group)

    def _clear_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(
                f"{path} exists and is not a socket; remove it or choose another control_socket"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # nobody listens: left by a crashed daemon
            return
        finally:
            probe.close()
        raise ControlError(f"another sol daemon answers on {path}; stop it first (`systemctl stop sol`)")

    def _grant_group(self, path: Path, group: str) -> None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            if self.log is not None:
                self.log.error("control.group_unknown", group=group, socket=str(path), mode="0600")
            return
        try:
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
        except OSError as exc:
            # Fail closed: the socket stays 0600 (root only). Under the shipped unit,
            # chgrp needs SupplementaryGroups=<group> (see docs/operating.md).
            if self.log is not None:
                self.log.error(
                    "control.group_failed",
                    group=group,
                    socket=str(path),
                    error=exc.strerror or str(exc),
                    hint=f"add SupplementaryGroups={group} to the unit (a drop-in)",
                )

    # -- serving ----------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closed.is_set():
                # idle connections expire (checked once a second); with none open, sleep
                # until a client or close() wakes us: an idle daemon's socket costs no wake-ups
                for key, events in sel.select(timeout=1.0 if self._conns else None):
                    if key.data == "listen":
                        self._accept(sel)
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        conn = self._conns.get(key.fd)
                        if conn is not None:
                            self._service(sel, conn, events)
                self._expire(sel)
        except Exception as exc:  # never silently: the daemon keeps running without it
            if self.log is not None:
                self.log.error("control.crashed", error=f"{type(exc).__name__}: {exc}")
        finally:
            for conn in list(self._conns.values()):
                self._drop(sel, conn)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._sock is not None
        try:
            client, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                if self.log is not None:
                    self.log.warning("control.accept_failed", error=str(exc))
                time.sleep(0.05)  # do not spin on a full descriptor table
                return
            raise
        client.setblocking(False)
        if len(self._conns) >= self.max_clients:
            with contextlib.suppress(OSError):
                client.send(_error("busy", f"more than {self.max_clients} clients; try again"))
            client.close()
            return
        creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        conn = _Conn(client, Peer(pid, uid, gid))
        self._conns[client.fileno()] = conn
        sel.register(client, selectors.EVENT_READ, "conn")

    def _service(self, sel: selectors.BaseSelector, conn: _Conn, events: int) -> None:
        if events & selectors.EVENT_READ and not conn.closing:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._drop(sel, conn)
                return
            if data == b"":
                if conn.inbuf.strip():  # a last request without its newline
                    self._answer(conn, bytes(conn.inbuf))
                conn.inbuf.clear()
                conn.closing = True
            elif data:
                conn.last = time.monotonic()
                conn.inbuf += data
                self._process(conn)
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(sel, conn)
                return
            del conn.outbuf[:sent]
            if sent:
                conn.last = time.monotonic()
        if len(conn.outbuf) > MAX_PENDING or (conn.closing and not conn.outbuf):
            self._drop(sel, conn)
            return
        want = selectors.EVENT_WRITE if conn.outbuf else 0
        if not conn.closing:
            want |= selectors.EVENT_READ
        sel.modify(conn.sock, want or selectors.EVENT_WRITE, "conn")

    def _process(self, conn: _Conn) -> None:
        while True:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                if len(conn.inbuf) > self.max_line:
                    conn.outbuf += _error(
                        "too-long", f"request longer than {self.max_line} bytes; connection closed"
                    )
                    conn.inbuf.clear()
                    conn.closing = True
                return
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[: nl + 1]
            if len(line) > self.max_line:
                conn.outbuf += _error(
                    "too-long", f"request longer than {self.max_line} bytes; connection closed"
                )
                conn.inbuf.clear()
                conn.closing = True
                return
            if line.strip():
                self._answer(conn, line)

    def _answer(self, conn: _Conn, line: bytes) -> None:
        conn.outbuf += handle_line(line, conn.peer, self.commands, admins=self.admins, log=self.log)

    def _expire(self, sel: selectors.BaseSelector) -> None:
        limit = time.monotonic() - self.idle_timeout
        for conn in list(self._conns.values()):
            if conn.last < limit:
                self._drop(sel, conn)

    def _drop(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        conn.sock.close()

    # -- shutdown ---------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            # only our own socket: a newer daemon may already have bound the path
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
        if self.created_dir is not None:
            with contextlib.suppress(OSError):
                self.created_dir.rmdir()  # only if empty
        self._wake_r.close()
        self._wake_w.close()


def request(path: Path, payload: Mapping[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its reply (a client helper)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}: is the daemon running?") from None
        except ConnectionRefusedError:
            raise ControlError(f"nothing answers on {path}: the daemon is not running") from None
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: run as root (or as a member of [daemon] control_group)"
            ) from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        # The daemon may answer without reading (``busy``) and close at once: its reply is
        # then still in our receive buffer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall((json.dumps(dict(payload)) + "\n").encode())
        buf = bytearray()
        while b"\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise ControlError(f"the daemon on {path} did not answer within {timeout:g}s") from None
            except ConnectionResetError:
                break  # closed with our request unread: what it sent before is all there is
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    line = bytes(buf).split(b"\n", 1)[0]
    if not line:
        raise ControlError(f"the daemon on {path} closed the connection without a reply")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"the daemon on {path} sent a reply that is not JSON: {line[:200]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the daemon on {path} sent an unexpected reply: {reply!r}")
    return reply
