"""The control socket protocol: framing, errors, permissions, and a fuzzer that cannot kill it."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sold_helpers import rmtree, short_tmp

from sol.control import (
    MAX_LINE,
    Command,
    CommandError,
    ControlError,
    ControlServer,
    Limits,
    Peer,
    handle_line,
    request,
)

ROOT_PEER = Peer(pid=1, uid=0, gid=0)
USER_PEER = Peer(pid=2, uid=65534, gid=65534)


def _fail(args: Mapping[str, Any], peer: Peer) -> Any:
    raise CommandError("failed", "it did not work")


def _crash(args: Mapping[str, Any], peer: Peer) -> Any:
    raise ZeroDivisionError("bug")


COMMANDS = {
    "status": Command(lambda a, p: {"agents": ["x"], "uid": p.uid}),
    "echo": Command(lambda a, p: dict(a)),
    "pause": Command(lambda a, p: {"paused": a.get("agent")}, mutating=True),
    "fail": Command(_fail),
    "crash": Command(_crash),
    "nan": Command(lambda a, p: float("nan")),
}


def reply(line: bytes, peer: Peer = ROOT_PEER) -> dict[str, Any]:
    out = handle_line(line, peer, COMMANDS)
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    parsed = json.loads(out)
    assert isinstance(parsed, dict) and isinstance(parsed["ok"], bool)
    return parsed


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\xff\xfe not utf-8", "bad-request"),
        (b"{not json", "bad-request"),
        (b"[1, 2]", "bad-request"),
        (b'"status"', "bad-request"),
        (b"[" * 100_000 + b"]" * 100_000, "bad-request"),
        (b'{"cmd": 7}', "bad-request"),
        (b'{"nocmd": 1}', "bad-request"),
        (b'{"cmd": "status", "id": [1]}', "bad-request"),
        (b'{"cmd": "frobnicate"}', "unknown-command"),
        (b'{"cmd": "fail"}', "failed"),
        (b'{"cmd": "crash"}', "failed"),
        (b'{"cmd": "nan"}', "failed"),
    ],
    ids=[
        "not-utf8",
        "not-json",
        "array",
        "string",
        "deeply-nested",
        "cmd-not-string",
        "no-cmd",
        "bad-id",
        "unknown-command",
        "command-error",
        "command-crash",
        "nan-result",
    ],
)
def test_malformed_requests_get_an_error_reply(line: bytes, code: str) -> None:
    r = reply(line)
    assert r["ok"] is False and r["code"] == code and r["error"]


def test_ids_are_echoed_and_arguments_passed() -> None:
    r = reply(b'{"cmd": "echo", "id": "a-1", "agent": "x"}')
    assert r == {"ok": True, "id": "a-1", "result": {"agent": "x"}}
    assert reply(b'{"cmd": "unknown", "id": 9}')["id"] == 9


def test_commands_that_change_anything_need_root_but_status_does_not() -> None:
    assert reply(b'{"cmd": "status"}', USER_PEER)["ok"] is True
    r = reply(b'{"cmd": "pause", "agent": "x"}', USER_PEER)
    assert r["ok"] is False and r["code"] == "forbidden" and "uid 65534" in r["error"]
    assert reply(b'{"cmd": "pause", "agent": "x"}', ROOT_PEER)["result"] == {"paused": "x"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_any_bytes_get_exactly_one_json_reply(data: bytes) -> None:
    reply(data.replace(b"\n", b" "), ROOT_PEER)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["cmd", "id", "agent", "on", "x"]), json_values, max_size=5))
def test_fuzz_json_objects_with_any_fields(obj: dict[str, Any]) -> None:
    reply(json.dumps(obj).encode(), USER_PEER)


# -- the server on a real socket -------------------------------------------------------


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp()
    yield path
    rmtree(path)


@pytest.fixture
def server(root: Path) -> Iterator[ControlServer]:
    srv = ControlServer(
        root / "sol.sock", COMMANDS, limits=Limits(max_admin_clients=4, admin_idle_timeout=5.0)
    )
    srv.start()
    yield srv
    srv.close()


def raw(path: Path, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data``, half-close, read everything the server answers until it closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := s.recv(65536):
            out += chunk
        return bytes(out)
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()


def test_socket_is_created_0600_and_removed_on_close(root: Path) -> None:
    srv = ControlServer(root / "sol.sock", COMMANDS)
    srv.start()
    st_ = os.stat(root / "sol.sock")
    assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
    assert request(root / "sol.sock", {"cmd": "status"})["ok"] is True
    srv.close()
    assert not (root / "sol.sock").exists()


def test_several_requests_on_one_connection_are_answered_in_order(server: ControlServer) -> None:
    out = raw(server.path, b'{"cmd":"echo","id":1}\n\n{"cmd":"nope","id":2}\n{"cmd":"echo","id":3}')
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in replies] == [1, 2, 3]
    assert [r["ok"] for r in replies] == [True, False, True]


def test_an_oversized_line_gets_too_long_and_the_daemon_keeps_serving(server: ControlServer) -> None:
    out = raw(server.path, b"x" * (MAX_LINE + 10))
    assert json.loads(out.splitlines()[0])["code"] == "too-long"
    out = raw(server.path, b'{"cmd": "status", "pad": "' + b"y" * (MAX_LINE + 10) + b'"}\n')
    assert json.loads(out.splitlines()[0])["code"] == "too-long"
    assert request(server.path, {"cmd": "status"})["ok"] is True


def test_more_clients_than_allowed_get_busy_and_idle_ones_are_dropped(root: Path) -> None:
    """Root's own slots (users' are in test_control_hostile.py)."""
    srv = ControlServer(
        root / "sol.sock", COMMANDS, limits=Limits(max_admin_clients=2, admin_idle_timeout=0.3)
    )
    srv.start()
    try:
        held = []
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(srv.path))
            held.append(s)
        time.sleep(0.1)
        reply_ = request(srv.path, {"cmd": "status"})
        assert reply_["ok"] is False and reply_["code"] == "busy"
        time.sleep(0.6)  # the silent ones are closed after their idle timeout (checked every 75 ms)
        assert request(srv.path, {"cmd": "status"})["ok"] is True
        for s in held:
            assert s.recv(10) == b""
            s.close()
    finally:
        srv.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=1, max_size=3000) | st.just(b"\n") | st.just(b"{"), max_size=12))
def test_fuzz_the_live_socket_never_stops_serving(server: ControlServer, chunks: list[bytes]) -> None:
    out = raw(server.path, b"".join(chunks))
    for line in out.splitlines():
        assert isinstance(json.loads(line)["ok"], bool)
    assert server.alive
    assert request(server.path, {"cmd": "status"})["ok"] is True


def _wakes(native_id: int) -> int:
    """Times a thread of this process went to sleep and was woken (voluntary switches)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_an_idle_server_sleeps_until_a_client_comes(server: ControlServer) -> None:
    """With no client connected nothing can expire: the serving thread sleeps without a
    timeout (a daemon on an idle host should not wake for its socket every second)."""
    thread = server._thread
    assert thread is not None and thread.native_id is not None
    if not Path(f"/proc/self/task/{thread.native_id}/status").exists():
        pytest.skip("no /proc/self/task: cannot count the thread's wake-ups")
    time.sleep(0.2)
    before = _wakes(thread.native_id)
    time.sleep(2.5)
    assert _wakes(thread.native_id) == before
    assert request(server.path, {"cmd": "status"})["ok"] is True  # and a client still wakes it


def test_a_stale_socket_is_replaced_and_a_live_one_refused(root: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(root / "sol.sock"))
    stale.close()  # the file stays, nobody listens: a crashed daemon's leftover
    first = ControlServer(root / "sol.sock", COMMANDS)
    first.start()
    try:
        with pytest.raises(ControlError, match="another sol daemon"):
            ControlServer(root / "sol.sock", COMMANDS).start()
    finally:
        first.close()
    (root / "sol.sock").write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(root / "sol.sock", COMMANDS).start()


def test_a_path_too_long_for_af_unix_is_a_clear_error(root: Path) -> None:
    with pytest.raises(ControlError, match="longer than 107 bytes"):
        ControlServer(root / ("d" * 120) / "sol.sock", COMMANDS).start()


def test_client_errors_name_the_socket(root: Path) -> None:
    with pytest.raises(ControlError, match="is the daemon running"):
        request(root / "missing.sock", {"cmd": "status"})


# The client runs as nobody: it cannot use our virtualenv (under root's home), so it is a
# few lines of any Python speaking the protocol by hand.
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin") or sys.executable
CLIENT = """
import socket, sys
for req in sys.argv[2:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(req.encode() + b"\\n")
    print(s.makefile().readline().strip())
    s.close()
"""
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(OTHER_PYTHON, os.X_OK),
    reason="needs root (changes socket groups, runs a client as nobody) and a system python3",
)


@needs_root
def test_a_configured_group_can_read_status_but_only_root_may_change_anything(root: Path) -> None:
    nogroup = grp.getgrgid(65534).gr_name
    os.chmod(root, 0o711)  # the client (nobody) must reach the socket inside
    srv = ControlServer(root / "sol.sock", COMMANDS, group=nogroup)
    srv.start()
    try:
        st_ = os.stat(srv.path)
        assert stat.S_IMODE(st_.st_mode) == 0o660 and st_.st_gid == 65534
        proc = subprocess.run(
            [
                OTHER_PYTHON,
                "-c",
                CLIENT,
                str(srv.path),
                '{"cmd": "status"}',
                '{"cmd": "pause", "agent": "x"}',
            ],
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        status, pause = (json.loads(line) for line in proc.stdout.splitlines())
        assert status["ok"] is True and status["result"]["uid"] == 65534  # SO_PEERCRED
        assert pause["ok"] is False and pause["code"] == "forbidden"
    finally:
        srv.close()


@needs_root
def test_without_the_group_others_cannot_even_connect(root: Path) -> None:
    os.chmod(root, 0o711)
    srv = ControlServer(root / "sol.sock", COMMANDS)
    srv.start()
    try:
        proc = subprocess.run(
            [OTHER_PYTHON, "-c", CLIENT, str(srv.path), '{"cmd": "status"}'],
            user=65534,
            group=65534,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        assert proc.returncode != 0 and "PermissionError" in proc.stderr
    finally:
        srv.close()


def test_a_reply_sent_before_the_server_closes_is_read_even_if_the_request_hits_a_closed_pipe(
    tmp_path: Path,
) -> None:
    """The server answers ``busy`` without reading and closes: the client's send fails with
    EPIPE, and the reply waiting in its buffer is still what ``request`` returns."""
    import threading

    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b'{"ok": false, "code": "busy", "error": "try again"}\n')
        time.sleep(0.2)  # the client is still pushing its (large) request
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        reply_ = request(path, {"cmd": "status", "pad": "x" * (4 << 20)}, timeout=10.0)
    finally:
        t.join(5.0)
        listener.close()
    assert reply_["code"] == "busy"


def test_a_server_that_closes_without_a_reply_is_a_clear_error(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    t = threading.Thread(target=lambda: listener.accept()[0].close())
    t.start()
    try:
        with pytest.raises(ControlError, match="closed the connection without a reply"):
            request(path, {"cmd": "status"}, timeout=10.0)
    finally:
        t.join(5.0)
        listener.close()
