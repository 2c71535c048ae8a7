"""Loaders of real public traces in their published formats, and format detection.

Every malformed input is a ``TraceError`` whose message reads ``FILE:LINE:COLUMN: what was
wrong`` (1-based, the column of the offending field's first character), never a traceback.
A path that is not a regular file (a FIFO, a symlink to ``/dev/zero``), a file over
``TRACE_MAX_BYTES`` and a line over ``TRACE_MAX_LINE`` are refused before they are read.

==========================  ==========================================================  ============
format                      layout                                                      facility
==========================  ==========================================================  ============
azure-vm-cpu-wide           ``step,t_seconds,vm_<id>,...`` (one column per VM, %)       cpu
azure-vm-cpu-readings       ``timestamp,vmid,min,max,avg`` no header (AzurePublicDataset  cpu
                            V1/V2 ``vm_cpu_readings-file-*.csv[.gz]``)
azure-llm-2023              ``TIMESTAMP,ContextTokens,GeneratedTokens``                 gpu
azure-functions-2019        ``[HashOwner,HashApp,]HashFunction,Trigger,1..N`` per-minute faas
                            counts (+ sibling duration/memory percentile files)
azure-functions-2021        ``app,func,end_timestamp,duration``                         faas
damon-csv                   ``snapshot,t_start_ms,t_end_ms,start_addr,end_addr,...``    memory
damo-raw                    ``damo report raw`` text (``monitoring_start:`` blocks)     memory
==========================  ==========================================================  ============
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sol.files import UntrustedFileError, open_regular
from sol.sim._common import STREAM_FAAS_INVOCATIONS, STREAM_FAAS_SETUP, FloatArray, IntArray, block_rng
from sol.sim.faas import InvocationList
from sol.sim.gpu import LlmRequests
from sol.sim.memory import MemoryWorkload
from sol.sim.synthetic import faas_object_sizes

#: The most a trace may weigh, on disk and again once decompressed (bytes). Generous on
#: purpose: well above any one file of the public datasets (``sol data list``), compressed or
#: not, and replaying a trace holds its rows in memory, so a real one runs out of memory long
#: before this. The cap is not there to judge traces but to turn a path that is none (a disk
#: image, a device behind a bind mount, a gzip bomb) into an error, not minutes of reading.
TRACE_MAX_BYTES = 16 << 30
#: The longest line (bytes). The widest published rows, Azure Functions 2019's 1,440
#: per-minute counts with their hashes, are a few kilobytes; a file with no line ends (a
#: binary) would otherwise be read whole as its first "line".
TRACE_MAX_LINE = 1 << 20

FORMATS = (
    "azure-vm-cpu-wide",
    "azure-vm-cpu-readings",
    "azure-llm-2023",
    "azure-functions-2019",
    "azure-functions-2021",
    "damon-csv",
    "damo-raw",
)
FORMAT_FACILITY = {
    "azure-vm-cpu-wide": "cpu",
    "azure-vm-cpu-readings": "cpu",
    "azure-llm-2023": "gpu",
    "azure-functions-2019": "faas",
    "azure-functions-2021": "faas",
    "damon-csv": "memory",
    "damo-raw": "memory",
}


class TraceError(ValueError):
    """A trace file is malformed: ``FILE:LINE:COLUMN: what was wrong``."""

    def __init__(self, path: Path | str, line: int, column: int, what: str) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.what = what
        super().__init__(f"{self.path}:{line}:{column}: {what}")


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------


def _open_text(path: Path) -> Iterator[tuple[int, str, bool]]:
    """Yield ``(line number, line without EOL, had EOL)``; gzip by magic number.

    Only a regular file of at most ``TRACE_MAX_BYTES`` is opened (without blocking: a FIFO is
    refused, not waited on), at most that many bytes are read out of it once decompressed,
    and no line longer than ``TRACE_MAX_LINE``.
    """
    try:
        fd = open_regular(Path(path), max_bytes=TRACE_MAX_BYTES, what="trace")
    except UntrustedFileError as e:
        raise TraceError(path, 0, 0, str(e)) from None
    except OSError as e:
        raise TraceError(path, 0, 0, f"cannot read: {e.strerror or e}") from None
    n = 0
    with os.fdopen(fd, "rb") as fh:
        try:
            magic = fh.read(2)
            fh.seek(0)
            stream = gzip.GzipFile(fileobj=fh, mode="rb") if magic == b"\x1f\x8b" else fh
            total = 0
            while raw := stream.readline(TRACE_MAX_LINE + 1):
                n += 1
                total += len(raw)
                had_eol = raw.endswith(b"\n")
                if len(raw) > TRACE_MAX_LINE:
                    raise TraceError(path, n, 1, f"line longer than {TRACE_MAX_LINE} bytes (not a trace?)")
                if total > TRACE_MAX_BYTES:
                    raise TraceError(
                        path, n, 1, f"more than {TRACE_MAX_BYTES} bytes decompressed (not a trace?)"
                    )
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TraceError(
                        path, n, e.start + 1, "not UTF-8 text (a binary or corrupt file?)"
                    ) from None
                yield n, text.rstrip("\r\n"), had_eol
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
            raise TraceError(
                path, n + 1, 1, f"compressed stream ends early or is corrupt ({e}); file truncated?"
            ) from None


def _columns(line: str) -> list[int]:
    """1-based start column of each comma-separated field."""
    cols = [1]
    for i, ch in enumerate(line):
        if ch == ",":
            cols.append(i + 2)
    return cols


@dataclass
class _Csv:
    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[str]
    first_line: int


def _read_csv(
    path: Path, expect: list[str] | None = None, *, header: bool = True, min_fields: int = 1
) -> _Csv:
    it = _open_text(path)
    head: list[str] = []
    first_line = 1
    rows: list[list[str]] = []
    lines: list[str] = []
    width = -1
    last_eol = True
    got_any = False
    for n, line, eol in it:
        got_any = True
        if header and not head:
            if not line.strip():
                raise TraceError(path, n, 1, "empty header line")
            head = line.split(",")
            if expect is not None:
                cols = _columns(line)
                for i, name in enumerate(expect):
                    if i >= len(head) or head[i].strip() != name:
                        found = head[i] if i < len(head) else "end of line"
                        col = cols[i] if i < len(cols) else len(line) + 1
                        raise TraceError(
                            path,
                            n,
                            col,
                            f"bad header: expected column {i + 1} to be {name!r}, found {found!r}",
                        )
            width = len(head)
            first_line = n + 1
            continue
        if not line.strip():
            if eol:
                continue
            break
        parts = line.split(",")
        if width < 0:
            width = len(parts)
            first_line = n
            if width < min_fields:
                raise TraceError(path, n, 1, f"expected at least {min_fields} fields, found {width}")
        if len(parts) != width:
            cols = _columns(line)
            col = cols[width] if len(parts) > width else len(line) + 1
            hint = " (file truncated?)" if not eol and len(parts) < width else ""
            raise TraceError(path, n, col, f"bad row: expected {width} fields, found {len(parts)}{hint}")
        rows.append(parts)
        lines.append(line)
        last_eol = eol
    del last_eol
    if not got_any:
        raise TraceError(
            path, 1, 1, "empty file" + (f"; expected a header starting {','.join(expect)}" if expect else "")
        )
    if not rows:
        raise TraceError(path, first_line, 1, "no data rows")
    return _Csv(path, head, rows, lines, first_line)


def _numbers(csv: _Csv, cols: slice | list[int], what: str, *, integer: bool = False) -> FloatArray:
    """Parse the given columns of every row as numbers; a bad cell names its line and column."""
    idx = list(range(len(csv.rows[0])))[cols] if isinstance(cols, slice) else cols
    sub = [[r[i] for i in idx] for r in csv.rows]
    try:
        arr = np.array(sub, dtype=np.float64)
        ok = bool(np.isfinite(arr).all())
    except ValueError:
        ok = False
        arr = np.empty(0)
    if ok and integer and not bool((arr == np.floor(arr)).all()):
        ok = False
    if ok:
        return arr
    for r, row in enumerate(sub):
        for j, cell in enumerate(row):
            try:
                v = float(cell)
                good = math.isfinite(v) and (not integer or v == math.floor(v))
            except ValueError:
                good = False
            if not good:
                line = csv.lines[r]
                name = csv.header[idx[j]] if csv.header else f"field {idx[j] + 1}"
                kind = "a whole number" if integer else "a finite number"
                raise TraceError(
                    csv.path,
                    csv.first_line + r,
                    _columns(line)[idx[j]],
                    f"bad value in {name!r}: {cell!r} is not {kind}",
                )
    return arr  # pragma: no cover - unreachable


def _check_range(csv: _Csv, arr: FloatArray, col0: int, lo: float, hi: float, what: str) -> None:
    bad = np.argwhere((arr < lo) | (arr > hi))
    if bad.size:
        r, j = (int(x) for x in bad[0])
        line = csv.lines[r]
        raise TraceError(
            csv.path,
            csv.first_line + r,
            _columns(line)[col0 + j],
            f"bad value: {what} {arr[r, j]:g} outside [{lo:g}, {hi:g}]",
        )


def _check_sorted(csv: _Csv, t: FloatArray, col: int, what: str) -> None:
    d = np.diff(t)
    bad = np.nonzero(d < 0)[0]
    if bad.size:
        r = int(bad[0]) + 1
        raise TraceError(
            csv.path,
            csv.first_line + r,
            _columns(csv.lines[r])[col],
            f"bad row: {what} goes back in time (rows must be sorted)",
        )


# ---------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """The trace format of ``path`` from its first line; unknown -> ``TraceError``."""
    first = ""
    n = 0
    for n, line, _ in _open_text(path):  # noqa: B007 (n names the line of a later error)
        if line.strip():
            first = line.strip()
            break
    if not first:
        raise TraceError(path, max(n, 1), 1, "empty file; nothing to detect a trace format from")
    fields = first.split(",")
    head = [f.strip() for f in fields]
    if head[:2] == ["step", "t_seconds"] and len(head) > 2:
        return "azure-vm-cpu-wide"
    if head[:3] == ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]:
        return "azure-llm-2023"
    if "HashFunction" in head and "Trigger" in head and "1" in head:
        return "azure-functions-2019"
    if head[:4] == ["app", "func", "end_timestamp", "duration"]:
        return "azure-functions-2021"
    if head[:3] == ["snapshot", "t_start_ms", "t_end_ms"]:
        return "damon-csv"
    if first.startswith(("base_time_absolute:", "monitoring_start:", "kdamond")):
        return "damo-raw"
    if len(head) == 5:
        try:
            int(float(head[0]))
            float(head[2]), float(head[3]), float(head[4])
            return "azure-vm-cpu-readings"
        except ValueError:
            pass
    if "percentile_Average_0" in head or "AverageAllocatedMb" in head:
        raise TraceError(
            path,
            n,
            1,
            "this is a companion file of an Azure Functions 2019 trace (durations or "
            "memory); pass the per-minute invocation counts file, the companions are found beside it",
        )
    raise TraceError(
        path, n, 1, f"unknown trace format (header {first[:60]!r}); known formats: {', '.join(FORMATS)}"
    )


# ---------------------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmCpuTable:
    """Per-VM CPU % in windows, as a VM trace gives it (no core counts)."""

    avg_pct: FloatArray
    max_pct: FloatArray | None
    window_s: float
    names: tuple[str, ...]
    path: str


def _max_sibling(path: Path) -> Path | None:
    if "_avg_" in path.name:
        other = path.with_name(path.name.replace("_avg_", "_max_"))
        if other.exists():
            return other
    return None


def load_vm_cpu_wide(path: Path, max_path: Path | None = None, *, use_sibling: bool = True) -> VmCpuTable:
    csv = _read_csv(path, ["step", "t_seconds"])
    if len(csv.header) < 3:
        raise TraceError(
            path, 1, len(",".join(csv.header)) + 1, "bad header: no VM columns after step,t_seconds"
        )
    t = _numbers(csv, [1], "t_seconds")[:, 0]
    window = float(t[1] - t[0]) if t.size > 1 else 300.0
    if window <= 0:
        raise TraceError(
            path, csv.first_line + 1, _columns(csv.lines[1])[1], "bad value: t_seconds does not increase"
        )
    steps = np.diff(t)
    bad = np.nonzero(np.abs(steps - window) > 1e-6)[0]
    if bad.size:
        r = int(bad[0]) + 1
        raise TraceError(
            path,
            csv.first_line + r,
            _columns(csv.lines[r])[1],
            f"bad value: t_seconds jumps by {steps[bad[0]]:g}, expected a constant {window:g}",
        )
    avg = _numbers(csv, slice(2, None), "cpu %")
    _check_range(csv, avg, 2, 0.0, 100.0, "CPU %")
    names = tuple(h.strip() for h in csv.header[2:])
    mx: FloatArray | None = None
    if max_path is None and use_sibling:
        max_path = _max_sibling(path)
    if max_path is not None:
        other = _read_csv(max_path, ["step", "t_seconds"])
        if [h.strip() for h in other.header] != [h.strip() for h in csv.header]:
            raise TraceError(max_path, 1, 1, f"bad header: VM columns differ from {path.name}")
        if len(other.rows) != len(csv.rows):
            raise TraceError(
                max_path,
                other.first_line + min(len(other.rows), len(csv.rows)),
                1,
                f"bad row count: {len(other.rows)} rows, {path.name} has {len(csv.rows)}",
            )
        mx = _numbers(other, slice(2, None), "cpu %")
        _check_range(other, mx, 2, 0.0, 100.0, "CPU %")
    return VmCpuTable(avg_pct=avg, max_pct=mx, window_s=window, names=names, path=str(path))


def load_vm_cpu_readings(path: Path, *, max_vms: int | None = None) -> VmCpuTable:
    """``timestamp,vmid,min,max,avg`` rows (AzurePublicDataset ``vm_cpu_readings``): pivoted
    into windows x VMs; a VM without a reading in a window counts as idle (0 %) there."""
    csv = _read_csv(path, None, header=False, min_fields=5)
    if len(csv.rows[0]) != 5:
        raise TraceError(
            path,
            csv.first_line,
            1,
            f"bad row: expected 5 fields (timestamp,vmid,min,max,avg), found {len(csv.rows[0])}",
        )
    ts = _numbers(csv, [0], "timestamp")[:, 0]
    vals = _numbers(csv, [2, 3, 4], "cpu %")
    _check_range(csv, vals, 2, 0.0, 100.0, "CPU %")
    _check_sorted(csv, ts, 0, "timestamp")
    uniq = np.unique(ts)
    window = float(np.min(np.diff(uniq))) if uniq.size > 1 else 300.0
    w_idx = np.rint((ts - uniq[0]) / window).astype(np.int64)
    order: dict[str, int] = {}
    vm_idx = np.empty(len(csv.rows), dtype=np.int64)
    for r, row in enumerate(csv.rows):
        vm = row[1].strip()
        k = order.get(vm)
        if k is None:
            k = order[vm] = len(order)
        vm_idx[r] = k
    keep = np.ones(vm_idx.size, bool) if max_vms is None else vm_idx < max_vms
    n_vm = len(order) if max_vms is None else min(max_vms, len(order))
    n_w = int(w_idx.max()) + 1
    avg = np.zeros((n_w, n_vm))
    mx = np.zeros((n_w, n_vm))
    avg[w_idx[keep], vm_idx[keep]] = vals[keep, 2]
    mx[w_idx[keep], vm_idx[keep]] = np.maximum(vals[keep, 1], vals[keep, 2])
    names = tuple(list(order)[:n_vm])
    return VmCpuTable(avg_pct=avg, max_pct=mx, window_s=window, names=names, path=str(path))


# ---------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------


def load_llm_2023(path: Path) -> LlmRequests:
    """Azure LLM inference trace 2023: arrivals (s from the first) and token counts."""
    csv = _read_csv(path, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    stamps = [r[0].strip() for r in csv.rows]
    try:
        t_ns = np.array(stamps, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:
        for r, s in enumerate(stamps):
            try:
                np.datetime64(s, "ns")
            except ValueError:
                raise TraceError(
                    path,
                    csv.first_line + r,
                    1,
                    f"bad value in 'TIMESTAMP': {s!r} is not 'YYYY-MM-DD HH:MM:SS.fffffff'",
                ) from None
        raise
    tok = _numbers(csv, [1, 2], "tokens", integer=True)
    _check_range(csv, tok, 1, 0.0, 1e7, "token count")
    t = (t_ns - t_ns[0]).astype(np.float64) / 1e9
    _check_sorted(csv, t, 0, "TIMESTAMP")
    n = t.size
    # the trace covers [first, last + one mean gap): so a replay's rate is n / span exactly
    span = float(t[-1]) * n / (n - 1) if n > 1 and t[-1] > 0 else max(float(t[-1]), 1.0)
    return LlmRequests(
        arrival_s=t,
        prompt_tokens=tok[:, 0].astype(np.int64),
        output_tokens=tok[:, 1].astype(np.int64),
        span_s=span,
        source=str(path),
    )


# ---------------------------------------------------------------------------------------
# FaaS
# ---------------------------------------------------------------------------------------

_PCT_POINTS = np.array([0.0, 0.01, 0.25, 0.50, 0.75, 0.99, 1.0])
_DUR_COLS = [f"percentile_Average_{p}" for p in (0, 1, 25, 50, 75, 99, 100)]


@dataclass
class MinuteCounts:
    """Azure Functions 2019 per-minute counts, replayed as invocations: the ``c`` invocations
    of a minute start at seeded uniform times inside it; durations are drawn from the
    function's duration percentiles (piecewise-linear inverse CDF), 1 s where unknown."""

    counts: IntArray
    functions: tuple[str, ...]
    function_object: IntArray
    objects: tuple[str, ...]
    object_bytes: IntArray
    duration_pct_ms: FloatArray
    seed: int
    source: str
    span_s: float = field(init=False)
    _cache: dict[int, tuple[FloatArray, IntArray, FloatArray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.span_s = 60.0 * self.counts.shape[1]

    def _minutes(self, m0: int, m1: int, cycle: int) -> tuple[FloatArray, IntArray, FloatArray]:
        key = m0 * 1_000_003 + cycle
        got = self._cache.get(key)
        if got is not None:
            return got
        rng = block_rng(self.seed, STREAM_FAAS_INVOCATIONS, key)
        c = self.counts[:, m0:m1]
        total = int(c.sum())
        f_idx, m_idx = np.nonzero(c)
        reps = c[f_idx, m_idx]
        f_all = np.repeat(f_idx, reps).astype(np.int64)
        minute = np.repeat(m_idx + m0, reps).astype(np.float64)
        t = 60.0 * minute + rng.uniform(0.0, 60.0, total) + cycle * self.span_s
        order = np.argsort(t, kind="stable")
        t, f_all = t[order], f_all[order]
        u = rng.uniform(0.0, 1.0, total)
        pct = self.duration_pct_ms[f_all]
        k = np.clip(np.searchsorted(_PCT_POINTS, u, side="right") - 1, 0, _PCT_POINTS.size - 2)
        lo, hi = _PCT_POINTS[k], _PCT_POINTS[k + 1]
        frac = (u - lo) / (hi - lo)
        rows = np.arange(total)
        d = (pct[rows, k] + frac * (pct[rows, k + 1] - pct[rows, k])) / 1000.0
        got = (t, f_all, np.maximum(d, 0.0))
        if len(self._cache) > 8:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = got
        return got

    def between(self, t0: float, t1: float) -> tuple[FloatArray, IntArray, FloatArray]:
        ts: list[FloatArray] = []
        fs: list[IntArray] = []
        ds: list[FloatArray] = []
        n_min = self.counts.shape[1]
        block = 60
        for c in range(math.floor(t0 / self.span_s), math.floor(t1 / self.span_s) + 1):
            for m0 in range(0, n_min, block):
                b0 = c * self.span_s + 60.0 * m0
                b1 = c * self.span_s + 60.0 * min(n_min, m0 + block)
                if b1 <= t0 or b0 >= t1:
                    continue
                t, f, d = self._minutes(m0, min(n_min, m0 + block), c)
                sel = (t >= t0) & (t < t1)
                ts.append(t[sel])
                fs.append(f[sel])
                ds.append(d[sel])
        if not ts:
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        return np.concatenate(ts), np.concatenate(fs), np.concatenate(ds)


def _functions_siblings(path: Path) -> tuple[Path | None, Path | None]:
    name = path.name
    pairs = [
        ("_invocation", "_duration", "_memory"),
        ("invocations_per_function_md", "function_durations_percentiles", "app_memory_percentiles"),
    ]
    for inv, dur, mem in pairs:
        if inv in name:
            d = path.with_name(name.replace(inv, dur))
            m = path.with_name(name.replace(inv, mem))
            return (d if d.exists() else None), (m if m.exists() else None)
    return None, None


def load_functions_2019(
    path: Path,
    *,
    seed: int = 0,
    max_functions: int | None = None,
    durations: Path | None = None,
    memory: Path | None = None,
) -> MinuteCounts:
    csv = _read_csv(path, None)
    head = [h.strip() for h in csv.header]
    if "HashFunction" not in head or "Trigger" not in head:
        raise TraceError(
            path, 1, 1, "bad header: expected HashFunction and Trigger columns before the minutes"
        )
    first_min = head.index("Trigger") + 1
    cols = _columns(",".join(csv.header))
    for j, h in enumerate(head[first_min:], start=1):
        if h != str(j):
            raise TraceError(
                path, 1, cols[first_min + j - 1], f"bad header: expected minute column {j}, found {h!r}"
            )
    if first_min >= len(head):
        raise TraceError(path, 1, len(",".join(csv.header)) + 1, "bad header: no minute columns")
    counts = _numbers(csv, slice(first_min, None), "invocations", integer=True)
    _check_range(csv, counts, first_min, 0.0, 1e9, "invocation count")
    n = counts.shape[0] if max_functions is None else min(max_functions, counts.shape[0])
    counts = counts[:n]
    fi = head.index("HashFunction")
    ai = head.index("HashApp") if "HashApp" in head else None
    fkeys = [csv.rows[r][fi].strip() for r in range(n)]
    akeys = [csv.rows[r][ai].strip() for r in range(n)] if ai is not None else fkeys
    dur_path, mem_path = _functions_siblings(path)
    durations = durations or dur_path
    memory = memory or mem_path
    pct = np.tile(np.array([1000.0] * 7), (n, 1))
    if durations is not None:
        d = _read_csv(durations, None)
        dh = [h.strip() for h in d.header]
        missing = [c for c in ["HashFunction", *_DUR_COLS] if c not in dh]
        if missing:
            raise TraceError(durations, 1, 1, f"bad header: missing column(s) {', '.join(missing)}")
        vals = _numbers(d, [dh.index(c) for c in _DUR_COLS], "duration ms")
        _check_range(d, vals, dh.index(_DUR_COLS[0]), 0.0, 1e9, "duration ms")
        dfi = dh.index("HashFunction")
        dai = dh.index("HashApp") if "HashApp" in dh else None
        where = {
            ((row[dai].strip() if dai is not None else ""), row[dfi].strip()): r
            for r, row in enumerate(d.rows)
        }
        for k in range(n):
            r = where.get(((akeys[k] if dai is not None else ""), fkeys[k]))
            if r is not None:
                pct[k] = np.maximum.accumulate(vals[r])
    rng = block_rng(seed, STREAM_FAAS_SETUP, 1)
    obj_names = list(dict.fromkeys(akeys))
    obj_index = {a: i for i, a in enumerate(obj_names)}
    size = faas_object_sizes(rng, len(obj_names))
    if memory is not None:
        m = _read_csv(memory, None)
        mh = [h.strip() for h in m.header]
        if "AverageAllocatedMb" not in mh:
            raise TraceError(memory, 1, 1, "bad header: missing column AverageAllocatedMb")
        key_col = (
            mh.index("HashApp")
            if "HashApp" in mh
            else mh.index("HashFunction")
            if "HashFunction" in mh
            else -1
        )
        if key_col < 0:
            raise TraceError(memory, 1, 1, "bad header: needs a HashApp or HashFunction column")
        mb = _numbers(m, [mh.index("AverageAllocatedMb")], "MB")[:, 0]
        _check_range(m, mb[:, None], mh.index("AverageAllocatedMb"), 0.0, 1e7, "AverageAllocatedMb")
        for r, row in enumerate(m.rows):
            i = obj_index.get(row[key_col].strip())
            if i is not None and mb[r] > 0:
                size[i] = int(mb[r] * 1e6)
    return MinuteCounts(
        counts=counts.astype(np.int64),
        functions=tuple(fkeys),
        function_object=np.array([obj_index[a] for a in akeys], dtype=np.int64),
        objects=tuple(obj_names),
        object_bytes=size,
        duration_pct_ms=pct,
        seed=seed,
        source=str(path),
    )


def load_functions_2021(path: Path, *, seed: int = 0) -> InvocationList:
    """Azure Functions 2021 per-invocation records; the cache object of a function is its app,
    whose size (not in the trace) is drawn from ATC'20's app memory distribution."""
    csv = _read_csv(path, ["app", "func", "end_timestamp", "duration"])
    vals = _numbers(csv, [2, 3], "seconds")
    _check_range(csv, vals, 2, 0.0, 1e9, "seconds")
    end, dur = vals[:, 0], vals[:, 1]
    start = np.maximum(end - dur, 0.0)
    apps = [r[0].strip() for r in csv.rows]
    funcs = [r[0].strip() + "/" + r[1].strip() for r in csv.rows]
    fnames = list(dict.fromkeys(funcs))
    fidx = {f: i for i, f in enumerate(fnames)}
    onames = list(dict.fromkeys(apps))
    oidx = {a: i for i, a in enumerate(onames)}
    f_obj = np.zeros(len(fnames), dtype=np.int64)
    for f, a in zip(funcs, apps, strict=True):
        f_obj[fidx[f]] = oidx[a]
    order = np.argsort(start, kind="stable")
    fn = np.array([fidx[f] for f in funcs], dtype=np.int64)[order]
    size = faas_object_sizes(block_rng(seed, STREAM_FAAS_SETUP, 2), len(onames))
    span = float(max(end.max(), start.max() + 1e-3))
    return InvocationList(
        start_s=start[order],
        function=fn,
        duration_s=dur[order],
        functions=tuple(fnames),
        function_object=f_obj,
        objects=tuple(onames),
        object_bytes=size,
        span_s=span,
        source=str(path),
    )


# ---------------------------------------------------------------------------------------
# memory (DAMON)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DamonSnapshots:
    t_start: FloatArray  # seconds
    t_end: FloatArray
    regions: list[tuple[IntArray, IntArray, IntArray]]  # per snapshot: start, end, nr_accesses
    path: str


def damon_workload(snaps: DamonSnapshots, *, max_nr_accesses: int | None = None) -> MemoryWorkload:
    """Snapshots -> phases over the elementary address segments of all snapshots' regions."""
    bounds = np.unique(np.concatenate([np.concatenate([s, e]) for s, e, _ in snaps.regions]))
    covered = np.zeros(bounds.size - 1, bool)
    max_nr = max(int(nr.max()) if nr.size else 0 for _, _, nr in snaps.regions)
    n_max = max_nr_accesses or max(max_nr, 1)
    freq = np.zeros((len(snaps.regions), bounds.size - 1))
    for i, (s, e, nr) in enumerate(snaps.regions):
        a = np.searchsorted(bounds, s)
        b = np.searchsorted(bounds, e)
        for lo, hi, v in zip(a.tolist(), b.tolist(), nr.tolist(), strict=True):
            covered[lo:hi] = True
            freq[i, lo:hi] = min(1.0, v / n_max)
    seg = np.nonzero(covered)[0]
    start = bounds[:-1][seg].astype(np.int64)
    size = (bounds[1:][seg] - bounds[:-1][seg]).astype(np.int64)
    t0 = float(snaps.t_start[0])
    phase_t = snaps.t_start - t0
    agg = float(np.median(snaps.t_end - snaps.t_start))
    return MemoryWorkload(
        start=start,
        size=size,
        phase_t=phase_t,
        freq=freq[:, seg],
        span_s=float(snaps.t_end[-1] - t0),
        aggregation_s=agg,
        max_nr_accesses=n_max,
        source=snaps.path,
    )


def load_damon_csv(path: Path) -> DamonSnapshots:
    expect = [
        "snapshot",
        "t_start_ms",
        "t_end_ms",
        "start_addr",
        "end_addr",
        "size_bytes",
        "nr_accesses",
        "age",
    ]
    csv = _read_csv(path, expect)
    nums = _numbers(csv, [0, 1, 2, 5, 6], "number")
    addr = np.empty((len(csv.rows), 2), dtype=np.int64)
    for r, row in enumerate(csv.rows):
        for j in (3, 4):
            try:
                addr[r, j - 3] = int(row[j].strip(), 16)
            except ValueError:
                raise TraceError(
                    path,
                    csv.first_line + r,
                    _columns(csv.lines[r])[j],
                    f"bad value in {expect[j]!r}: {row[j]!r} is not a hex address",
                ) from None
    bad = np.nonzero(addr[:, 1] <= addr[:, 0])[0]
    if bad.size:
        r = int(bad[0])
        raise TraceError(
            path, csv.first_line + r, _columns(csv.lines[r])[4], "bad row: end_addr <= start_addr"
        )
    _check_range(csv, nums[:, 4:5], 6, 0, 1e6, "nr_accesses")
    snap = nums[:, 0].astype(np.int64)
    _check_sorted(csv, snap.astype(np.float64), 0, "snapshot")
    cuts = np.nonzero(np.diff(snap))[0] + 1
    groups = np.split(np.arange(snap.size), cuts)
    t_start = np.array([nums[g[0], 1] for g in groups]) / 1000.0
    t_end = np.array([nums[g[0], 2] for g in groups]) / 1000.0
    regions = [(addr[g, 0], addr[g, 1], nums[g, 4].astype(np.int64)) for g in groups]
    _check_snapshot_times(path, t_start, t_end, [csv.first_line + int(g[0]) for g in groups])
    return DamonSnapshots(t_start=t_start, t_end=t_end, regions=regions, path=str(path))


def _check_snapshot_times(path: Path, t_start: FloatArray, t_end: FloatArray, lines: list[int]) -> None:
    for i in range(t_start.size):
        if t_end[i] <= t_start[i] or (i and t_start[i] <= t_start[i - 1]):
            raise TraceError(
                path, lines[i], 1, "bad snapshot times: intervals must be non-empty and increasing"
            )


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_REGION = re.compile(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*\(\s*[\d.]+\s*[KMGTP]?i?B\)\s+(\d+)\s+(-?\d+)\s*$")


def _duration(path: Path, n: int, col: int, text: str) -> float:
    toks = text.split()
    if not toks or len(toks) % 2:
        raise TraceError(path, n, col, f"bad time {text.strip()!r}: expected '<number> <unit>' pairs")
    total = 0.0
    for v, u in zip(toks[::2], toks[1::2], strict=True):
        try:
            total += float(v) * _UNITS[u]
        except (ValueError, KeyError):
            raise TraceError(
                path, n, col, f"bad time {text.strip()!r}: units are ns, us, ms, s, m, h, d"
            ) from None
    return total


def load_damo_raw(path: Path) -> DamonSnapshots:
    """``damo report raw`` text: blocks of ``monitoring_start:``/``monitoring_end:`` lines and
    ``START-END (SIZE) NR_ACCESSES AGE`` region lines."""
    t_start: list[float] = []
    t_end: list[float] = []
    lines_at: list[int] = []
    regions: list[tuple[IntArray, IntArray, IntArray]] = []
    cur: list[tuple[int, int, int]] = []
    expect_regions = -1
    n = 0

    def close(n_line: int) -> None:
        if t_start and len(regions) < len(t_start):
            if expect_regions >= 0 and len(cur) != expect_regions:
                raise TraceError(
                    path,
                    n_line,
                    1,
                    f"snapshot ends after {len(cur)} of its nr_regions: "
                    f"{expect_regions} regions (file truncated?)",
                )
            arr = np.array(cur, dtype=np.int64).reshape(-1, 3)
            regions.append((arr[:, 0], arr[:, 1], arr[:, 2]))

    for n, line, _eol in _open_text(path):
        s = line.strip()
        if (
            not s
            or s.startswith("#")
            or s.startswith(
                (
                    "base_time_absolute:",
                    "data source",
                    "target_id:",
                    "monitoring_duration:",
                    "kdamond",
                    "context",
                    "scheme",
                    "target",
                )
            )
        ):
            continue
        if s.startswith("monitoring_start:"):
            close(n)
            cur = []
            expect_regions = -1
            t_start.append(_duration(path, n, line.index(":") + 2, s.split(":", 1)[1]))
            lines_at.append(n)
            continue
        if s.startswith("monitoring_end:"):
            if len(t_end) != len(t_start) - 1:
                raise TraceError(path, n, 1, "monitoring_end without a monitoring_start")
            t_end.append(_duration(path, n, line.index(":") + 2, s.split(":", 1)[1]))
            continue
        if s.startswith("nr_regions:"):
            try:
                expect_regions = int(s.split(":", 1)[1])
            except ValueError:
                raise TraceError(path, n, line.index(":") + 2, "bad nr_regions: not a whole number") from None
            continue
        m = _REGION.match(line)
        if m is None or not t_start:
            raise TraceError(
                path, n, 1, "bad line: expected 'START-END (SIZE) NR_ACCESSES AGE' inside a snapshot"
            )
        cur.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))))
    if n == 0:
        raise TraceError(path, 1, 1, "empty file; expected damo 'report raw' text")
    if not t_start:
        raise TraceError(path, 1, 1, "no 'monitoring_start:' block found")
    if len(t_end) != len(t_start):
        raise TraceError(path, n, 1, "last snapshot has no monitoring_end (file truncated?)")
    close(n)
    if any(r[0].size == 0 for r in regions):
        i = next(i for i, r in enumerate(regions) if r[0].size == 0)
        raise TraceError(path, lines_at[i], 1, "snapshot without regions (file truncated?)")
    ts = np.array(t_start)
    te = np.array(t_end)
    _check_snapshot_times(path, ts, te, lines_at)
    return DamonSnapshots(t_start=ts, t_end=te, regions=regions, path=str(path))


def load_memory_trace(path: Path) -> MemoryWorkload:
    fmt = detect_format(path)
    if fmt == "damon-csv":
        return damon_workload(load_damon_csv(path))
    if fmt == "damo-raw":
        return damon_workload(load_damo_raw(path))
    raise TraceError(path, 1, 1, f"not a DAMON trace (detected {fmt})")
