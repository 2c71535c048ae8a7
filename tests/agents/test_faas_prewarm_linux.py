"""faas_prewarm on this host's real FaaS facility: a cache directory on a real disk, prewarm by
``posix_fadvise(WILLNEED)`` verified with ``mincore``, unload with ``DONTNEED``; bad input
(malformed, truncated, rotated or deleted log; missing objects; a full disk) counted and
reported, never a crash; SIGKILL of the daemon while objects are prewarmed, then
``sol restore`` unloads what the agent loaded and nothing else.

Every file is made under pytest's temporary directory (on the root disk here) and dropped
from the page cache at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sol.actuators.base import WriteError
from sol.actuators.pagecache import advise, residency
from sol.agents.faas_prewarm import KEEPALIVE, FaasPrewarmAgent, Params, Plan
from sol.config import LinuxConfig, LinuxFaasConfig
from sol.linux import LinuxBackend
from sol.safety.journal import UndoJournal
from sol.sdk import Context, Prediction

MB = 1 << 20
SOL = [sys.executable, "-m", "sol"]
#: a daemon's start (imports) on the shared 2-core build machine under load
START = 90.0


class Clock:
    def __init__(self) -> None:
        self.t = time.monotonic()

    def now(self) -> float:
        return self.t

    def consume(self, seconds: float) -> None:
        self.t += seconds


def blob(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    advise(path, os.POSIX_FADV_DONTNEED)
    return path


def warm(path: Path) -> bool:
    r = residency(path)
    return r.size_bytes > 0 and r.resident_bytes >= r.size_bytes


def cold(path: Path) -> bool:
    return residency(path).resident_bytes == 0


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout:g} s")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "cache"
    for name, size in (("app-a.zip", 8 * MB), ("app-b.zip", 4 * MB), ("app-c.zip", 2 * MB)):
        blob(d / name, size)
    if all(not cold(p) for p in d.iterdir()):
        pytest.skip(f"{d}: DONTNEED does not drop this file system's pages (tmpfs?)")
    yield d
    for p in tmp_path.rglob("*"):
        if p.is_file():
            advise(p, os.POSIX_FADV_DONTNEED)  # leave no page cache behind


def agent_on(
    cache: Path, tmp_path: Path, params: Params | None = None, *, origin: Path | None = None
) -> tuple[FaasPrewarmAgent, LinuxBackend, UndoJournal, Clock]:
    log = tmp_path / "invocations.jsonl"
    clock = Clock()
    linux = LinuxConfig(faas=LinuxFaasConfig(cache_dir=cache, origin_dir=origin, invocation_log=log))
    journal = UndoJournal.open(tmp_path / "state" / "undo.journal", fsync=False)
    backend = LinuxBackend(linux, journal=journal, clock=clock, facilities=("faas",))
    agent = FaasPrewarmAgent()
    ctx = Context(
        clock=clock,
        log=None,
        sensors=backend.sensors,
        actuators=backend.actuators_for("faas_prewarm", dry_run=False),
        config=params or Params(),
    )
    agent.setup(ctx)
    return agent, backend, journal, clock


def model(plan: Plan, t: float) -> Prediction:
    return Prediction(plan, "model", None, t, t + 6.0)


def log_lines(path: Path, records: list[dict[str, object]], raw: str = "") -> None:
    with open(path, "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(raw)


def tick(agent: FaasPrewarmAgent) -> bool:
    batch = agent.collect()
    ok = bool(agent.validate(batch))
    if ok:
        agent.learn(batch)
    plan = agent.predict() if ok else KEEPALIVE
    agent.act(model(plan, agent.ctx.clock.now()) if ok else Prediction(plan, "default", "x", 0, 1))
    return ok


# -- the real facility ------------------------------------------------------------------------


@pytest.mark.linux
def test_prewarm_reads_ahead_into_the_page_cache_and_unload_drops_it(cache: Path, tmp_path: Path) -> None:
    agent, _, journal, clock = agent_on(cache, tmp_path)
    a, b = cache / "app-a.zip", cache / "app-b.zip"
    agent.act(model(Plan(1, ("app-a.zip",), ()), clock.t))
    wait(lambda: warm(a), 10, "app-a.zip resident after WILLNEED (mincore)")
    assert cold(b) and "app-a.zip" in agent.held
    assert {r.kind for r in journal.open_records("faas_prewarm")} == {"pagecache"}
    agent.act(model(Plan(2, (), ("app-a.zip",)), clock.t))
    assert cold(a) and not agent.held
    journal.close()


@pytest.mark.linux
def test_the_agent_learns_from_the_real_log_and_prewarms_before_the_next_call(
    cache: Path, tmp_path: Path
) -> None:
    """Twelve calls of app-a five minutes apart, the last 290 s ago (wall clock): the next is
    due in ~10 s, so the first window unloads it and loads it again ahead of the call."""
    agent, _, journal, _ = agent_on(cache, tmp_path)
    wall = time.time()
    log_lines(
        tmp_path / "invocations.jsonl",
        [{"t": wall - 290 - 300 * k, "function": "fn-a", "object": "app-a.zip"} for k in range(11, -1, -1)],
    )
    assert tick(agent)
    assert agent.counts["records"] == 12
    a, b = agent.win[agent.index["app-a.zip"]][1:3]
    assert 0 < a <= 300 < b
    wait(lambda: warm(cache / "app-a.zip"), 10, "app-a.zip prewarmed ahead of its call")
    assert cold(cache / "app-b.zip") and cold(cache / "app-c.zip")
    agent.clean_up()
    assert cold(cache / "app-a.zip")
    journal.close()


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.linux
def test_malformed_and_truncated_log_lines_are_counted_and_the_good_ones_kept(
    cache: Path, tmp_path: Path
) -> None:
    agent, backend, journal, clock = agent_on(cache, tmp_path)
    log = tmp_path / "invocations.jsonl"
    wall = time.time()
    good = {"t": wall - 5, "function": "fn-a", "object": "app-a.zip"}
    partial = f'{{"t": {wall - 1}, "function": "fn-b", '  # a line the platform is still writing
    log_lines(log, [good], raw='{"t": "soon", "function": "x"}\nnot json at all\n' + partial)
    assert tick(agent)  # two bad lines among few: dropped, counted, not yet too many
    assert agent.counts["records"] == 1 and agent.counts["log_malformed"] == 2
    assert backend.sensors.faas.log_status()["totals"]["malformed"] == 2  # type: ignore[union-attr]
    log_lines(log, [], raw='"object": "app-b.zip"}\n')  # the truncated line, completed
    clock.t += 2
    assert tick(agent)
    assert agent.counts["records"] == 2 and agent.counts["log_malformed"] == 2
    assert agent.last_call[agent.index["app-b.zip"]] == pytest.approx(clock.t - 1, abs=1.0)
    journal.close()


@pytest.mark.linux
def test_a_rotated_log_is_read_from_its_start_and_a_deleted_one_falls_back_to_keepalive(
    cache: Path, tmp_path: Path
) -> None:
    agent, backend, journal, clock = agent_on(cache, tmp_path)
    log = tmp_path / "invocations.jsonl"
    wall = time.time()
    log_lines(log, [{"t": wall - 20 + k, "function": "fn-a", "object": "app-a.zip"} for k in range(5)])
    assert tick(agent) and agent.counts["records"] == 5
    os.rename(log, tmp_path / "invocations.jsonl.1")  # logrotate: a new file, shorter
    log_lines(log, [{"t": wall - 2, "function": "fn-b", "object": "app-b.zip"}])
    clock.t += 2
    assert tick(agent) and agent.counts["records"] == 6
    assert backend.sensors.faas.log_status()["totals"]["rotated"] == 1  # type: ignore[union-attr]
    log.unlink()
    clock.t += 2
    assert not tick(agent)  # validate fails: the default (fixed keep-alive) acts
    batch = agent.collect()
    assert batch.log_unavailable and "does not exist" in batch.log_unavailable
    verdict = agent.validate(batch)
    assert not verdict and "unavailable" in (verdict.reason or "")
    journal.close()


@pytest.mark.linux
def test_missing_objects_are_counted_not_raised_and_the_model_falls_back(cache: Path, tmp_path: Path) -> None:
    agent, _, journal, clock = agent_on(cache, tmp_path, Params(min_assess_events=4))
    (cache / "app-c.zip").unlink()  # in the catalogue, gone from the disk
    os.symlink(tmp_path / "nowhere", cache / "app-d.zip")  # a dangling link: unreadable
    agent.index["app-d.zip"] = len(agent.names)
    agent.names.append("app-d.zip")
    agent.size.append(MB)
    for k in range(3):
        agent.act(model(Plan(k + 1, ("app-c.zip", "app-d.zip"), ()), clock.t))
    assert agent.act_counts["failed"] == 6
    verdict = agent.assess_model()
    assert not verdict and "failed" in (verdict.reason or "")
    journal.close()


@pytest.mark.linux
def test_a_full_disk_is_a_counted_failure(tmp_path: Path) -> None:
    """The cache directory on a 1 MiB tmpfs: copying a 4 MiB object from the origin fails with
    ENOSPC; the agent counts it and goes on."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.decode().strip()}")
    try:
        origin = tmp_path / "origin"
        blob(origin / "big.zip", 4 * MB)
        agent, _, journal, clock = agent_on(small, tmp_path, Params(min_assess_events=3), origin=origin)
        for k in range(3):
            # the refused write goes to the runtime, which mitigates and backs off to the default
            with pytest.raises(WriteError, match=r"ENOSPC|No space"):
                agent.act(model(Plan(k + 1, ("big.zip",), ()), clock.t))
        assert agent.act_counts["failed"] == 3 and not agent.held
        assert not agent.assess_model()
        assert not list(small.iterdir())  # no partial copy left behind
        journal.close()
    finally:
        subprocess.run(["umount", str(small)], check=False)
        advise(origin / "big.zip", os.POSIX_FADV_DONTNEED)


# -- crash safety -----------------------------------------------------------------------------


def live(test: Callable[..., None]) -> Callable[..., None]:
    for mark in (pytest.mark.linux, pytest.mark.live, pytest.mark.slow):
        test = mark(test)
    return test


@live
def test_sigkill_while_prewarmed_then_restore_unloads_what_the_agent_loaded_and_nothing_else(
    cache: Path, tmp_path: Path
) -> None:
    a, b = cache / "app-a.zip", cache / "app-b.zip"
    log = tmp_path / "invocations.jsonl"
    wall = time.time()
    # app-a's next call is due: the agent prewarms it in its first window
    log_lines(
        log,
        [{"t": wall - 295 - 300 * k, "function": "fn-a", "object": "app-a.zip"} for k in range(11, -1, -1)],
    )
    b.read_bytes()  # warm, by someone else: not the agent's to unload
    assert warm(b)
    cfg = tmp_path / "sol.toml"
    cfg.write_text(
        f"""
backend = "linux"
rollback = "auto"

[paths]
state_dir = "{tmp_path / "state"}"

[log]
format = "json"
level = "info"

[linux.faas]
cache_dir = "{cache}"
invocation_log = "{log}"

[daemon]
metrics = false
control_socket = "{tmp_path / "sol.sock"}"

[agents.faas_prewarm]
enabled = true
"""
    )
    out = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 (read on failure)
    d = subprocess.Popen([*SOL, "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait(lambda: warm(a), START, "app-a.zip prewarmed by the daemon")
        except AssertionError:
            raise AssertionError((tmp_path / "daemon.log").read_text()[-3000:]) from None
        d.send_signal(signal.SIGKILL)
        d.wait(timeout=10)
    finally:
        if d.poll() is None:
            d.kill()
            d.wait()
        out.close()
    assert warm(a), "SIGKILL leaves the prewarm in the page cache"
    # b read again just before the restore (others on this host may drop caches): it must
    # stay as it is
    b.read_bytes()
    assert warm(b)
    restore = subprocess.run([*SOL, "restore", "--config", str(cfg)], capture_output=True, text=True)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert cold(a), "sol restore drops what the agent loaded"
    assert warm(b), "and nothing else"
