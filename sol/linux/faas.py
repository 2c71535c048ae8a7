"""The FaaS local-cache facility: objects in a cache directory, their page-cache residency.

``linux.faas.cache_dir`` holds the local copies; ``linux.faas.origin_dir`` (optional) is the
catalogue they come from (a slower mount, a blob-store fuse dir): ``prewarm`` copies a
missing object into the cache directory, then asks for read-ahead. Invocations come from the
platform's log (``linux.faas.invocation_log``: one JSON object per line, ``t`` in wall-clock
seconds, ``function``, ``object``), converted to the runtime clock.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sol.actuators.base import HostWriter
from sol.actuators.pagecache import PageCacheKnob, residency
from sol.facilities import CacheObject, Invocation, Prewarm, Residency
from sol.kernel.errors import SensorError, Unsupported, errno_name, os_problem
from sol.linux.gate import check_writer

__all__ = ["FaasHost", "LinuxFaasActuators", "LinuxFaasSensors", "build_faas"]

#: read bandwidth assumed for ``Prewarm.ready_at`` (bytes/s); the residency sensor verifies
READ_BPS = 500e6
HISTORY = 10_000


class FaasHost:
    def __init__(
        self,
        cache_dir: Path,
        *,
        origin_dir: Path | None,
        invocation_log: Path | None,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.origin_dir = Path(origin_dir) if origin_dir is not None else None
        self.log_path = Path(invocation_log) if invocation_log is not None else None
        self.clock = clock
        self.wall = wall
        for d in (self.cache_dir, self.origin_dir):
            if d is not None and not d.is_dir():
                raise Unsupported("faas", f"{d} is not a directory")
        self._offset = 0
        self._partial = b""
        self._inode: tuple[int, int] | None = None
        #: log conditions counted since the start, and since the last ``log_status()``
        self.problems: dict[str, int] = {}
        self._new_problems: dict[str, int] = {}
        self.unavailable: str | None = None
        self._history: deque[Invocation] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()

    @property
    def catalogue(self) -> Path:
        return self.origin_dir if self.origin_dir is not None else self.cache_dir

    def objects(self) -> list[CacheObject]:
        out = []
        base = self.catalogue
        for dirpath, dirnames, files in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(files):
                if f.startswith("."):
                    continue
                p = Path(dirpath) / f
                try:
                    out.append(CacheObject(str(p.relative_to(base)), p.stat().st_size))
                except FileNotFoundError:
                    continue
        return sorted(out, key=lambda o: o.name)

    def paths(self, name: str) -> tuple[Path, Path | None]:
        """(local copy, origin) of ``name``; unknown name -> ``KeyError``."""
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise KeyError(name)
        local = self.cache_dir / name
        origin = self.origin_dir / name if self.origin_dir is not None else None
        if not (origin if origin is not None else local).is_file():
            raise KeyError(name)
        return local, origin

    def residency(self, name: str) -> Residency:
        local, origin = self.paths(name)
        now = self.clock()
        try:
            r = residency(local)
        except FileNotFoundError:
            assert origin is not None
            return Residency(now, name, 0, origin.stat().st_size)
        except OSError as exc:
            raise SensorError(local, os_problem(exc, "mincore failed"), errno_name=errno_name(exc)) from exc
        size = origin.stat().st_size if origin is not None else r.size_bytes
        return Residency(now, name, r.resident_bytes if r.size_bytes == size else 0, size)

    def invocations(self, since: float) -> list[Invocation]:
        with self._lock:
            self._read_log()
            return [i for i in self._history if i.t >= since]

    def _count(self, kind: str, n: int = 1) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + n
        self._new_problems[kind] = self._new_problems.get(kind, 0) + n

    def log_status(self) -> dict[str, Any]:
        """The log's conditions: ``new_problems`` since the last call (``malformed`` lines,
        ``rotated``, ``missing``, ``unreadable``), ``totals``, and ``unavailable`` (why the log
        cannot be read now, or None)."""
        with self._lock:
            self._read_log_quietly()
            new, self._new_problems = self._new_problems, {}
            return {"new_problems": new, "totals": dict(self.problems), "unavailable": self.unavailable}

    def _read_log_quietly(self) -> None:
        with contextlib.suppress(SensorError):  # counted: the caller reads the counts
            self._read_log()

    def _read_log(self) -> None:
        """Read the new lines. A rotated or truncated log (another inode, or shorter than what
        was read) is read from its start; a deleted or unreadable one is ``unavailable``. A
        line that does not parse is counted and skipped; the good ones are kept, and then a
        ``SensorError`` names the bad (once per read that found some)."""
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "rb") as f:
                st = os.fstat(f.fileno())
                ident = (st.st_dev, st.st_ino)
                if self._inode is not None and (ident != self._inode or st.st_size < self._offset):
                    self._offset, self._partial = 0, b""  # rotated or truncated
                    self._count("rotated")
                self._inode = ident
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            if self.unavailable is None:
                self._count("missing")
            self.unavailable = f"{self.log_path} does not exist (deleted, or not yet written)"
            return
        except OSError as exc:
            if self.unavailable is None:
                self._count("unreadable")
            self.unavailable = f"{self.log_path}: {os_problem(exc)}"
            return
        self.unavailable = None
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        shift = self.wall() - self.clock()  # wall -> runtime clock
        bad: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                inv = Invocation(float(rec["t"]) - shift, str(rec["function"]), str(rec["object"]))
                if not math.isfinite(inv.t):
                    raise ValueError(f"time {rec['t']!r} is not finite")
            except (ValueError, KeyError, TypeError) as exc:
                bad.append(f"{line[:60]!r}: {exc}")
                continue
            self._history.append(inv)
        if bad:
            self._count("malformed", len(bad))
            raise SensorError(
                self.log_path, f"bad invocation record {bad[0]} ({len(bad)} line(s) skipped, the rest kept)"
            )


class LinuxFaasSensors:
    def __init__(self, host: FaasHost) -> None:
        self._h = host

    def objects(self) -> Sequence[CacheObject]:
        return self._h.objects()

    def residency(self, name: str) -> Residency:
        return self._h.residency(name)

    def invocations(self, since: float) -> Sequence[Invocation]:
        return self._h.invocations(since)

    def log_status(self) -> dict[str, Any]:
        """Linux only: the invocation log's conditions (``FaasHost.log_status``)."""
        return self._h.log_status()


class LinuxFaasActuators:
    def __init__(self, host: FaasHost, writer: HostWriter) -> None:
        self._h = host
        self.writer = writer

    def prewarm(self, name: str) -> Prewarm:
        local, origin = self._h.paths(name)
        check_writer(self.writer, str(local))
        now = self._h.clock()
        before = self._h.residency(name)
        queued = max(0, before.size_bytes - before.resident_bytes)
        knob = PageCacheKnob(local, origin)
        result = self.writer.write(knob, "willneed", now=now)
        if result.written is None or result.dry_run:
            queued = 0 if result.written is None else queued
        return Prewarm(t=now, name=name, bytes_queued=queued, ready_at=now + queued / READ_BPS)

    def evict(self, name: str) -> int:
        local, _origin = self._h.paths(name)
        check_writer(self.writer, str(local))
        before = self._h.residency(name).resident_bytes
        result = self.writer.write(PageCacheKnob(local), "dontneed", now=self._h.clock())
        if result.written is None or result.dry_run or not local.exists():
            return 0
        return max(0, before - residency(local).resident_bytes)


def build_faas(backend: Any) -> None:
    faas = backend.linux.faas
    if faas.cache_dir is None:
        raise Unsupported("faas", "no local cache directory: set [linux.faas] cache_dir")
    host = FaasHost(
        faas.cache_dir,
        origin_dir=faas.origin_dir,
        invocation_log=faas.invocation_log,
        clock=backend.clock.now,
    )
    backend.sensors.faas = LinuxFaasSensors(host)
    backend.register_actuators("faas", lambda writer, cg: LinuxFaasActuators(host, writer))
    backend.report_feature("faas", True, f"cache {host.cache_dir}, {len(host.objects())} object(s)")
