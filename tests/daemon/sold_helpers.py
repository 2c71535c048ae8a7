"""Agents, a backend and a harness for the daemon tests (imported by tests/daemon/test_*.py).

The module name is unique across the test tree: tests folders have no ``__init__.py``.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from sol import Prediction, Schedule
from sol.actuators.base import HostWriter
from sol.actuators.file import FileKnob
from sol.backend import NullBackend
from sol.config import Config, loads_config
from sol.daemon import Daemon
from sol.notify import Notifier
from sol.registry import Registry
from sol.testing import NotifySink
from tests.agentkit import RecordingAgent

FAST = Schedule(
    collect_every=0.02,
    act_every=0.02,
    prediction_ttl=0.2,
    assess_every=0.5,
    callback_timeout=0.3,
    cpu_budget=2.0,
)


class Ticker(RecordingAgent):
    """Records its calls; every instance is recorded so tests can see restarts."""

    name = "ticker"
    schedule = FAST
    instances: ClassVar[list[Ticker]] = []

    def __init__(self) -> None:
        super().__init__()
        type(self).instances.append(self)

    def learn(self, obs: Any) -> None:
        return None  # runs for seconds at 50 Hz: keep nothing


class Other(Ticker):
    name = "other"
    instances: ClassVar[list[Ticker]] = []


class Writer(Ticker):
    """Writes ``written-by-writer`` to the backend's knob file on every act (journaled)."""

    name = "writer"
    instances: ClassVar[list[Ticker]] = []

    def act(self, prediction: Prediction) -> None:
        super().act(prediction)
        self.ctx.actuators.knob("written-by-writer")


AGENTS = {
    "ticker": "sold_helpers:Ticker",
    "other": "sold_helpers:Other",
    "writer": "sold_helpers:Writer",
}


def registry() -> Registry:
    return Registry(AGENTS, plugins=False)


class KnobBackend(NullBackend):
    """A node with one host knob (a file): writes go guard-less through HostWriter."""

    name = "knob"
    revocable = True

    def __init__(self, journal: Any, knob: Path) -> None:
        super().__init__()
        self.journal = journal
        self.knob = FileKnob(knob)
        self.writers: dict[str, list[HostWriter]] = {}
        self.revoked: set[str] = set()

    def actuators_for(self, owner: str, *, dry_run: bool) -> Any:
        writer = HostWriter(journal=self.journal, owner=owner, dry_run=dry_run)
        self.writers.setdefault(owner, []).append(writer)

        def knob(value: str) -> None:
            if owner in self.revoked:
                raise PermissionError(f"{owner} revoked")
            writer.write(self.knob, value)

        return SimpleNamespace(knob=knob, writer=writer)

    def revoke(self, owner: str) -> None:
        self.revoked.add(owner)

    def unrevoke(self, owner: str) -> None:
        self.revoked.discard(owner)

    def actuation_counts(self) -> dict[str, dict[str, int]]:
        return {
            o: {
                "written": sum(w.writes for w in ws),
                "failed": sum(w.failures for w in ws),
                "dry_run": sum(w.dry_runs for w in ws),
            }
            for o, ws in self.writers.items()
        }


def short_tmp() -> Path:
    """A short temp dir: AF_UNIX socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="sol-", dir="/tmp"))


def config_text(root: Path, agents: str, *, extra: str = "") -> str:
    return (
        textwrap.dedent(agents)
        + textwrap.dedent(
            f"""
        [paths]
        state_dir = "{root / "state"}"
        [daemon]
        control_socket = "{root / "sol.sock"}"
        metrics_port = 0
        report_every = 0.2
        """
        )
        + textwrap.dedent(extra)
    )


def load(path: Path) -> Config:
    from sol.config import load_config

    return load_config(path, agents=registry().classes())


def parse(text: str, source: str = "sol.toml") -> Config:
    return loads_config(text, source=source, agents=registry().classes())


@dataclass
class Running:
    daemon: Daemon
    thread: threading.Thread
    root: Path
    result: dict[str, Any]

    def ask(self, **payload: Any) -> dict[str, Any]:
        from sol.control import request

        return request(self.root / "sol.sock", payload, timeout=15)

    def ok(self, **payload: Any) -> Any:
        reply = self.ask(**payload)
        assert reply["ok"], reply
        return reply["result"]

    def runner(self, name: str) -> Any:
        return next(r for r in self.daemon.executor.runners if r.name == name)


@contextmanager
def running_daemon(
    root: Path,
    agents: str,
    *,
    environ: dict[str, str] | None = None,
    backend: Callable[[Config, Any], Any] | None = None,
    loop_stall: float = 10.0,
    extra: str = "",
) -> Iterator[Running]:
    """A daemon on a thread (no signal handlers), its config in ``root/sol.toml``."""
    cfg = root / "sol.toml"
    cfg.write_text(config_text(root, agents, extra=extra))
    config = load(cfg)
    ready = threading.Event()
    notifier = Notifier(environ=environ or {})
    daemon = Daemon(
        config,
        registry=registry(),
        load=lambda: load(cfg),
        notifier=notifier,
        install_signals=False,
        on_ready=lambda ex: ready.set(),
        backend=backend or (lambda c, j: NullBackend()),
        loop_stall=loop_stall,
    )
    result: dict[str, Any] = {}

    def main() -> None:
        try:
            result["rc"] = daemon.run()
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc
            ready.set()

    t = threading.Thread(target=main, name="test-daemon", daemon=True)
    t.start()
    assert ready.wait(15), "daemon did not become ready"
    if "error" in result:
        raise result["error"]
    run = Running(daemon, t, root, result)
    try:
        yield run
    finally:
        daemon.request_stop()
        t.join(20)
        assert not t.is_alive(), "daemon did not stop"


def wait_until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} not reached within {timeout}s")


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "AGENTS",
    "FAST",
    "KnobBackend",
    "NotifySink",
    "Other",
    "Running",
    "Ticker",
    "Writer",
    "config_text",
    "events",
    "load",
    "parse",
    "registry",
    "rmtree",
    "running_daemon",
    "short_tmp",
    "wait_until",
]
