"""sd_notify: what systemd receives on a real datagram socket set as NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from sold_helpers import NotifySink, Ticker, rmtree, running_daemon, short_tmp

from sol.notify import Notifier

pytestmark = pytest.mark.live


@pytest.fixture
def root() -> Path:
    path = short_tmp()
    yield path
    rmtree(path)


def test_notifier_is_a_no_op_outside_systemd() -> None:
    n = Notifier(environ={})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract-namespace"])
def test_notifier_sends_newline_separated_fields_to_the_socket(root: Path, abstract: bool) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"sol-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind(b"\0" + name.encode())
        env = {"NOTIFY_SOCKET": "@" + name}
    else:
        sock.bind(str(root / "notify"))
        env = {"NOTIFY_SOCKET": str(root / "notify")}
    sock.settimeout(2)
    try:
        n = Notifier(environ=env)
        assert n.ready(status="2 running\nand a second line")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 running and a second line\n"
        assert n.reloading()
        msg = sock.recv(4096).decode()
        assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(msg.split("=")[-1]) > 0
        assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1\n"
        assert n.stopping() and sock.recv(4096) == b"STOPPING=1\n"
        # STATUS= is only sent when it changes
        assert n.status("same") and not n.status("same")
        n.close()
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
    ids=["ours", "other-pid", "zero", "garbage"],
)
def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_us(
    env: dict[str, str], interval: float | None
) -> None:
    n = Notifier(environ={"NOTIFY_SOCKET": "/run/nonexistent/notify", **env})
    assert n.watchdog_interval == interval


def test_a_failing_notify_socket_never_raises() -> None:
    n = Notifier(environ={"NOTIFY_SOCKET": "/nonexistent/dir/notify"})
    assert n.enabled and n.ready() is False and n.watchdog() is False


def test_daemon_is_ready_after_setup_pings_while_alive_and_withholds_pings_while_a_loop_is_stuck(
    root: Path,
) -> None:
    sink = NotifySink(root / "notify")
    env = {"NOTIFY_SOCKET": str(root / "notify"), "WATCHDOG_USEC": "100000"}  # ping every 50 ms
    Ticker.instances.clear()
    try:
        with running_daemon(root, "[agents.ticker]\n", environ=env, loop_stall=0.3) as run:
            ready = sink.wait_for("READY", "1")
            assert Ticker.instances[0].setups == 1  # READY comes after every agent's setup
            assert "running" in sink.messages[ready][1]["STATUS"]
            sink.wait_for("WATCHDOG", "1", after=ready)

            # A runtime loop that stops ticking outside any callback (here: deadlocked on its
            # runner's lock) must stop the pings, so that systemd restarts the daemon.
            runner = run.runner("ticker")
            with runner.lock:
                failing = sink.wait_for("STATUS", timeout=5, after=ready + 1)
                while "FAILING" not in sink.messages[failing][1]["STATUS"]:
                    failing = sink.wait_for("STATUS", after=failing + 1, timeout=5)
                stalled_at = sink.messages[failing][0]
                time.sleep(0.4)
                during = [t for t, m in list(sink.messages) if "WATCHDOG" in m and t > stalled_at]
                assert during == [], "WATCHDOG=1 was sent while a loop was stuck"
                health = run.ok(cmd="health")
                assert health["alive"] is False and "ticker/" in health["detail"]
            resumed = sink.wait_for("WATCHDOG", "1", after=failing + 1)
            assert sink.messages[resumed][0] > stalled_at
            before_stop = len(sink.messages)
        sink.wait_for("STOPPING", "1", after=before_stop)
    finally:
        sink.close()


def test_reload_is_bracketed_by_reloading_and_ready(root: Path) -> None:
    sink = NotifySink(root / "notify")
    try:
        with running_daemon(
            root, "[agents.ticker]\n", environ={"NOTIFY_SOCKET": str(root / "notify")}
        ) as run:
            ready = sink.wait_for("READY", "1")
            result = run.ok(cmd="reload")
            assert result["ok"] is True
            reloading = sink.wait_for("RELOADING", "1", after=ready + 1)
            assert "MONOTONIC_USEC" in sink.messages[reloading][1]
            sink.wait_for("READY", "1", after=reloading + 1)
    finally:
        sink.close()


def test_no_watchdog_pings_without_watchdog_usec(root: Path) -> None:
    sink = NotifySink(root / "notify")
    try:
        with running_daemon(root, "[agents.ticker]\n", environ={"NOTIFY_SOCKET": str(root / "notify")}):
            sink.wait_for("READY", "1")
            time.sleep(0.3)
            assert "WATCHDOG" not in sink.fields()
    finally:
        sink.close()
