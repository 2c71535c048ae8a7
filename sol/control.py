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
A client that does not read its replies is cut off once ``MAX_PENDING`` bytes of them are
queued. One thread serves every connection with a selector, so no client can hold a thread
hostage; commands run one at a time on that thread.

What a user cannot do to root. A member of the group must not be able to keep root (or the
daemon's own tools: ``sol ctl reload`` is the unit's ``ExecReload=``, ``sol restore`` its
``ExecStopPost=``) out, nor spend the CPU the agents' lanes need: the unit's ``CPUQuota=`` is
one budget for every thread of the daemon, and a socket thread that spends it gets the lanes
throttled until the next period. "Admins" are root and the daemon's own uid; everyone else is
a user, told apart by ``SO_PEERCRED``. The limits (fields of :class:`Limits`):

- Slots. Users have ``MAX_CLIENTS`` connections among them and ``MAX_CLIENTS_PER_UID`` each;
  admins have their own ``MAX_ADMIN_CLIENTS``, which no user can take. A refused connection
  gets a ``busy`` reply saying which limit it hit ("per user limit", "total limit"), and is
  closed.
- Rate. Each user uid has a token bucket of ``RATE`` a second (``RATE_BURST`` at once) that
  every connection and every request takes from, and all users together one of
  ``GLOBAL_RATE`` requests (``GLOBAL_BURST``), so the work done for users a second is bounded
  however many uids share it. Over the limit, the request is not even parsed: its reply is
  ``busy``, "rate limited" (without the request's ``id``; replies stay in order).
- Cut-off. After ``MAX_REFUSALS`` refusals in a row a uid's connections are closed and it is
  kept out for ``COOLDOWN`` seconds, in the kernel where it can be: an ACL entry on the
  socket file denies that uid, so its connects fail with ``EACCES`` and cost the daemon
  nothing (refusing each one here would cost an accept and a close, and a user connecting in
  a loop could make those spend the whole quota). Where the file system has no ACLs, the
  daemon refuses them itself and says so in the log.
- Cost. A user's read-only command is answered from a cache of that uid's last answer for
  ``CACHE_TTL`` seconds (``status`` computes every agent's figures).
- Fairness. At most ``LINES_PER_TURN`` requests of one connection are answered per turn of
  the selector, the rest in later turns; a connection with requests waiting is not read from
  (its sender blocks), so a pipelined flood queues in the sender, not in the daemon.
- Idle. A user's connection with no complete request for ``IDLE_TIMEOUT`` seconds is closed,
  an admin's after ``ADMIN_IDLE_TIMEOUT``; expiry runs on its own clock, not only when the
  selector is quiet.
- Connects. The listen backlog is ``socket.SOMAXCONN`` and up to ``ACCEPTS_PER_TURN`` are
  accepted per wake: a burst of clients gets replies (``busy`` or real), not ``EAGAIN`` from
  ``connect()`` (what a full AF_UNIX backlog tells a non-blocking socket; :func:`request`
  waits that out too).

The serving thread keeps the daemon's scheduling priority. A per-thread nice value was tried:
it made no difference to the lanes (quota throttling stops every thread alike; once the work
is bounded there is nothing left for it to arbitrate), and the lane threads that an admin's
``resume`` or ``reload`` starts on this thread would inherit it. Figures:
docs/operating.md, "The control socket".
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
    "ACCEPTS_PER_TURN",
    "ADMIN_IDLE_TIMEOUT",
    "CACHE_TTL",
    "COOLDOWN",
    "GLOBAL_BURST",
    "GLOBAL_RATE",
    "IDLE_TIMEOUT",
    "LINES_PER_TURN",
    "MAX_ADMIN_CLIENTS",
    "MAX_CLIENTS",
    "MAX_CLIENTS_PER_UID",
    "MAX_LINE",
    "MAX_PENDING",
    "MAX_REFUSALS",
    "RATE",
    "RATE_BURST",
    "Command",
    "CommandError",
    "ControlError",
    "ControlServer",
    "Limits",
    "Peer",
    "handle_line",
    "request",
]

#: Longest request line accepted, in bytes (newline excluded).
MAX_LINE = 64 * 1024
#: Connections of users (not root, not the daemon's uid) served at once, all uids together.
MAX_CLIENTS = 16
#: Connections of one user uid served at once.
MAX_CLIENTS_PER_UID = 4
#: Connections of admins (root, the daemon's uid) served at once: their own, users cannot take them.
MAX_ADMIN_CLIENTS = 64
#: Seconds a user's connection may go without a complete request before it is closed.
IDLE_TIMEOUT = 10.0
#: Seconds an admin's connection may go without a complete request before it is closed.
ADMIN_IDLE_TIMEOUT = 60.0
#: Requests a second one user uid may make (token bucket refill), and at once (bucket size).
RATE = 20.0
RATE_BURST = 40
#: Requests a second all users together may make, and at once.
GLOBAL_RATE = 50.0
GLOBAL_BURST = 100
#: Refused requests in a row after which a uid's connections are closed ...
MAX_REFUSALS = 20
#: ... and its new ones refused, for this many seconds.
COOLDOWN = 10.0
#: Seconds a user's read-only command is answered from that uid's last answer.
CACHE_TTL = 0.25
#: Requests of one connection answered per turn of the selector (the rest wait their turn).
LINES_PER_TURN = 8
#: Connections accepted per wake of the selector.
ACCEPTS_PER_TURN = 64
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
    #: a user's answer may be served from that uid's cache (read-only commands whose answer
    #: does not depend on the peer beyond its uid); off: run every time
    cache: bool = True


@dataclass(frozen=True, slots=True)
class Limits:
    """What the socket grants its clients; the module docstring says what each limit is for.

    "Users" are peers other than root and the daemon's own uid ("admins"): every rate, cache
    and per-uid limit applies to users only; admins are bounded by their own slots alone.
    """

    max_line: int = MAX_LINE
    max_clients: int = MAX_CLIENTS
    max_clients_per_uid: int = MAX_CLIENTS_PER_UID
    max_admin_clients: int = MAX_ADMIN_CLIENTS
    idle_timeout: float = IDLE_TIMEOUT
    admin_idle_timeout: float = ADMIN_IDLE_TIMEOUT
    rate: float = RATE
    burst: int = RATE_BURST
    global_rate: float = GLOBAL_RATE
    global_burst: int = GLOBAL_BURST
    max_refusals: int = MAX_REFUSALS
    cooldown: float = COOLDOWN
    cache_ttl: float = CACHE_TTL
    lines_per_turn: int = LINES_PER_TURN
    accepts_per_turn: int = ACCEPTS_PER_TURN
    #: also keep a cut-off uid out in the kernel (an ACL entry on the socket), not only here
    kernel_ban: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_line",
            "max_clients_per_uid",
            "max_admin_clients",
            "burst",
            "global_burst",
            "max_refusals",
            "lines_per_turn",
            "accepts_per_turn",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("idle_timeout", "admin_idle_timeout", "rate", "global_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be positive, not {getattr(self, name)!r}")
        if self.max_clients < 0 or self.cooldown < 0 or self.cache_ttl < 0:
            raise ValueError("Limits.max_clients, cooldown and cache_ttl cannot be negative")


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass(slots=True)
class _User:
    """What the server keeps about one user uid (not about admins)."""

    bucket: _Bucket
    conns: int = 0
    #: refusals in a row (connections and requests over its rate)
    strikes: int = 0
    #: monotonic time until which new connections are refused (cut off for flooding)
    banned_until: float = 0.0


#: The access ACL of a file, as an extended attribute (acl(5)).
_ACL_XATTR = "system.posix_acl_access"


def _acl_denying(mode: int, uids: list[int]) -> bytes:
    """An access ACL that keeps ``mode`` for owner, group and others and denies ``uids``.

    The kernel's binary form (``linux/posix_acl_xattr.h``): version 2, then (tag, perm, id)
    entries in the order it validates: owner, named users by id, owning group, mask, others.
    A named user entry is matched before the group and other entries, so such a user cannot
    connect (connect(2) needs write permission on the socket file): ``EACCES``, without the
    daemon seeing the attempt. The mask is the group's bits, so ``ls -l`` shows ``mode``.
    """
    undefined = 0xFFFFFFFF
    owner, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    entries = [(0x01, owner, undefined)]  # ACL_USER_OBJ
    entries += [(0x02, 0, uid) for uid in sorted(uids)]  # ACL_USER: no permission
    entries += [(0x04, group, undefined), (0x10, group, undefined), (0x20, other, undefined)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    peer: Peer
    admin: bool
    last: float
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    #: complete requests wait in ``inbuf`` (over this turn's share): not read from meanwhile
    pending: bool = False
    closing: bool = False
    dropped: bool = False
    #: the events the selector watches for it now
    mask: int = selectors.EVENT_READ


def _reply(ok: bool, rid: object, **body: Any) -> bytes:
    out: dict[str, Any] = {"ok": ok}
    if rid is not None:
        out["id"] = rid
    out.update(body)
    return (json.dumps(out, default=str, allow_nan=False, ensure_ascii=False) + "\n").encode()


def _error(code: str, message: str, rid: object = None) -> bytes:
    return _reply(False, rid, code=code, error=message)


def _result_reply(rid: object, result_json: str) -> bytes:
    """The ok reply around a result already serialised: the bytes ``_reply`` would make."""
    rid_json = "" if rid is None else '"id": ' + json.dumps(rid, ensure_ascii=False) + ", "
    return ('{"ok": true, ' + rid_json + '"result": ' + result_json + "}\n").encode()


@dataclass(frozen=True, slots=True)
class _Request:
    rid: object
    name: str
    command: Command
    args: dict[str, Any]


def _parse(
    line: bytes, peer: Peer, commands: Mapping[str, Command], admins: frozenset[int]
) -> _Request | bytes:
    """The request in ``line``, or the error reply to it."""
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
    return _Request(rid, name, command, {k: v for k, v in req.items() if k not in ("cmd", "id")})


def _execute(req: _Request, peer: Peer, log: Any) -> tuple[bytes, str | None]:
    """Run ``req``: the reply, and the result as JSON when it succeeded (for a cache)."""
    name, args = req.name, req.args
    try:
        result = req.command.run(args, peer)
    except CommandError as exc:
        return _error(exc.code, str(exc), req.rid), None
    except Exception as exc:  # a bug in a command must not take the daemon down
        if log is not None:
            log.error("control.command_crashed", cmd=name, error=f"{type(exc).__name__}: {exc}")
        return _error("failed", f"{name} failed: {type(exc).__name__}: {exc}", req.rid), None
    if log is not None and req.command.mutating:
        log.info("control.command", cmd=name, args=args, uid=peer.uid, pid=peer.pid)
    try:
        text = json.dumps(result, default=str, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:  # NaN in a result, say
        return _error("failed", f"{name}: result is not JSON: {exc}", req.rid), None
    return _result_reply(req.rid, text), text


def handle_line(
    line: bytes,
    peer: Peer,
    commands: Mapping[str, Command],
    *,
    admins: frozenset[int] = frozenset({0}),
    log: Any = None,
) -> bytes:
    """The reply (one JSON line) to one request line; never raises."""
    req = _parse(line, peer, commands, admins)
    if isinstance(req, bytes):
        return req
    return _execute(req, peer, log)[0]


class ControlServer:
    """Serves ``commands`` on the Unix socket ``path`` until :meth:`close`."""

    def __init__(
        self,
        path: Path,
        commands: Mapping[str, Command],
        *,
        group: str | None = None,
        log: Any = None,
        limits: Limits | None = None,
        public: bool = False,
    ) -> None:
        self.path = Path(path)
        self.commands = commands
        self.group = group
        #: mode 0666: every user may connect (the workload socket, whose commands check the
        #: peer themselves); the limits above keep any one of them from hurting the rest
        self.public = public
        self.log = log
        self.limits = limits or Limits()
        #: root and the daemon's own uid: may change the daemon, never short of a slot
        self.admins = frozenset({0, os.geteuid()})
        self._sock: socket.socket | None = None
        self._ino: int | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = threading.Event()
        self._conns: dict[int, _Conn] = {}
        #: fds of connections with complete requests left over from an earlier turn
        self._ready: set[int] = set()
        self._users: dict[int, _User] = {}
        #: uids denied in the socket's ACL now; None once the file system refused an ACL
        self._acl_banned: frozenset[int] | None = frozenset()
        self._user_conns = 0
        self._admin_conns = 0
        now = time.monotonic()
        lim = self.limits
        self._everyone = _Bucket(lim.global_rate, lim.global_burst, lim.global_burst, now)
        #: (uid, command, arguments) -> (expires, result as JSON)
        self._cache: dict[tuple[int, str, str], tuple[float, str]] = {}
        # expiry (of idle connections, of bans) runs this often: each lasts at most this longer
        self._tick = min(1.0, lim.idle_timeout / 4, lim.admin_idle_timeout / 4, (lim.cooldown or 4.0) / 4)
        self._next_expiry = now
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
        if self.public:
            os.chmod(path, 0o666)
        elif self.group:
            self._grant_group(path, self.group)
        # A large backlog: connect() on a non-blocking AF_UNIX socket fails with EAGAIN when
        # the backlog is full (it does not wait), so a burst of clients would see errors
        # rather than our `busy`. The kernel caps it at net.core.somaxconn.
        sock.listen(socket.SOMAXCONN)
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
                # Connections with requests left over are served again at once; otherwise
                # sleep until the next expiry check, or, with no connection open, until a
                # client or close() wakes us: an idle daemon's socket costs no wake-ups.
                if self._ready:
                    timeout: float | None = 0.0
                elif self._conns or self._banned():
                    timeout = max(0.0, self._next_expiry - time.monotonic())
                else:
                    timeout = None
                served: set[int] = set()
                for key, events in sel.select(timeout):
                    if key.data == "listen":
                        self._accept(sel)
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    else:
                        conn = self._conns.get(key.fd)
                        if conn is not None and conn.sock is key.fileobj:
                            served.add(key.fd)
                            self._service(sel, conn, events)
                for fd in list(self._ready - served):
                    conn = self._conns.get(fd)
                    if conn is None:
                        self._ready.discard(fd)
                    else:
                        self._service(sel, conn, 0)
                # on its own clock: a flood keeps select() returning at once, and idle
                # connections must expire all the same
                if time.monotonic() >= self._next_expiry:
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
        # several per wake: a burst of connects is drained from the backlog quickly, yet a
        # storm of them cannot keep the thread from the connections it already has
        for _ in range(self.limits.accepts_per_turn):
            try:
                client, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self.log is not None:
                        self.log.warning("control.accept_failed", error=str(exc))
                    time.sleep(0.05)  # do not spin on a full descriptor table
                    return
                raise
            self._admit(sel, client)

    def _admit(self, sel: selectors.BaseSelector, client: socket.socket) -> None:
        client.setblocking(False)
        try:
            creds = client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            client.close()
            return
        pid, uid, gid = struct.unpack("3i", creds)
        now = time.monotonic()
        admin = uid in self.admins
        why = self._admin_refusal() if admin else self._user_refusal(sel, uid, now)
        if why is not None:
            # the reply goes out without reading the request: `request()` still gets it
            with contextlib.suppress(OSError):
                client.send(_error("busy", why))
            client.close()
            return
        conn = _Conn(client, Peer(pid, uid, gid), admin, now)
        if admin:
            self._admin_conns += 1
        else:
            self._users[uid].conns += 1
            self._user_conns += 1
        self._conns[client.fileno()] = conn
        sel.register(client, selectors.EVENT_READ, "conn")

    def _admin_refusal(self) -> str | None:
        if self._admin_conns >= self.limits.max_admin_clients:
            return f"all {self.limits.max_admin_clients} connections for root are in use; try again"
        return None

    def _user_refusal(self, sel: selectors.BaseSelector, uid: int, now: float) -> str | None:
        """Why a new connection of user ``uid`` cannot be served now, or None.

        Every attempt takes a token of the uid's bucket, refused or not: a user connecting in
        a loop (each attempt costs this thread an accept) runs out, and is cut off like a
        user who floods requests.
        """
        lim = self.limits
        user = self._users.get(uid)
        if user is None:
            user = self._users[uid] = _User(_Bucket(lim.rate, lim.burst, lim.burst, now))
        if user.banned_until > now:
            return self._ban_message(uid, user, now)
        if not user.bucket.take(now):
            return self._strike(sel, uid, now) or self._rate_message(uid)
        if user.conns >= lim.max_clients_per_uid:
            return (
                f"per user limit: uid {uid} has {user.conns} connections open, the most one user "
                "may have; close one or try again"
            )
        if self._user_conns >= lim.max_clients:
            return (
                f"total limit: all {lim.max_clients} connections for users other than root are "
                "in use; try again"
            )
        user.strikes = 0
        return None

    def _rate_message(self, uid: int) -> str:
        lim = self.limits
        return (
            f"rate limited: uid {uid} may make {lim.rate:g} requests or connections a second "
            f"({lim.burst} at once); after {lim.max_refusals} refusals in a row it is cut off "
            f"for {lim.cooldown:g} s"
        )

    def _ban_message(self, uid: int, user: _User, now: float) -> str:
        return (
            f"rate limited: uid {uid} was cut off for flooding the control socket; "
            f"try again in {max(0.0, user.banned_until - now):.0f} s"
        )

    def _strike(self, sel: selectors.BaseSelector, uid: int, now: float) -> str | None:
        """Count a refusal of ``uid``; at ``max_refusals`` in a row, cut it off (and say so)."""
        user = self._users[uid]
        user.strikes += 1
        if user.strikes < self.limits.max_refusals:
            return None
        self._ban(sel, uid, now)
        return self._ban_message(uid, user, now)

    def _service(self, sel: selectors.BaseSelector, conn: _Conn, events: int) -> None:
        if events & selectors.EVENT_READ and not conn.closing and not conn.pending:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._drop(sel, conn)
                return
            if data == b"":
                if conn.inbuf.strip():  # a last request without its newline
                    self._answer(sel, conn, bytes(conn.inbuf))
                conn.inbuf.clear()
                conn.closing = True
            elif data:
                conn.inbuf += data
        if not conn.closing and not conn.dropped:
            self._process(sel, conn)
        if conn.dropped:
            return
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
        fd = conn.sock.fileno()
        if conn.pending:
            self._ready.add(fd)
        else:
            self._ready.discard(fd)
        want = selectors.EVENT_WRITE if conn.outbuf else 0
        if not conn.closing and not conn.pending:
            want |= selectors.EVENT_READ
        # with requests pending and nothing to send there is nothing to wait for (the
        # connection is in _ready); watching for writability costs no more than anything
        want = want or selectors.EVENT_WRITE
        if want != conn.mask:
            sel.modify(conn.sock, want, "conn")
            conn.mask = want

    def _process(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        """Answer this turn's share of the complete requests in ``conn.inbuf``."""
        share = self.limits.lines_per_turn
        while share > 0 and not conn.closing and not conn.dropped:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                if len(conn.inbuf) > self.limits.max_line:
                    self._too_long(conn)
                break
            share -= 1
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[: nl + 1]
            if len(line) > self.limits.max_line:
                self._too_long(conn)
                break
            if line.strip():
                conn.last = time.monotonic()
                self._answer(sel, conn, line)
        conn.pending = not conn.closing and not conn.dropped and b"\n" in conn.inbuf

    def _too_long(self, conn: _Conn) -> None:
        conn.outbuf += _error(
            "too-long", f"request longer than {self.limits.max_line} bytes; connection closed"
        )
        conn.inbuf.clear()
        conn.closing = True

    def _answer(self, sel: selectors.BaseSelector, conn: _Conn, line: bytes) -> None:
        if conn.admin:
            conn.outbuf += handle_line(line, conn.peer, self.commands, admins=self.admins, log=self.log)
            return
        lim, uid, now = self.limits, conn.peer.uid, time.monotonic()
        user = self._users[uid]
        # the limits come before the request is even parsed: a refusal costs next to nothing
        if not user.bucket.take(now):
            conn.outbuf += _error("busy", self._strike(sel, uid, now) or self._rate_message(uid))
            return
        if not self._everyone.take(now):
            user.bucket.tokens += 1.0  # not this user's doing: the request costs it nothing
            conn.outbuf += _error(
                "busy",
                f"rate limited: users other than root together may make {lim.global_rate:g} "
                "requests a second; try again",
            )
            return
        user.strikes = 0
        req = _parse(line, conn.peer, self.commands, self.admins)
        if isinstance(req, bytes):
            conn.outbuf += req
            return
        if req.command.mutating or not req.command.cache or lim.cache_ttl <= 0:
            # (a user's mutating one was refused above)
            conn.outbuf += _execute(req, conn.peer, self.log)[0]
            return
        key = (uid, req.name, json.dumps(req.args, sort_keys=True, default=str))
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            conn.outbuf += _result_reply(req.rid, hit[1])
            return
        reply, result = _execute(req, conn.peer, self.log)
        if result is not None:
            self._cache[key] = (now + lim.cache_ttl, result)
        conn.outbuf += reply

    def _ban(self, sel: selectors.BaseSelector, uid: int, now: float) -> None:
        """Close every connection of a uid that kept on flooding, and keep it out a while."""
        lim = self.limits
        user = self._users[uid]
        user.banned_until = now + lim.cooldown
        user.strikes = 0
        if self.log is not None:
            self.log.warning("control.flood_cut_off", uid=uid, cooldown_s=lim.cooldown)
        # the kernel first: a client that sees its connection close may reconnect at once
        self._sync_acl(now)
        why = _error("busy", self._ban_message(uid, user, now))
        for conn in list(self._conns.values()):
            if not conn.admin and conn.peer.uid == uid:
                with contextlib.suppress(OSError):  # one try: it is not worth waiting for
                    conn.sock.send(bytes(conn.outbuf) + why)
                self._drop(sel, conn)

    def _banned(self) -> bool:
        return any(u.banned_until for u in self._users.values())

    def _sync_acl(self, now: float) -> None:
        """Deny the banned uids in the socket's ACL, so that their connects fail in the kernel.

        Refusing a connection here costs an accept and a close however cheap the reply: a
        user connecting in a loop would keep this thread (and the daemon's CPU quota) busy.
        Where the file system has no ACLs (or the file is no longer ours) the ban is kept
        here alone, and said once.
        """
        if not self.limits.kernel_ban or self._acl_banned is None:
            return
        banned = frozenset(uid for uid, u in self._users.items() if u.banned_until > now)
        if banned == self._acl_banned:
            return
        try:
            st = os.stat(self.path, follow_symlinks=False)
            if st.st_ino != self._ino:
                raise OSError(errno.ESTALE, "the socket file was replaced")
            if banned:
                acl = _acl_denying(stat.S_IMODE(st.st_mode), sorted(banned))
                os.setxattr(self.path, _ACL_XATTR, acl, follow_symlinks=False)
            else:
                os.removexattr(self.path, _ACL_XATTR, follow_symlinks=False)
        except OSError as exc:
            self._acl_banned = None
            if self.log is not None:
                self.log.warning(
                    "control.kernel_ban_unavailable",
                    socket=str(self.path),
                    error=exc.strerror or str(exc),
                    effect="cut-off users are refused by the daemon, one accept at a time",
                )
            return
        self._acl_banned = banned

    def _expire(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        lim = self.limits
        for conn in list(self._conns.values()):
            if now - conn.last > (lim.admin_idle_timeout if conn.admin else lim.idle_timeout):
                self._drop(sel, conn)
        for uid, user in list(self._users.items()):
            if user.banned_until and user.banned_until <= now:
                user.banned_until = 0.0
            if not user.conns and not user.banned_until and user.bucket.full(now):
                del self._users[uid]  # nothing to remember: it would start out the same
        self._sync_acl(now)
        for key, (expires, _) in list(self._cache.items()):
            if expires <= now:
                del self._cache[key]
        self._next_expiry = now + self._tick

    def _drop(self, sel: selectors.BaseSelector, conn: _Conn) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        fd = conn.sock.fileno()
        if self._conns.get(fd) is conn:
            del self._conns[fd]
        self._ready.discard(fd)
        if conn.admin:
            self._admin_conns -= 1
        else:
            self._user_conns -= 1
            user = self._users.get(conn.peer.uid)
            if user is not None:
                user.conns -= 1
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


def _connect(path: Path, timeout: float) -> socket.socket:
    """A socket connected to ``path``; waits out a full listen backlog up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            # With a timeout the socket is non-blocking underneath, and a full AF_UNIX
            # backlog then says EAGAIN rather than waiting: try again shortly.
            sock.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        except BaseException:
            sock.close()
            raise


def request(path: Path, payload: Mapping[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its reply (a client helper)."""
    try:
        sock = _connect(path, timeout)
    except FileNotFoundError:
        raise ControlError(f"no control socket at {path}: is the daemon running?") from None
    except ConnectionRefusedError:
        raise ControlError(f"nothing answers on {path}: the daemon is not running") from None
    except PermissionError:
        raise ControlError(
            f"permission denied on {path}: run as root (or as a member of [daemon] control_group)"
        ) from None
    except BlockingIOError:
        raise ControlError(f"the daemon on {path} accepted no connection within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
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
