"""DAMON through its sysfs interface (Documentation/admin-guide/mm/damon/usage.rst).

A :class:`DamonMonitor` owns one kdamond: one context (``vaddr`` ops with the target PIDs,
or ``paddr`` for physical memory), a ``stat`` scheme in slot 0 whose ``tried_regions`` are
the monitoring results, and spare scheme slots the memory actuator turns into DAMOS
``migrate_hot``/``migrate_cold`` schemes. Reading regions writes
``update_schemes_tried_regions`` to the kdamond's ``state`` (the kernel refreshes the
``tried_regions`` directories before the write returns), then reads each region's
``start``, ``end``, ``nr_accesses`` and ``age``.

Ownership. ``nr_kdamonds`` is global: writing it re-creates every kdamond directory, and the
kernel refuses (``EBUSY``) while any kdamond runs. So sol starts a monitor only where it
cannot disturb anyone: when no kdamond exists (it then creates one, and removes it on stop),
or on the kdamond index an operator reserved for it (``linux.memory.damon_kdamond``) while that
kdamond is off. Anything else is reported unsupported with the reason; sol never writes to
a kdamond it does not own.

Crash safety. Starting the kdamond is journaled (kind ``damon.kdamond``, owner
``sol.linux``) before ``state`` is set ``on``; the restorer turns it off (and removes the
kdamond sol created), so a SIGKILLed daemon's monitor and its DAMOS schemes are stopped by
the next start or ``sol restore``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sol.actuators.damon import KdamondKnob, restore_kdamond  # the knob lives with the pipeline
from sol.facilities import DamonRegion, DamonSnapshot
from sol.kernel.errors import SensorError, Unsupported
from sol.kernel.procfs import parse_int, read_file

__all__ = ["DamonMonitor", "DamonSettings", "KdamondKnob", "make_fake_admin", "restore_kdamond"]


def _write(path: Path, text: str) -> None:
    from sol.actuators.file import write_existing

    write_existing(path, text)


@dataclass(frozen=True)
class DamonSettings:
    #: ``vaddr`` (target PIDs) or ``paddr`` (physical address space, no PIDs)
    ops: str = "vaddr"
    sample_us: int = 5_000
    aggr_us: int = 100_000
    update_us: int = 1_000_000
    min_regions: int = 10
    max_regions: int = 1_000
    #: scheme slots after the stat scheme, for DAMOS actions
    action_slots: int = 2

    @property
    def max_nr_accesses(self) -> int:
        return max(1, self.aggr_us // self.sample_us)


class DamonMonitor:
    """One kdamond owned by sol. ``start`` needs a journal-backed ``writer`` (crash safety)."""

    def __init__(
        self,
        admin_root: Path,
        *,
        pids: Sequence[int],
        settings: DamonSettings,
        kdamond: int | None,
        clock: Callable[[], float],
        log: Any,
    ) -> None:
        self.admin = Path(admin_root)
        self.pids = tuple(pids)
        self.settings = settings
        self.reserved = kdamond
        self.clock = clock
        self.log = log
        self.index: int | None = None
        self.created = False
        self.started = False
        self._lock = threading.Lock()
        #: the last read of every target's regions (several targets), reused within one
        #: aggregation interval so that reading each target costs one sysfs scan in all
        self._split: tuple[float, tuple[DamonSnapshot, ...]] | None = None

    # -- paths -----------------------------------------------------------------------------
    @property
    def kdamonds(self) -> Path:
        return self.admin / "kdamonds"

    @property
    def kdamond(self) -> Path:
        if self.index is None:
            raise Unsupported("damon", "monitor not started")
        return self.kdamonds / str(self.index)

    @property
    def context(self) -> Path:
        return self.kdamond / "contexts" / "0"

    def scheme(self, slot: int) -> Path:
        return self.context / "schemes" / str(slot)

    # -- ownership -------------------------------------------------------------------------
    def probe(self) -> None:
        """Raise :class:`Unsupported` with the reason sol cannot own a kdamond here."""
        nr_path = self.kdamonds / "nr_kdamonds"
        if not nr_path.is_file():
            raise Unsupported(
                "damon", f"{nr_path} is missing: kernel without DAMON sysfs (CONFIG_DAMON_SYSFS)"
            )
        nr = parse_int(read_file(nr_path), nr_path, what="a kdamond count", lo=0)
        if self.settings.ops == "vaddr" and not self.pids:
            raise Unsupported("damon", "no target process (set [linux.memory] targets)")
        if self.reserved is None:
            if nr != 0:
                states = ", ".join(f"{i}:{self._state(i)}" for i in range(nr))
                raise Unsupported(
                    "damon",
                    f"{nr} kdamond(s) already exist ({states}) and belong to another owner: nr_kdamonds "
                    "can only change while every kdamond is off; reserve one for sol with "
                    "linux.memory.damon_kdamond",
                )
        else:
            if self.reserved >= nr:
                raise Unsupported(
                    "damon", f"linux.memory.damon_kdamond = {self.reserved}, but only {nr} kdamond(s) exist"
                )
            if self._state(self.reserved) != "off":
                raise Unsupported(
                    "damon", f"kdamond {self.reserved} is {self._state(self.reserved)}, not off"
                )

    def _state(self, index: int) -> str:
        try:
            return read_file(self.kdamonds / str(index) / "state").strip()
        except SensorError:
            return "?"

    def _avail_ops(self, ctx: Path) -> set[str]:
        path = ctx / "avail_operations"
        return set(read_file(path).split()) if path.is_file() else {"vaddr", "paddr", "fvaddr"}

    # -- lifetime --------------------------------------------------------------------------
    def start(self, writer: Any) -> None:
        """Configure and turn on the kdamond; the ``on`` goes through ``writer`` (journaled)."""
        with self._lock:
            if self.started:
                return
            self.probe()
            s = self.settings
            if self.reserved is None:
                _write(self.kdamonds / "nr_kdamonds", "1")
                self.index, self.created = 0, True
            else:
                self.index = self.reserved
            try:
                k = self.kdamond
                _write(k / "contexts" / "nr_contexts", "1")
                ops_path = self.context / "operations"
                avail = self._avail_ops(self.context)
                if s.ops not in avail:
                    raise Unsupported(
                        "damon",
                        f"operations {s.ops!r} not built in this kernel (available: "
                        f"{' '.join(sorted(avail)) or 'none'})",
                    )
                _write(ops_path, s.ops)
                attrs = self.context / "monitoring_attrs"
                _write(attrs / "intervals" / "sample_us", str(s.sample_us))
                _write(attrs / "intervals" / "aggr_us", str(s.aggr_us))
                _write(attrs / "intervals" / "update_us", str(s.update_us))
                _write(attrs / "nr_regions" / "min", str(s.min_regions))
                _write(attrs / "nr_regions" / "max", str(s.max_regions))
                targets = self.context / "targets"
                _write(targets / "nr_targets", str(max(1, len(self.pids)) if s.ops != "paddr" else 1))
                for i, pid in enumerate(self.pids if s.ops != "paddr" else ()):
                    _write(targets / str(i) / "pid_target", str(pid))
                _write(self.context / "schemes" / "nr_schemes", str(1 + s.action_slots))
                for slot in range(1 + s.action_slots):
                    # Slot 0 is "stat" over every region (its tried_regions are the monitoring
                    # results); spare slots are "stat" limited to regions of at most 0 bytes,
                    # which matches nothing, until the memory actuator fills them.
                    _write(self.scheme(slot) / "action", "stat")
                    if slot:
                        _write(self.scheme(slot) / "access_pattern" / "sz" / "max", "0")
                writer.write(KdamondKnob(k, created=self.created), "on")
            except BaseException:
                self._undo_setup()
                raise
            self.started = True
            self.log.info("linux.damon.started", kdamond=str(self.kdamond), ops=s.ops, pids=list(self.pids))

    def _undo_setup(self) -> None:
        if self.index is None:
            return
        try:
            restore_kdamond(str(self.kdamond), {"state": "off", "created": self.created})
        except OSError as exc:
            self.log.warning("linux.damon.cleanup_failed", error=str(exc))
        self.index = None

    def stop(self, writer: Any) -> None:
        """Turn the kdamond off through the journal's restore (closes its undo record)."""
        with self._lock:
            if not self.started:
                return
            report = writer.restore()
            if not report.ok:
                self.log.error("linux.damon.stop_failed", summary=report.summary())
            self.started = False
            self.log.info("linux.damon.stopped", kdamond=str(self.kdamond))
            self.index = None

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self) -> DamonSnapshot:
        with self._lock:
            if not self.started:
                raise Unsupported("damon", "monitor not started")
            state = self.kdamond / "state"
            try:
                _write(state, "update_schemes_tried_regions")
            except OSError as exc:
                from sol.kernel.errors import errno_name, os_problem

                raise SensorError(
                    state, os_problem(exc, "cannot request tried regions"), errno_name=errno_name(exc)
                ) from exc
            now = self.clock()
            regions = self._read_regions(self.scheme(0) / "tried_regions")
        s = self.settings
        return DamonSnapshot(
            t=now,
            t_start=now - s.aggr_us / 1e6,
            t_end=now,
            max_nr_accesses=s.max_nr_accesses,
            regions=regions,
        )

    def snapshot_of(self, index: int) -> DamonSnapshot:
        """The regions of target ``index`` (its place in ``pids``).

        ``tried_regions`` lists every target's regions in one sequence, target by target, each
        target's sorted by address, with no target number: a new target starts where the
        address goes back. That tells them apart when each process's first region lies below
        the previous one's last (the usual layout: heap low, mmap and stack high); when it does
        not (fewer runs than targets), the read is refused rather than guessed.
        """
        n = max(1, len(self.pids))
        if not 0 <= index < n:
            raise ValueError(f"no DAMON target {index}: {n} monitored")
        if n == 1:
            return self.snapshot()
        cached = self._split
        now = self.clock()
        if cached is None or now - cached[0] >= self.settings.aggr_us / 1e6:
            whole = self.snapshot()
            runs: list[list[DamonRegion]] = []
            for r in whole.regions:
                if not runs or r.start < runs[-1][-1].end:
                    runs.append([])
                runs[-1].append(r)
            if len(runs) != n:
                raise SensorError(
                    self.context / "schemes" / "0" / "tried_regions",
                    f"{len(runs)} address run(s) for {n} targets: cannot tell the targets' regions apart",
                )
            cached = self._split = (
                now,
                tuple(
                    DamonSnapshot(
                        t=whole.t,
                        t_start=whole.t_start,
                        t_end=whole.t_end,
                        max_nr_accesses=whole.max_nr_accesses,
                        regions=tuple(run),
                    )
                    for run in runs
                ),
            )
        return cached[1][index]

    def _read_regions(self, base: Path) -> tuple[DamonRegion, ...]:
        try:
            names = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        except OSError as exc:
            raise SensorError(base, f"cannot list: {exc.strerror or exc}") from exc
        out = []
        limit = self.settings.max_nr_accesses
        for d in names:
            start = parse_int(read_file(d / "start"), d / "start", lo=0)
            end = parse_int(read_file(d / "end"), d / "end", lo=0)
            nr = parse_int(read_file(d / "nr_accesses"), d / "nr_accesses", lo=0)
            age = parse_int(read_file(d / "age"), d / "age", lo=0)
            if end <= start:
                raise SensorError(d, f"region end {end:#x} <= start {start:#x}")
            if nr > limit:
                raise SensorError(d / "nr_accesses", f"{nr} > max_nr_accesses {limit} (aggr/sample)")
            out.append(DamonRegion(start, end, nr, age))
        return tuple(out)


def _fake_write(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def make_fake_admin(
    admin: Path,
    *,
    nr_kdamonds: int = 0,
    state: str = "off",
    slots: int = 3,
    regions: list[tuple[int, int, int, int]] | None = None,
    ops: str = "vaddr paddr",
    targets: int = 1,
) -> Path:
    """A DAMON sysfs ``admin`` tree as the kernel shows it after the writes sol makes.

    The kernel creates ``kdamonds/0/...`` when ``nr_kdamonds`` is written; a fake cannot, so
    the directories are there from the start and ``nr_kdamonds`` says how many "exist".
    ``regions`` are ``(start, end, nr_accesses, age)`` in slot 0's ``tried_regions`` (several
    targets' one after the other, as the kernel lists them); ``targets`` target directories.
    """
    k = admin / "kdamonds"
    _fake_write(k, {"nr_kdamonds": f"{nr_kdamonds}\n"})
    kd = _fake_write(k / "0", {"state": f"{state}\n", "pid": "-1\n", "refresh_ms": "0\n"})
    _fake_write(kd / "contexts", {"nr_contexts": "0\n"})
    ctx = _fake_write(kd / "contexts" / "0", {"avail_operations": f"{ops}\n", "operations": "vaddr\n"})
    _fake_write(
        ctx / "monitoring_attrs" / "intervals",
        {"sample_us": "5000\n", "aggr_us": "100000\n", "update_us": "1000000\n"},
    )
    _fake_write(ctx / "monitoring_attrs" / "nr_regions", {"min": "10\n", "max": "1000\n"})
    _fake_write(ctx / "targets", {"nr_targets": "0\n"})
    for i in range(targets):
        _fake_write(ctx / "targets" / str(i), {"pid_target": "0\n"})
    _fake_write(ctx / "schemes", {"nr_schemes": "0\n"})
    for slot in range(slots):
        s = _fake_write(
            ctx / "schemes" / str(slot), {"action": "stat\n", "target_nid": "0\n", "apply_interval_us": "0\n"}
        )
        for name in ("sz", "nr_accesses", "age"):
            _fake_write(s / "access_pattern" / name, {"min": "0\n", "max": "18446744073709551615\n"})
        _fake_write(s / "quotas", {"bytes": "0\n", "ms": "0\n", "reset_interval_ms": "0\n"})
        _fake_write(s / "tried_regions", {"total_bytes": "0\n"})
    for i, (start, end, nr, age) in enumerate(regions or []):
        _fake_write(
            ctx / "schemes" / "0" / "tried_regions" / str(i),
            {
                "start": f"{start}\n",
                "end": f"{end}\n",
                "nr_accesses": f"{nr}\n",
                "age": f"{age}\n",
                "sz_filter_passed": "0\n",
            },
        )
    return admin
