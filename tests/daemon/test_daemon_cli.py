"""`sol run`, `sol status`, `sol ctl`, `sol restore` as an operator (and systemd) runs them."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sold_helpers import NotifySink, config_text, events, rmtree, short_tmp

pytestmark = pytest.mark.live

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="StrictModes applies only when running as root")


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp()
    yield path
    rmtree(path)


def sol(*args: str) -> subprocess.CompletedProcess[str]:
    """A client command (`sol status`, `sol ctl`, `sol restore`, ...), run in process: the
    daemon under test is a separate process, its clients need not be."""
    from sol.cli import main

    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), out=out, err=err)
    return subprocess.CompletedProcess(["sol", *args], rc, out.getvalue(), err.getvalue())


def start(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`sol run` in the background, its output to files (a pipe nobody reads would fill up
    and block the daemon's logging, as a stalled journald would)."""
    full = {k: v for k, v in os.environ.items() if k not in ("SOL_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    full.update(env or {})
    with (cfg.parent / "stdout").open("w") as out, (cfg.parent / "stderr").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "sol", "run", "--config", str(cfg), *args],
            stdout=out,
            stderr=err,
            text=True,
            env=full,
        )


def test_sol_run_under_a_notify_socket_status_pause_sighup_reload_and_sigterm(root: Path) -> None:
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, "[agents.noop]\n[agents.example_ewma]\n"))
    sink = NotifySink(root / "notify")
    proc = start(cfg, env={"NOTIFY_SOCKET": str(root / "notify"), "WATCHDOG_USEC": "2000000"})
    try:
        ready = sink.wait_for("READY", "1", timeout=30)
        sink.wait_for("WATCHDOG", "1", after=ready)
        status = sol("status", "--config", str(cfg))
        assert status.returncode == 0, status.stderr
        assert "noop" in status.stdout and "example_ewma" in status.stdout and "running" in status.stdout
        paused = sol("ctl", "pause", "noop", "--config", str(cfg))
        assert paused.returncode == 0 and '"paused"' in paused.stdout, paused.stderr
        health = sol("ctl", "health", "--config", str(cfg))
        assert health.returncode == 0 and health.stdout.strip() == "alive"

        cfg.write_text(config_text(root, "[agents.noop]\n[agents.example_ewma.schedule]\nact_every = 0.5\n"))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        reloading = sink.wait_for("RELOADING", "1", after=ready + 1)
        sink.wait_for("READY", "1", after=reloading + 1)
        assert time.monotonic() - t0 < 5

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert proc.returncode == 0, (root / "stderr").read_text()
        sink.wait_for("STOPPING", "1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sink.close()
    evs = {e["event"]: e for e in events((root / "stdout").read_text())}
    assert evs["daemon.reloaded"]["restarted"] == ["example_ewma"]
    assert evs["daemon.reloaded"]["unchanged"] == ["noop"]  # paused, config unchanged: stays paused
    assert not (root / "sol.sock").exists()  # the socket is removed on exit


def test_status_without_a_daemon_says_so_and_exits_1(root: Path) -> None:
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, "[agents.noop]\n"))
    proc = sol("status", "--config", str(cfg))
    assert proc.returncode == 1 and "is the daemon running" in proc.stderr


def test_restore_while_the_daemon_runs_goes_through_the_daemon(root: Path) -> None:
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, "[agents.noop]\n"))
    proc = start(cfg)
    try:
        deadline = time.monotonic() + 30
        while not (root / "sol.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        restore = sol("restore", "--config", str(cfg))
        assert restore.returncode == 0, restore.stdout + restore.stderr
        assert "it paused noop" in restore.stdout and "still open" in restore.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_restore_with_a_broken_config_still_finds_the_journal(root: Path) -> None:
    from sol.safety.journal import UndoJournal

    group = root / "cgroup" / "cpu" / "batch"  # a fake cgroup tree, the broken config's root
    group.mkdir(parents=True)
    knob = group / "cpu.shares"
    knob.write_text("4096\n")
    with UndoJournal.open(root / "state" / "undo.journal") as j:
        j.record("crashed", "file", str(knob), "1024\n")
    cfg = root / "sol.toml"
    cfg.write_text(
        f'rollback = "sometimes"\n[paths]\nstate_dir = "{root / "state"}"\n'
        f'[linux]\ncgroup_root = "{root / "cgroup"}"\n'
    )
    proc = sol("restore", "--config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "despite the config errors" in proc.stderr and knob.read_text() == "1024\n"


@pytest.mark.parametrize(
    ("linux", "cache_dir"),
    [
        pytest.param({"faas": {"cache_dir": "/srv/faas"}}, "/srv/faas", id="linux.faas.cache_dir"),
        pytest.param({"faas_cache_dir": "/srv/faas"}, "/srv/faas", id="deprecated-linux.faas_cache_dir"),
        pytest.param({"faas": {"cache_dir": "relative"}}, None, id="a-relative-path-is-none"),
        pytest.param({"faas": "/srv/faas"}, None, id="faas-not-a-table"),
    ],
)
def test_restore_with_a_broken_config_finds_its_faas_cache_dir_in_either_place(
    linux: dict[str, object], cache_dir: str | None
) -> None:
    from sol.actuators.restorers import TargetScope
    from sol.cli import _linux_of_broken_config

    scope = TargetScope.from_linux(_linux_of_broken_config({"linux": {"cgroup_root": "/cg", **linux}}))
    assert scope.cgroup_root == Path("/cg")
    assert scope.cache_dir == (Path(cache_dir) if cache_dir else None)


@needs_root
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (lambda p: os.chmod(p, 0o666), "world-writable"),
        (lambda p: os.chown(p, 65534, -1), "owned by uid 65534"),
        (lambda p: (os.chown(p, -1, 65534), os.chmod(p, 0o664)), "writable by group 65534"),
        (lambda p: os.chmod(p.parent, 0o777), "world-writable (mode 0777)"),
        (lambda p: os.chown(p.parent, 65534, -1), "directory"),
    ],
    ids=["world-writable", "not-root-owned", "group-writable", "parent-world-writable", "parent-not-root"],
)
def test_config_others_could_write_is_unsafe_for_a_root_daemon(
    root: Path, how: object, expected: str
) -> None:
    from sol.daemon import config_file_problems

    sub = root / "etc"
    sub.mkdir(mode=0o755)
    cfg = sub / "sol.toml"
    cfg.write_text("")
    os.chmod(cfg, 0o600)
    assert config_file_problems(cfg) == []
    how(cfg)  # type: ignore[operator]
    problems = config_file_problems(cfg)
    assert problems and any(expected in p for p in problems), problems


@needs_root
def test_sol_run_and_check_config_refuse_a_world_writable_config_with_the_fix(root: Path) -> None:
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, "[agents.noop]\n"))
    os.chmod(cfg, 0o666)
    run = sol("run", "--config", str(cfg), "--duration", "1s")
    assert run.returncode == 1 and "refusing config" in run.stderr and "world-writable" in run.stderr
    assert f"chmod 0600 {cfg}" in run.stderr
    check = sol("check-config", str(cfg))
    assert check.returncode == 1 and "unsafe for a root daemon" in check.stdout


@needs_root
def test_root_daemon_accepts_a_root_owned_0644_config_under_sticky_tmp(root: Path) -> None:
    from sol.daemon import config_file_problems

    cfg = root / "sol.toml"
    cfg.write_text("")
    os.chmod(cfg, 0o644)
    assert config_file_problems(cfg) == []
    assert config_file_problems(cfg, euid=1000) == []  # not root: not our business
