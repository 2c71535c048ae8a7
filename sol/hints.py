"""Workload hints: what a workload says it tolerates, for the agents that act on it.

Workload Intelligence (arXiv 2404.19143) and HarmonAIze (arXiv 2501.09562) argue for a channel
from workloads to the platform; this is its workload-to-node half (the other half, what the
node says it will do, is :mod:`sol.notices`). A **target** is a cgroup (by its path below the
cgroup root, e.g. ``machine.slice/vm-a.scope``) or a process (by PID, kept with its start
time so a reused PID is not mistaken for it). Its hints, every one optional:

================================  ==========  ==================================================
key                               type        meaning
================================  ==========  ==================================================
``priority``                      str         ``low`` / ``normal`` / ``high``
``harvestable``                   bool        its idle cores may be lent first (preemptible)
``latency_tolerance_ms``          float       how long its requests tolerate waiting (ms)
``far_memory_ok``                 bool        memory on a far tier (CXL, far NUMA) is acceptable
``power_cap_ok``                  bool        a GPU power cap is acceptable (SaaS yes, IaaS no,
                                              as TAPAS distinguishes)
``deadline``                      float       batch work: finish by this time (Unix seconds)
``invocation_every_s``            float       functions: expected seconds between invocations
``invocation_at``                 float       functions: the next expected one (Unix seconds)
================================  ==========  ==================================================

An unknown key is an error that lists the known ones; a wrong type or a value out of range is
an error naming the key. Hints come from three channels, merged per key (later wins):

1. TOML files in a directory an operator or orchestrator manages (``[hints] dir``): one or
   more ``[[hint]]`` tables, each with ``cgroup = "..."`` or ``pid = N`` and hint keys. A file
   with a problem is skipped with the problem logged (the others still apply); the directory is
   read again when a file in it changes.
2. The control socket and ``sol hint`` (root, any target), and
3. the workload socket (``[hints] socket``, open to every user): a process sets hints for its
   own cgroup (or one below it) or its own PID only; the daemon reads the peer's PID from
   ``SO_PEERCRED`` and its cgroup from ``/proc/<pid>/cgroup``.

Hints set over a socket are persisted (``hints.json`` in the state directory, written
atomically) and survive a restart; every target's hints expire when its cgroup or process is
gone. The store holds at most ``max_targets`` targets.

Agents read them through ``ctx.hints`` (a :class:`HintView`), read-only and typed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sol.sdk import relative_cgroup

__all__ = [
    "HINT_KEYS",
    "PRIORITIES",
    "HintError",
    "HintStore",
    "HintView",
    "Hints",
    "Target",
    "parse_hints",
]

PRIORITIES = ("low", "normal", "high")
#: targets the store holds at most (each a few hundred bytes)
MAX_TARGETS = 1024
#: a week of latency tolerance, in ms: longer is "any"
_MAX_TOLERANCE_MS = 7 * 86400 * 1000.0


class HintError(ValueError):
    """A hint, target or hint file that cannot be accepted; the message says what and why."""


@dataclass(frozen=True, slots=True)
class Hints:
    """One target's hints; ``None`` is "not said" (an agent uses its own default)."""

    priority: str | None = None
    harvestable: bool | None = None
    latency_tolerance_ms: float | None = None
    far_memory_ok: bool | None = None
    power_cap_ok: bool | None = None
    deadline: float | None = None
    invocation_every_s: float | None = None
    invocation_at: float | None = None

    def merged(self, other: Hints) -> Hints:
        """These hints with every key ``other`` says replacing ours."""
        said = {f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None}
        return replace(self, **said)

    def as_dict(self) -> dict[str, Any]:
        """The keys said, for JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def empty(self) -> bool:
        return not self.as_dict()

    @property
    def rank(self) -> int:
        """0 low, 1 normal (or unsaid), 2 high: for ordering targets by priority."""
        return PRIORITIES.index(self.priority) if self.priority else 1


HINT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Hints))


def _number(key: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HintError(f"hint {key!r} must be a number, got {json.dumps(value, default=str)}")
    x = float(value)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise HintError(f"hint {key!r} must be in [{lo:g}, {hi:g}], got {value!r}")
    return x


def _flag(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise HintError(f"hint {key!r} must be true or false, got {json.dumps(value, default=str)}")
    return value


def parse_hints(raw: Mapping[str, object]) -> Hints:
    """Hints from a mapping (a socket request, a TOML table, CLI ``key=value`` pairs parsed).

    >>> parse_hints({"priority": "low", "far_memory_ok": True}).as_dict()
    {'priority': 'low', 'far_memory_ok': True}
    >>> parse_hints({"colour": "blue"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sol.hints.HintError: unknown hint key(s) ['colour']; known: deadline, far_memory_ok, ...
    """
    unknown = sorted(set(raw) - set(HINT_KEYS))
    if unknown:
        raise HintError(f"unknown hint key(s) {unknown}; known: {', '.join(sorted(HINT_KEYS))}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key == "priority":
            if value not in PRIORITIES:
                raise HintError(f"hint 'priority' must be one of {', '.join(PRIORITIES)}, got {value!r}")
            out[key] = value
        elif key in ("harvestable", "far_memory_ok", "power_cap_ok"):
            out[key] = _flag(key, value)
        elif key == "latency_tolerance_ms":
            out[key] = _number(key, value, 0.0, _MAX_TOLERANCE_MS)
        elif key == "invocation_every_s":
            out[key] = _number(key, value, 1.0, 7 * 86400.0)
        else:  # deadline, invocation_at: a time
            out[key] = _number(key, value, 1.0, 1e11)
    return Hints(**out)


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """A cgroup (``kind == "cgroup"``, ``name`` its path) or a process (``"pid"``)."""

    kind: str
    name: str
    #: a process's start time (clock ticks since boot, /proc/PID/stat field 22): tells a
    #: reused PID apart; 0 when unknown
    start: int = 0

    @classmethod
    def cgroup(cls, path: str) -> Target:
        path = path.strip("/") if path not in ("", "/") else path
        problem = relative_cgroup(path)
        if problem:
            raise HintError(f"cgroup {problem}")
        return cls("cgroup", path)

    @classmethod
    def pid(cls, pid: object, start: int = 0) -> Target:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise HintError(f"pid must be a positive integer, got {json.dumps(pid, default=str)}")
        return cls("pid", str(pid), start)

    @classmethod
    def parse(cls, raw: Mapping[str, object]) -> Target:
        """From ``{"cgroup": PATH}`` or ``{"pid": N}`` (exactly one)."""
        has_c, has_p = raw.get("cgroup") is not None, raw.get("pid") is not None
        if has_c == has_p:
            raise HintError("a target is exactly one of cgroup = PATH or pid = N")
        if has_c:
            value = raw["cgroup"]
            if not isinstance(value, str):
                raise HintError(f"cgroup must be a string path, got {json.dumps(value, default=str)}")
            return cls.cgroup(value)
        return cls.pid(raw["pid"])

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"cgroup": self.name} if self.kind == "cgroup" else {"pid": int(self.name)}


def pid_start(pid: int, proc_root: Path = Path("/proc")) -> int:
    """A process's start time in clock ticks since boot, or 0 if it is gone."""
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return 0
    # the command may hold spaces and parentheses: fields start after the last ")"
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return 0


def cgroup_exists(path: str, cgroup_root: Path) -> bool:
    """The cgroup is in any hierarchy under ``cgroup_root`` (v2: the root itself; v1: a
    controller's directory)."""
    if (cgroup_root / path).is_dir():
        return True
    with contextlib.suppress(OSError):
        for h in cgroup_root.iterdir():
            if h.is_dir() and (h / path).is_dir():
                return True
    return False


class HintView:
    """What an agent sees: every target's hints, read-only (``ctx.hints``)."""

    def __init__(self, source: Callable[[], Mapping[Target, Hints]] | None = None) -> None:
        self._source = source or (lambda: {})

    def all(self) -> Mapping[Target, Hints]:
        return self._source()

    def for_cgroup(self, path: str) -> Hints:
        """The hints of ``path``, or of the closest cgroup above it that has some; empty if none."""
        table = self._source()
        parts = path.strip("/").split("/")
        for i in range(len(parts), 0, -1):
            got = table.get(Target("cgroup", "/".join(parts[:i])))
            if got is not None:
                return got
        return Hints()

    def for_pid(self, pid: int) -> Hints:
        for t, h in self._source().items():
            if t.kind == "pid" and t.name == str(pid):
                return h
        return Hints()

    def __call__(self, *, cgroup: str | None = None, pid: int | None = None) -> Hints:
        if cgroup is not None:
            return self.for_cgroup(cgroup)
        if pid is not None:
            return self.for_pid(pid)
        return Hints()


class HintStore:
    """Every target's hints, from the three channels; thread-safe.

    ``alive(target)`` says whether a target still exists (a cgroup directory, a process with
    the same start time); ``expire()`` drops those that do not. ``path`` (optional) persists
    the socket channel's hints.
    """

    def __init__(
        self,
        *,
        path: Path | None = None,
        hint_dir: Path | None = None,
        alive: Callable[[Target], bool] | None = None,
        max_targets: int = MAX_TARGETS,
        log: Any = None,
    ) -> None:
        self.path = path
        self.hint_dir = hint_dir
        self.alive = alive or (lambda t: True)
        self.max_targets = max_targets
        self.log = log
        self._lock = threading.Lock()
        self._set: dict[Target, Hints] = {}
        self._files: dict[Target, Hints] = {}
        self._dir_stamp: tuple[tuple[str, int, int], ...] | None = None
        #: problems of the hint files, by file name (kept until the file changes)
        self.file_problems: dict[str, str] = {}
        self._merged: dict[Target, Hints] = {}
        self.load()

    # -- reading --------------------------------------------------------------------------
    def snapshot(self) -> Mapping[Target, Hints]:
        return self._merged  # replaced, never mutated: safe to read without the lock

    def view(self) -> HintView:
        return HintView(self.snapshot)

    def get(self, target: Target) -> Hints:
        return self._merged.get(target, Hints())

    # -- the socket / CLI channel ---------------------------------------------------------
    def set(self, target: Target, raw: Mapping[str, object]) -> Hints:
        """Merge ``raw`` into ``target``'s hints; returns what the target has now."""
        new = parse_hints(raw)
        with self._lock:
            old = self._set.get(target)
            if old is None and len(self._set) + len(self._files) >= self.max_targets:
                raise HintError(
                    f"the daemon holds hints for {self.max_targets} targets already (its limit); "
                    "clear some first"
                )
            self._set[target] = (old or Hints()).merged(new)
            self._rebuild()
            self._save()
            return self._merged[target]

    def clear(self, target: Target, keys: Iterable[str] | None = None) -> Hints:
        """Forget ``keys`` (all when None) of ``target``'s socket-set hints."""
        keys = list(keys) if keys is not None else None
        if keys:
            unknown = sorted(set(keys) - set(HINT_KEYS))
            if unknown:
                raise HintError(f"unknown hint key(s) {unknown}; known: {', '.join(sorted(HINT_KEYS))}")
        with self._lock:
            old = self._set.get(target)
            if old is not None:
                if keys is None:
                    del self._set[target]
                else:
                    left = replace(old, **dict.fromkeys(keys))
                    if left.empty:
                        del self._set[target]
                    else:
                        self._set[target] = left
                self._rebuild()
                self._save()
            return self._merged.get(target, Hints())

    # -- housekeeping ----------------------------------------------------------------------
    def expire(self) -> list[Target]:
        """Drop the hints of targets that are gone; returns them."""
        with self._lock:
            gone = [t for t in self._set if not self.alive(t)]
            for t in gone:
                del self._set[t]
            if gone:
                self._rebuild()
                self._save()
        for t in gone:
            if self.log is not None:
                self.log.info("hints.expired", target=str(t))
        return gone

    def refresh_files(self) -> bool:
        """Read the hint directory again if a file in it changed; True when it was read."""
        if self.hint_dir is None:
            return False
        stamp = self._stamp()
        if stamp == self._dir_stamp:
            return False
        files: dict[Target, Hints] = {}
        problems: dict[str, str] = {}
        for name, _, _ in stamp:
            path = self.hint_dir / name
            try:
                for target, hints in self._read_file(path):
                    files[target] = files.get(target, Hints()).merged(hints)
            except HintError as exc:
                problems[name] = str(exc)
        for name, problem in problems.items():
            if self.file_problems.get(name) != problem and self.log is not None:
                self.log.warning("hints.file_skipped", file=str(self.hint_dir / name), problem=problem)
        with self._lock:
            if len(files) > self.max_targets:
                problems["*"] = (
                    f"{len(files)} targets in the hint files, over the limit of {self.max_targets}"
                )
                files = dict(sorted(files.items())[: self.max_targets])
            self._files = files
            self.file_problems = problems
            self._dir_stamp = stamp
            self._rebuild()
        return True

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        assert self.hint_dir is not None
        out = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.hint_dir):
                if entry.name.endswith(".toml") and entry.is_file():
                    st = entry.stat()
                    out.append((entry.name, st.st_mtime_ns, st.st_size))
        return tuple(sorted(out))

    def _read_file(self, path: Path) -> list[tuple[Target, Hints]]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HintError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > 1 << 20:
            raise HintError(f"{path} is over 1 MiB")
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise HintError(f"{path}: not valid TOML: {exc}") from exc
        unknown = sorted(set(doc) - {"hint"})
        if unknown:
            raise HintError(f"{path}: unknown table(s) {unknown}; a hint file holds [[hint]] tables")
        tables = doc.get("hint", [])
        if not isinstance(tables, list):
            raise HintError(f"{path}: 'hint' must be an array of tables ([[hint]])")
        out = []
        for i, table in enumerate(tables, 1):
            where = f"{path}, hint #{i}"
            try:
                target = Target.parse({k: table.get(k) for k in ("cgroup", "pid")})
                hints = parse_hints({k: v for k, v in table.items() if k not in ("cgroup", "pid")})
            except HintError as exc:
                raise HintError(f"{where}: {exc}") from None
            out.append((target, hints))
        return out

    # -- persistence -----------------------------------------------------------------------
    def load(self) -> None:
        """Read the persisted socket-channel hints; a damaged file is logged and ignored."""
        if self.path is None or not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text())
            entries = doc["targets"]
            loaded: dict[Target, Hints] = {}
            for e in entries[: self.max_targets]:
                t = Target(str(e["kind"]), str(e["name"]), int(e.get("start", 0)))
                if t.kind not in ("cgroup", "pid"):
                    raise HintError(f"target kind {t.kind!r}")
                loaded[t] = parse_hints(e["hints"])
        except (OSError, ValueError, KeyError, TypeError, HintError) as exc:
            if self.log is not None:
                self.log.warning("hints.state_ignored", path=str(self.path), problem=str(exc))
            return
        with self._lock:
            self._set = loaded
            self._rebuild()

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {
            "version": 1,
            "targets": [
                {"kind": t.kind, "name": t.name, "start": t.start, "hints": h.as_dict()}
                for t, h in sorted(self._set.items())
            ],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if self.log is not None:
                self.log.warning("hints.save_failed", path=str(self.path), problem=exc.strerror)

    def _rebuild(self) -> None:
        merged = dict(self._files)
        for t, h in self._set.items():
            merged[t] = merged.get(t, Hints()).merged(h)
        self._merged = merged
