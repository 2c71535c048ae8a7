"""The FaaS facility: a cache directory, an origin catalogue, residency, invocations."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from linux_fakes import StepClock

from sol.actuators.pagecache import advise, residency
from sol.config import LinuxConfig, LinuxFaasConfig
from sol.kernel.errors import SensorError
from sol.linux import LinuxBackend
from sol.safety.journal import UndoJournal

SIZE = 4 << 20


def blob(path: Path, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    advise(path, os.POSIX_FADV_DONTNEED)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    cache, origin = tmp_path / "cache", tmp_path / "origin"
    cache.mkdir()
    blob(origin / "fn-a" / "package.zip")
    blob(origin / "fn-b.bin", 1 << 20)
    return cache, origin, tmp_path / "invocations.jsonl"


def backend_for(dirs: tuple[Path, Path, Path], clock: StepClock, journal: UndoJournal | None) -> LinuxBackend:
    cache, origin, log = dirs
    linux = LinuxConfig(faas=LinuxFaasConfig(cache_dir=cache, origin_dir=origin, invocation_log=log))
    return LinuxBackend(linux, journal=journal, clock=clock, facilities=("faas",))


def test_objects_come_from_the_origin_and_prewarm_copies_then_reads_ahead(
    dirs: tuple[Path, Path, Path], clock: StepClock, journal: UndoJournal
) -> None:
    cache, origin, _ = dirs
    backend = backend_for(dirs, clock, journal)
    faas = backend.sensors.faas
    assert [(o.name, o.size_bytes) for o in faas.objects()] == [
        ("fn-a/package.zip", SIZE),
        ("fn-b.bin", 1 << 20),
    ]
    assert faas.residency("fn-a/package.zip").resident_bytes == 0  # not in the cache dir yet
    act = backend.actuators_for("faas_prewarm", dry_run=False).faas
    pre = act.prewarm("fn-a/package.zip")
    assert pre.bytes_queued == SIZE and pre.ready_at > pre.t
    assert (cache / "fn-a" / "package.zip").read_bytes() == (origin / "fn-a" / "package.zip").read_bytes()
    deadline = time.monotonic() + 5
    while not faas.residency("fn-a/package.zip").warm and time.monotonic() < deadline:
        time.sleep(0.01)
    assert faas.residency("fn-a/package.zip").warm
    assert act.prewarm("fn-a/package.zip").bytes_queued == 0  # already warm: nothing written
    dropped = act.evict("fn-a/package.zip")
    assert dropped == SIZE and residency(cache / "fn-a" / "package.zip").resident_bytes == 0
    assert {r.kind for r in journal.open_records("faas_prewarm")} == {"pagecache"}


def test_dry_run_prewarm_copies_nothing(dirs: tuple[Path, Path, Path], clock: StepClock) -> None:
    cache, _, _ = dirs
    act = backend_for(dirs, clock, None).actuators_for("faas_prewarm", dry_run=True).faas
    assert act.prewarm("fn-b.bin").bytes_queued == 1 << 20
    assert not (cache / "fn-b.bin").exists()


@pytest.mark.parametrize(
    "name", ["nope", "../etc/passwd", "/etc/passwd", ""], ids=["unknown", "dotdot", "abs", "empty"]
)
def test_unknown_or_escaping_names_are_key_errors(
    dirs: tuple[Path, Path, Path], clock: StepClock, name: str
) -> None:
    backend = backend_for(dirs, clock, None)
    with pytest.raises(KeyError):
        backend.sensors.faas.residency(name)
    with pytest.raises(KeyError):
        backend.actuators_for("f", dry_run=True).faas.prewarm(name)


def test_invocations_are_read_incrementally_and_put_on_the_runtime_clock(
    dirs: tuple[Path, Path, Path], clock: StepClock
) -> None:
    _, _, log = dirs
    faas = backend_for(dirs, clock, None).sensors.faas
    assert faas.invocations(0.0) == []
    wall = time.time()
    with open(log, "a") as f:
        f.write(json.dumps({"t": wall - 5, "function": "a", "object": "fn-a/package.zip"}) + "\n")
        f.write(json.dumps({"t": wall - 1, "function": "b", "object": "fn-b.bin"}) + "\n")
        f.write('{"t": 1, "function": "partial')  # a line still being written
    got = faas.invocations(0.0)
    assert [i.function for i in got] == ["a", "b"]
    assert got[0].t == pytest.approx(clock.now() - 5, abs=0.5)
    assert [i.function for i in faas.invocations(clock.now() - 2)] == ["b"]
    with open(log, "a") as f:
        f.write('", "object": "fn-b.bin"}\n')
    assert [i.function for i in faas.invocations(-1e18)] == ["a", "b", "partial"]


def test_garbage_in_the_invocation_log_is_a_sensor_error(
    dirs: tuple[Path, Path, Path], clock: StepClock
) -> None:
    _, _, log = dirs
    log.write_text('{"t": "soon", "function": "a", "object": "x"}\n')
    with pytest.raises(SensorError, match="bad invocation record"):
        backend_for(dirs, clock, None).sensors.faas.invocations(0.0)


def test_no_cache_dir_is_no_faas_facility(clock: StepClock) -> None:
    assert LinuxBackend(LinuxConfig(), clock=clock, facilities=("faas",)).sensors.faas is None
