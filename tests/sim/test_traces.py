"""Loaders on the real public samples, and malformed files named by file:line:column."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sol.sim import TraceError, scenario_from_trace
from sol.sim.traces import (
    TRACE_MAX_BYTES,
    TRACE_MAX_LINE,
    detect_format,
    load_damo_raw,
    load_damon_csv,
    load_functions_2019,
    load_functions_2021,
    load_llm_2023,
    load_vm_cpu_readings,
    load_vm_cpu_wide,
)


def _replay(path: Path, duration: float | None = None, step: float = 10.0) -> dict[str, float]:
    sc = scenario_from_trace(path)
    node = sc.build(seed=5)
    end = sc.duration_s if duration is None else duration
    k = 1
    while k * step < end:
        node.advance(k * step)
        k += 1
    node.advance(end)
    return dict(node.ground_truth())


def test_vm_cpu_replay_reproduces_mean_utilisation(data_dir: Path) -> None:
    path = data_dir / "azure-vm-cpu-2017" / "azure_v1_vm_cpu_avg_100vms_5min.csv"
    table = load_vm_cpu_wide(path)
    assert table.max_pct is not None and table.avg_pct.shape == (8004, 100)
    hours = 6
    gt = _replay(path, duration=hours * 3600.0, step=60.0)
    want = table.avg_pct[: hours * 12].mean()
    assert gt["cpu.primary_util_mean_pct"] == pytest.approx(want, rel=0.01)
    # nothing harvested: what the VMs wanted is what they got, up to sub-window bursts
    assert gt["cpu.primary_served_core_s"] == pytest.approx(gt["cpu.primary_demand_core_s"], rel=0.01)


def test_llm_replay_reproduces_rate_and_token_sizes(data_dir: Path) -> None:
    path = data_dir / "azure-llm-2023" / "AzureLLMInferenceTrace_code.csv"
    req = load_llm_2023(path)
    gt = _replay(path)
    n = req.arrival_s.size
    assert gt["gpu.requests"] == n == 8819
    assert gt["gpu.arrival_rate_per_s"] == pytest.approx(n / req.span_s, rel=0.01)
    assert gt["gpu.arrival_rate_per_s"] == pytest.approx(2.57, rel=0.01)  # SOURCE.md's figure
    assert gt["gpu.prompt_tokens_mean"] == pytest.approx(req.prompt_tokens.mean(), rel=0.01)
    assert gt["gpu.output_tokens_mean"] == pytest.approx(req.output_tokens.mean(), rel=0.01)


def test_functions_2019_replay_reproduces_counts(data_dir: Path) -> None:
    path = data_dir / "azure-functions" / "azure2019_sample1000fn_60min_invocation.csv"
    mc = load_functions_2019(path)
    assert int(mc.counts.sum()) == 85470  # SOURCE.md's total
    gt = _replay(path)
    assert gt["faas.invocations"] == 85470
    assert gt["faas.invocation_rate_per_s"] == pytest.approx(85470 / 3600.0, rel=0.01)
    assert gt["faas.objects"] == 1000.0


def test_functions_2021_replay_reproduces_count_and_durations(data_dir: Path) -> None:
    path = data_dir / "azure-functions" / "azure2021_invocations_sample199.csv"
    inv = load_functions_2021(path)
    assert inv.start_s.size == 199 and len(inv.objects) == 13 and len(inv.functions) == 31
    gt = _replay(path)
    assert gt["faas.invocations"] == 199
    assert gt["faas.duration_mean_s"] == pytest.approx(inv.duration_s.mean(), rel=0.01)


def test_damon_replay_reproduces_hot_bytes_and_frequency(data_dir: Path) -> None:
    path = data_dir / "damon-access" / "damon_recA_regions.csv"
    snaps = load_damon_csv(path)
    assert len(snaps.regions) == 543
    dur = snaps.t_end - snaps.t_start
    hot = np.array([float(((e - s) * (nr > 0)).sum()) for s, e, nr in snaps.regions])
    weighted = np.array([float(((e - s) * nr).sum()) / 21.0 for s, e, nr in snaps.regions])
    span = float(snaps.t_end[-1] - snaps.t_start[0])
    gt = _replay(path, step=0.5)
    assert gt["mem.hot_bytes_mean"] == pytest.approx(float(hot @ dur) / span, rel=0.01)
    assert gt["mem.access_weighted_bytes_mean"] == pytest.approx(float(weighted @ dur) / span, rel=0.01)


def test_damo_raw_text_parses_like_the_csv(tmp_path: Path) -> None:
    text = (
        "base_time_absolute: 8 m 59.809 s\n\nmonitoring_start:                0 ns\n"
        "monitoring_end:            104.599 ms\nmonitoring_duration:       104.599 ms\n"
        "target_id: 1\nnr_regions: 2\n"
        "# start_addr     end_addr        length  nr_accesses   age\n"
        "563ebaa00000-563ebadf3000 (   3.949 MiB)           0    -1\n"
        "563ebadf3000-563ebb1e6000 (   3.949 MiB)          20    -1\n\n"
        "monitoring_start:          104.599 ms\nmonitoring_end:            208.590 ms\nnr_regions: 1\n"
        "563ebaa00000-563ebb1e6000 (   7.898 MiB)           5    -1\n"
    )
    p = tmp_path / "report-raw"
    p.write_text(text)
    assert detect_format(p) == "damo-raw"
    snaps = load_damo_raw(p)
    assert snaps.t_start.tolist() == [0.0, pytest.approx(0.104599)]
    assert snaps.regions[1][2].tolist() == [5]
    node = scenario_from_trace(p).build(1)
    node.advance(0.2)
    assert len(node.sensors.memory.regions().regions) == 2


def test_vm_cpu_readings_layout(tmp_path: Path) -> None:
    rows = ["0,vmA,1.0,20.0,10.0", "0,vmB,2.0,40.0,30.0", "300,vmA,1.0,30.0,20.0", "300,vmB,1.0,50.0,10.0"]
    p = tmp_path / "vm_cpu_readings-file-1-of-1.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("\n".join(rows) + "\n")
    assert detect_format(p) == "azure-vm-cpu-readings"
    t = load_vm_cpu_readings(p)
    assert t.names == ("vmA", "vmB") and t.window_s == 300.0
    assert t.avg_pct.tolist() == [[10.0, 30.0], [20.0, 10.0]]
    assert t.max_pct is not None and t.max_pct.tolist() == [[20.0, 40.0], [30.0, 50.0]]


LLM_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
LLM_ROW = "2023-11-16 18:17:03.9799600,4808,10\n"
FN21_HEAD = "app,func,end_timestamp,duration\n"
VM_HEAD = "step,t_seconds,vm_1,vm_2\n"
DAMON_HEAD = "snapshot,t_start_ms,t_end_ms,start_addr,end_addr,size_bytes,nr_accesses,age\n"


@pytest.mark.parametrize(
    ("loader", "content", "line", "col", "what"),
    [
        pytest.param(load_llm_2023, "", 1, 1, "empty file", id="llm-empty"),
        pytest.param(
            load_llm_2023,
            "TIMESTAMP,Context,GeneratedTokens\n" + LLM_ROW,
            1,
            11,
            "bad header",
            id="llm-bad-header",
        ),
        pytest.param(
            load_llm_2023,
            LLM_HEAD + LLM_ROW + "2023-11-16 18:17:04.0,12x,8\n",
            3,
            23,
            "bad value",
            id="llm-bad-number",
        ),
        pytest.param(
            load_llm_2023, LLM_HEAD + LLM_ROW + "2023-11-16 18:1", 3, 16, "truncated", id="llm-truncated"
        ),
        pytest.param(load_llm_2023, LLM_HEAD + "yesterday,1,2\n", 2, 1, "TIMESTAMP", id="llm-bad-timestamp"),
        pytest.param(load_llm_2023, LLM_HEAD, 2, 1, "no data rows", id="llm-header-only"),
        pytest.param(
            load_functions_2021,
            FN21_HEAD + "a,f,1.0,0.5\na,f,2.0\n",
            3,
            8,
            "expected 4 fields",
            id="fn2021-short-row",
        ),
        pytest.param(
            load_functions_2021, FN21_HEAD + "a,f,1.0,-0.5\n", 2, 9, "outside", id="fn2021-negative"
        ),
        pytest.param(
            load_vm_cpu_wide, VM_HEAD + "0,0,1.0,2.0\n1,300,1.0,150\n", 3, 11, "outside", id="vm-over-100pct"
        ),
        pytest.param(
            load_vm_cpu_wide,
            VM_HEAD + "0,0,1.0,2.0\n1,300,1.0,2.0,9\n",
            3,
            15,
            "expected 4 fields",
            id="vm-long-row",
        ),
        pytest.param(load_vm_cpu_wide, "step,seconds,vm_1\n0,0,1\n", 1, 6, "bad header", id="vm-bad-header"),
        pytest.param(
            load_damon_csv,
            DAMON_HEAD + "0,0.0,100.0,0x1000,0xzz,4096,3,-1\n",
            2,
            20,
            "hex",
            id="damon-bad-address",
        ),
        pytest.param(
            load_functions_2019,
            "HashFunction,Trigger,1,3\n0,timer,1,0\n",
            1,
            24,
            "minute column 2",
            id="fn2019-bad-minutes",
        ),
    ],
)
def test_malformed_files_name_file_line_and_column(
    tmp_path: Path, loader: object, content: str, line: int, col: int, what: str
) -> None:
    p = tmp_path / "trace.csv"
    p.write_text(content)
    with pytest.raises(TraceError) as err:
        loader(p)  # type: ignore[operator]
    e = err.value
    assert str(e).startswith(f"{p}:{line}:{col}: "), str(e)
    assert what in str(e)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "vm.csv.gz"
    data = gzip.compress(("0,vmA,1.0,20.0,10.0\n" * 2000).encode())
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"vm\.csv\.gz:\d+:1: .*truncated"):
        load_vm_cpu_readings(p)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        pytest.param("", "empty file", id="empty"),
        pytest.param("a,b,c\n1,2,3\n", "unknown trace format", id="unknown-header"),
        pytest.param(
            "HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0\n", "companion", id="companion"
        ),
    ],
)
def test_detection_errors_are_clear(tmp_path: Path, content: str, what: str) -> None:
    p = tmp_path / "x.csv"
    p.write_text(content)
    with pytest.raises(TraceError, match=what) as err:
        scenario_from_trace(p)
    assert str(err.value).startswith(f"{p}:1:1: ")


# -- files that are not traces: refused at once, never read without end ----------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        pytest.param("vm.csv", lambda n: b"step,t_seconds,vm_a\n" + b"0" * n, id="plain"),
        pytest.param("vm.csv.gz", lambda n: gzip.compress(b"step,t_seconds,vm_a\n" + b"0" * n), id="gzip"),
    ],
)
def test_a_line_longer_than_any_trace_has_is_an_error_not_a_read_into_memory(
    tmp_path: Path, name: str, make: Callable[[int], bytes]
) -> None:
    # a binary file (an image, a disk dump) has no line ends: reading "a line" read it whole
    p = tmp_path / name
    p.write_bytes(make(TRACE_MAX_LINE + 10))
    with pytest.raises(TraceError, match=f"line longer than {TRACE_MAX_LINE} bytes") as err:
        load_vm_cpu_wide(p)
    assert str(err.value).startswith(f"{p}:2:1: "), str(err.value)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d, id="directory"),
        pytest.param(lambda d: (d / "dev").symlink_to("/dev/null") or d / "dev", id="device"),
    ],
)
def test_a_path_that_is_not_a_regular_file_is_not_a_trace(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    p = make(tmp_path)
    with pytest.raises(TraceError, match=f"trace {p} is not a regular file"):
        scenario_from_trace(p)


def test_the_trace_size_cap_is_above_every_public_trace_sol_fetches() -> None:
    from sol.sim.datasets import DATASETS

    sizes = [f.size for d in DATASETS for f in d.files if f.size is not None]
    assert sizes and max(sizes) < TRACE_MAX_BYTES
