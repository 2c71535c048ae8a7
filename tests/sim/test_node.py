"""The node as a backend: determinism, cadence, scenarios, reports, plots, calibration."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from sol.backend import Backend
from sol.sim import ScenarioError, SimNode, get_scenario, list_scenarios
from sol.sim.gpu import ZEUS_PERF_VS_CAP
from sol.sim.report import render_summary, write_plots


def _drive(node: SimNode, until: float, step: float) -> None:
    k = 1
    while k * step < until:
        node.advance(k * step)
        k += 1
    node.advance(until)


def _act(node: SimNode) -> None:
    """A fixed, scripted agent touching every facility."""
    node.sensors.cpu.usage("primary")
    node.actuators.cpu.set_harvest_cores(2)
    snap = node.sensors.memory.regions()
    r = snap.regions[0]
    node.actuators.memory.migrate(r.start, r.end, 1)
    node.actuators.gpu.set_power_limit(0, 250_000)
    node.actuators.faas.prewarm(node.sensors.faas.objects()[0].name)


def _fingerprint(node: SimNode) -> bytes:
    gt = node.ground_truth()
    parts = [repr(sorted(gt.items())).encode()]
    for name, (t, v) in sorted(node.series().items()):
        parts += [name.encode(), t.tobytes(), v.tobytes()]
    return b"".join(parts)


def test_default_scenario_is_a_backend_with_all_four_facilities() -> None:
    node = get_scenario("default").build(seed=1)
    assert isinstance(node, Backend) and node.name == "sim"
    for f in ("cpu", "memory", "gpu", "faas"):
        assert getattr(node.sensors, f) is not None and getattr(node.actuators, f) is not None


def test_missing_facility_is_none() -> None:
    node = get_scenario("cpu-stress").build(seed=1)
    assert node.sensors.gpu is None and node.actuators.memory is None


@pytest.mark.parametrize("seed", [0, 42])
def test_same_seed_same_node_byte_for_byte(seed: int) -> None:
    prints = []
    for _ in range(2):
        node = get_scenario("default").build(seed=seed, clock_start=100.0)
        _drive(node, 150.0, 0.1)
        _act(node)
        _drive(node, 400.0, 0.1)
        prints.append(_fingerprint(node))
    assert prints[0] == prints[1]
    other = get_scenario("default").build(seed=seed + 1, clock_start=100.0)
    _drive(other, 400.0, 0.1)
    assert _fingerprint(other) != prints[0]


def test_advance_cadence_does_not_change_the_result() -> None:
    fine = get_scenario("default").build(seed=3)
    coarse = get_scenario("default").build(seed=3)
    _drive(fine, 300.0, 0.1)
    _drive(coarse, 300.0, 7.3)
    a, b = fine.ground_truth(), coarse.ground_truth()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-9), k


def test_advance_is_idempotent_and_ignores_the_past() -> None:
    node = get_scenario("default").build(seed=3)
    node.advance(10.0)
    g1 = dict(node.ground_truth())
    node.advance(10.0)
    node.advance(5.0)
    assert dict(node.ground_truth()) == g1


def test_sensor_times_are_clock_seconds() -> None:
    node = get_scenario("default").build(seed=3, clock_start=1000.0)
    node.advance(1012.5)
    assert node.sensors.cpu.usage("primary").t == 1012.5
    assert node.sensors.memory.nodes()[0].t == 1012.5


def test_scenarios_listed_and_unknown_name_lists_the_known() -> None:
    names = [s.name for s in list_scenarios()]
    assert "default" in names
    for domain in ("cpu", "mem", "gpu", "faas"):
        assert any(n.startswith(domain) and "stress" in n for n in names)
        assert any(n.startswith(domain) and "stress" not in n for n in names)
    with pytest.raises(ScenarioError, match="known: default"):
        get_scenario("nope")


def test_trace_scenario_without_data_says_where_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOL_SHARED_DATA", str(tmp_path))
    with pytest.raises(ScenarioError, match="sol data fetch azure-llm-2023-code"):
        get_scenario("gpu-splitwise").build(seed=1)


def test_summary_table_and_plots(tmp_path: Path) -> None:
    node = get_scenario("default").build(seed=1)
    _drive(node, 120.0, 1.0)
    text = render_summary(node.ground_truth())
    assert "CPU" in text and "harvested_core_s" in text and "FaaS" in text
    widths = {line.index(line.split()[-1]) for line in text.splitlines() if line.startswith("  ")}
    assert len(widths) > 0
    files = write_plots(node, tmp_path)
    assert {p.name.split("-")[-1] for p in files} == {"cpu.png", "memory.png", "gpu.png", "faas.png"}
    assert all(p.stat().st_size > 1000 for p in files)


def test_zeus_curve_matches_the_measurements(data_dir: Path) -> None:
    xs: list[float] = []
    ys: list[float] = []
    for f in sorted((data_dir / "gpu-power-zeus").glob("zeus_summary_power_*.csv")):
        groups: dict[tuple[str, ...], list[tuple[float, float, float]]] = {}
        with open(f) as fh:
            for r in csv.DictReader(fh):
                key = (r["dataset"], r["network"], r["batch_size"], r["optimizer"])
                groups.setdefault(key, []).append(
                    (float(r["power_limit"]), float(r["time_per_epoch"]), float(r["average_power"]))
                )
        for rows in groups.values():
            rows.sort()
            _, t_max, p_max = rows[-1]
            for limit, t, _ in rows:
                xs.append(limit / p_max)
                ys.append(t_max / t)
    x, y = np.array(xs), np.array(ys)
    for centre, perf in ZEUS_PERF_VS_CAP:
        sel = (x >= centre - 0.05) & (x < centre + 0.05)
        assert np.median(y[sel]) == pytest.approx(perf, abs=0.002), centre
