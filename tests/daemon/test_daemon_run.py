"""The daemon as operators drive it: status, pause/resume, dry-run, restore, reload, metrics.

Each test runs a real ``Daemon`` on a thread with agents from ``sold_helpers``; the host is a
file knob written through the real HostWriter -> undo journal pipeline.
"""

from __future__ import annotations

import doctest
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sold_helpers import (
    KnobBackend,
    Other,
    Ticker,
    Writer,
    config_text,
    rmtree,
    running_daemon,
    short_tmp,
    wait_until,
)

import sol.daemon
from sol.cli import render_status
from sol.daemon import CpuMeter

pytestmark = pytest.mark.live

TWO = "[agents.ticker]\n[agents.other]\n"


@pytest.fixture
def root() -> Iterator[Path]:
    for cls in (Ticker, Other, Writer):
        cls.instances.clear()
    path = short_tmp()
    yield path
    rmtree(path)


@pytest.fixture
def knob(root: Path) -> Path:
    path = root / "knob"
    path.write_text("original\n")
    return path


def knob_backend(knob: Path) -> Any:
    return lambda config, journal: KnobBackend(journal, knob)


def test_status_shows_the_daemon_and_every_agent(root: Path) -> None:
    with running_daemon(root, TWO) as run:
        wait_until(lambda: Ticker.instances[0].acts > 3 and Other.instances[0].acts > 3)
        status = run.ok(cmd="status")
        d = status["daemon"]
        assert d["pid"] == os.getpid() and d["loops_alive"] is True and d["config"].endswith("sol.toml")
        assert d["metrics"].startswith("http://127.0.0.1:")
        rows = {a["agent"]: a for a in status["agents"]}
        assert set(rows) == {"ticker", "other"}
        assert rows["ticker"]["state"] == "running" and rows["ticker"]["decisions"] > 0
        assert rows["ticker"]["dry_run"] is False and rows["ticker"]["ticks"] > 0
        table = render_status(status)
        assert "AGENT" in table and "ticker" in table and "loops ok" in table
        assert run.ok(cmd="agents") == [
            {"agent": "ticker", "state": "running", "dry_run": False},
            {"agent": "other", "state": "running", "dry_run": False},
        ]


def test_status_says_what_the_daemon_costs_in_cpu(root: Path) -> None:
    with running_daemon(root, TWO) as run:

        def measured() -> bool:
            return run.ok(cmd="status")["daemon"]["cpu_pct"] is not None

        wait_until(measured, timeout=10, what="a CPU figure")
        d = run.ok(cmd="status")["daemon"]
        assert d["cpu_pct"] >= 0.0 and 1.0 <= d["cpu_window_s"] <= 61.0
        assert "% of a core (last " in render_status(run.ok(cmd="status"))


def test_the_cpu_meter_keeps_the_last_window_only() -> None:
    assert doctest.testmod(sol.daemon).failed == 0
    m = CpuMeter(window=10.0)
    for t in range(31):  # 1 s of CPU per second for 20 s, then none
        m.sample(now=float(t), cpu=float(min(t, 20)))
    assert m.status() == {"cpu_pct": 0.0, "cpu_window_s": 10.0}
    m.sample(now=35.0, cpu=25.0)
    assert m.status() == {"cpu_pct": 50.0, "cpu_window_s": 10.0}  # from t=25: 5 s of CPU in 10 s


def test_pause_restores_that_agent_only_and_resume_starts_a_fresh_instance(root: Path, knob: Path) -> None:
    with running_daemon(root, "[agents.writer]\n[agents.ticker]\n", backend=knob_backend(knob)) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer")
        ticker = run.runner("ticker")
        assert run.ok(cmd="pause", agent="writer") == {"agent": "writer", "state": "paused"}
        assert knob.read_text() == "original\n"  # clean-up and restore of its undo records
        assert Writer.instances[0].cleaned == 1
        acts = Ticker.instances[0].acts
        wait_until(lambda: Ticker.instances[0].acts > acts + 3, what="the other agent keeps running")
        assert run.runner("ticker") is ticker
        assert run.ok(cmd="pause", agent="writer")["state"] == "paused"  # idempotent
        assert run.ok(cmd="resume", agent="writer")["state"] == "running"
        assert len(Writer.instances) == 2 and Writer.instances[1].setups == 1
        wait_until(lambda: knob.read_text() == "written-by-writer")
    assert knob.read_text() == "original\n"  # and on stop (rollback = auto)
    assert [w.cleaned for w in Writer.instances] == [1, 1]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"cmd": "pause"}, "bad-request"),
        ({"cmd": "pause", "agent": "nope"}, "not-found"),
        ({"cmd": "pause", "agent": "ticker", "force": True}, "bad-request"),
        ({"cmd": "dry-run", "on": "yes"}, "bad-request"),
        ({"cmd": "status", "verbose": 1}, "bad-request"),
        ({"cmd": "reload", "now": 1}, "bad-request"),
    ],
    ids=["no-agent", "unknown-agent", "unknown-arg", "dry-run-not-bool", "status-arg", "reload-arg"],
)
def test_bad_commands_are_refused_with_a_reason(root: Path, request_: dict[str, Any], code: str) -> None:
    with running_daemon(root, "[agents.ticker]\n") as run:
        reply = run.ask(**request_)
        assert reply["ok"] is False and reply["code"] == code, reply
        assert run.ok(cmd="health")["alive"] is True


def test_dry_run_on_rebuilds_actuators_and_off_writes_again(root: Path, knob: Path) -> None:
    with running_daemon(root, "[agents.writer]\n", backend=knob_backend(knob)) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer")
        result = run.ok(cmd="dry-run", on=True, agent="writer")
        assert result == {"dry_run": True, "agents": {"writer": "running"}}
        assert knob.read_text() == "original\n"
        backend = run.daemon.backend
        assert isinstance(backend, KnobBackend)
        wait_until(lambda: backend.writers["writer"][-1].dry_runs > 2, what="dry-run writes")
        assert knob.read_text() == "original\n"
        assert run.ok(cmd="status")["agents"][0]["dry_run"] is True
        run.ok(cmd="dry-run", on=False)
        wait_until(lambda: knob.read_text() == "written-by-writer")


def test_restore_pauses_every_agent_and_leaves_the_host_as_it_was(root: Path, knob: Path) -> None:
    with running_daemon(root, "[agents.writer]\n[agents.ticker]\n", backend=knob_backend(knob)) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer")
        result = run.ok(cmd="restore")
        assert sorted(result["paused"]) == ["ticker", "writer"]
        assert result["failed"] == [] and result["open_undo_records"] == 0
        assert knob.read_text() == "original\n"
        assert {a["state"] for a in run.ok(cmd="status")["agents"]} == {"paused"}


def test_reload_restarts_only_changed_agents_adds_and_removes(root: Path) -> None:
    with running_daemon(root, TWO) as run:
        other = run.runner("other")
        ticker = run.runner("ticker")
        wait_until(lambda: Ticker.instances[0].acts > 2)
        cfg = root / "sol.toml"
        cfg.write_text(
            config_text(root, "[agents.ticker.schedule]\nact_every = 0.05\n[agents.writer]\ndry_run = true\n")
        )
        result = run.ok(cmd="reload")
        assert result["ok"] is True
        assert (
            result["restarted"] == ["ticker"]
            and result["added"] == ["writer"]
            and result["removed"] == ["other"]
        )
        assert [r.name for r in run.daemon.executor.runners] == ["ticker", "writer"]
        assert run.runner("ticker") is not ticker and run.runner("ticker").schedule.act_every == 0.05
        assert Ticker.instances[0].cleaned == 1 and Other.instances[0].cleaned == 1
        assert other.state == "stopped"
        # unchanged config: nothing restarts
        ticker2 = run.runner("ticker")
        again = run.ok(cmd="reload")
        assert again["unchanged"] == ["ticker", "writer"] and again["restarted"] == []
        assert run.runner("ticker") is ticker2
        assert run.ok(cmd="status")["daemon"]["reloads"] == {"ok": 2, "failed": 0}


def test_a_deprecated_config_key_is_logged_at_start_and_at_each_reload(root: Path) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs, running_daemon(root, TWO, extra='[linux]\nharvest_cgroup = "h"\n') as run:
        assert run.daemon.config.linux.cpu.harvest_cgroup == "h"
        assert run.ok(cmd="reload")["ok"] is True
    warned = [e for e in logs if e["event"] == "config.warning"]
    assert [(e["key"], e["message"], e["log_level"]) for e in warned] == 2 * [
        ("linux.harvest_cgroup", "deprecated: use [linux.cpu] harvest_cgroup", "warning")
    ]
    assert all(e["file"].endswith("sol.toml") and isinstance(e["line"], int) for e in warned)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p: p.write_text('rollback = "sometimes"\n'), "rollback"),
        (lambda p: p.write_text("[agents.nope]\n"), "unknown agent"),
        (lambda p: p.write_text("[agents.ticker\n"), "invalid TOML"),
        (lambda p: p.unlink(), "cannot read"),
        (lambda p: os.chmod(p, 0o666), "world-writable"),
    ],
    ids=["bad-value", "unknown-agent", "syntax", "missing", "world-writable"],
)
def test_a_bad_reload_keeps_the_running_config_and_says_why(root: Path, edit: Any, problem: str) -> None:
    if problem == "world-writable" and os.geteuid() != 0:
        pytest.skip("StrictModes applies only when running as root")
    with running_daemon(root, TWO) as run:
        before = list(run.daemon.executor.runners)
        edit(root / "sol.toml")
        result = run.ok(cmd="reload")
        assert result["ok"] is False and any(problem in p for p in result["problems"]), result
        assert list(run.daemon.executor.runners) == before
        assert all(r.state == "running" for r in before)
        status = run.ok(cmd="status")["daemon"]
        assert status["reloads"]["failed"] == 1 and status["last_reload"]["ok"] is False
        assert "LAST RELOAD FAILED" in render_status(run.ok(cmd="status"))


def test_metrics_endpoint_exports_every_family_and_counters_survive_restarts(root: Path, knob: Path) -> None:
    with running_daemon(root, "[agents.writer]\n[agents.ticker]\n", backend=knob_backend(knob)) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer" and Ticker.instances[0].acts > 5)
        url = run.daemon.metrics_server.url  # type: ignore[union-attr]

        def scrape() -> dict[str, float]:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            out: dict[str, float] = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    key, _, value = line.rpartition(" ")
                    out[key] = float(value)
            return out

        first = scrape()
        for family in (
            'sol_agent_ticks_total{agent="ticker",callback="collect"}',
            'sol_agent_predictions_total{agent="ticker",reason="",source="model"}',
            'sol_agent_callback_seconds_bucket{agent="ticker",callback="act",le="+Inf"}',
            'sol_agent_callback_seconds_count{agent="ticker",callback="act"}',
            'sol_agent_cpu_seconds_total{agent="ticker",side="model"}',
            'sol_agent_model_cpu_seconds_total{agent="ticker"}',
            'sol_actuation_writes_total{agent="writer",outcome="written"}',
            "sol_journal_open_records",
            'sol_daemon_reloads_total{result="ok"}',
            "sol_daemon_loops_alive",
            "process_resident_memory_bytes",
        ):
            assert family in first, family
        assert first["sol_journal_open_records"] == 1.0 and first["sol_daemon_loops_alive"] == 1.0
        # a restart (pause/resume) must not make a counter go backwards
        run.ok(cmd="pause", agent="ticker")
        run.ok(cmd="resume", agent="ticker")
        second = scrape()
        key = 'sol_agent_ticks_total{agent="ticker",callback="collect"}'
        assert second[key] >= first[key]
        health = urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=5)
        assert health.status == 200 and health.read() == b"ok\n"


def test_mutating_commands_from_a_non_root_peer_are_refused(root: Path) -> None:
    from sol.control import Peer, handle_line

    with running_daemon(root, "[agents.ticker]\n") as run:
        commands = run.daemon.commands()
        out = handle_line(b'{"cmd": "pause", "agent": "ticker"}', Peer(1, 65534, 65534), commands)
        assert b'"forbidden"' in out
        assert run.runner("ticker").state == "running"


def test_actuation_writes_are_the_backends_counts_and_survive_a_restart(root: Path, knob: Path) -> None:
    with running_daemon(root, "[agents.writer]\n", backend=knob_backend(knob)) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer")
        run.ok(cmd="dry-run", on=True)  # a second writer for the same agent: sums must keep the first
        counts = run.daemon.metrics.actuation_source()  # type: ignore[misc]
        assert counts["writer"]["written"] >= 1


def test_without_a_systemd_watchdog_a_stalled_loop_stops_the_daemon_and_restores(
    root: Path, knob: Path
) -> None:
    with running_daemon(root, "[agents.writer]\n", backend=knob_backend(knob), loop_stall=0.3) as run:
        wait_until(lambda: knob.read_text() == "written-by-writer")
        with run.runner("writer").lock:
            wait_until(lambda: run.daemon.exit_code == 1, timeout=10, what="the daemon to give up")
        run.thread.join(20)
        assert run.result.get("rc") == 1
    assert knob.read_text() == "original\n" and Writer.instances[0].cleaned == 1


@pytest.mark.parametrize(
    ("socket_setting", "euid", "expected"),
    [
        ('control_socket = "/srv/x.sock"', 0, "/srv/x.sock"),
        ("", 1000, "{state}/sol.sock"),
        ("", 0, "{run}/sol.sock"),
    ],
    ids=["configured", "unprivileged-falls-back-to-state-dir", "root-uses-run-dir"],
)
def test_control_socket_path(root: Path, socket_setting: str, euid: int, expected: str) -> None:
    from sold_helpers import parse

    from sol.daemon import control_socket_path

    run_dir = root / "run" / "sol"
    run_dir.mkdir(parents=True)
    config = parse(f'[paths]\nstate_dir = "{root / "state"}"\n[daemon]\n{socket_setting}\n')
    path = control_socket_path(config, euid=euid, run_dir=run_dir)
    assert str(path) == expected.format(state=root / "state", run=run_dir)


def test_a_control_socket_that_cannot_be_created_leaves_the_agents_running(root: Path) -> None:
    import threading

    from sold_helpers import parse, registry

    from sol.backend import NullBackend
    from sol.daemon import Daemon
    from sol.notify import Notifier

    long = root / ("d" * 120) / "sol.sock"
    config = parse(
        f'[agents.ticker]\n[paths]\nstate_dir = "{root / "state"}"\n'
        f'[daemon]\ncontrol_socket = "{long}"\nmetrics = false\n'
    )
    ready = threading.Event()
    daemon = Daemon(
        config,
        registry=registry(),
        notifier=Notifier(environ={}),
        install_signals=False,
        on_ready=lambda ex: ready.set(),
        backend=lambda c, j: NullBackend(),
    )
    t = threading.Thread(target=daemon.run, daemon=True)
    t.start()
    try:
        assert ready.wait(10)
        assert daemon.control is None and daemon.metrics_server is None
        wait_until(lambda: Ticker.instances[0].acts > 3)
    finally:
        daemon.request_stop()
        t.join(20)


def test_the_daemon_prints_what_each_agent_did_when_it_stops(root: Path, knob: Path) -> None:
    import io
    import threading

    from sold_helpers import parse, registry

    from sol.daemon import Daemon
    from sol.notify import Notifier

    config = parse(config_text(root, "[agents.writer]\n[agents.other]\n"))
    summary = io.StringIO()
    ready = threading.Event()
    daemon = Daemon(
        config,
        registry=registry(),
        notifier=Notifier(environ={}),
        install_signals=False,
        on_ready=lambda ex: ready.set(),
        backend=knob_backend(knob),
        summary=summary,
    )
    t = threading.Thread(target=daemon.run, daemon=True)
    t.start()
    try:
        assert ready.wait(10)
        wait_until(lambda: Writer.instances[0].acts > 3 and Other.instances[0].acts > 3)
        assert summary.getvalue() == ""  # nothing until it stops
    finally:
        daemon.request_stop()  # a stop, not a --duration: the table all the same
        t.join(20)
    lines = summary.getvalue().splitlines()
    assert lines[0] == ""  # apart from the log lines above it
    lines = lines[1:]
    assert lines[0].split()[:3] == ["agent", "state", "model"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["writer"][1] == "stopped" and int(rows["writer"][2]) + int(rows["writer"][3]) > 3
    assert rows["other"][1] == "stopped"
    assert lines[-1].startswith("ran ") and lines[-1].endswith("on the knob backend, exit status 0")
    assert "simulation" not in lines  # a backend without ground truth prints none
