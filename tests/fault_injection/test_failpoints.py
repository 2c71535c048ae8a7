"""Failpoints: each fault does to the agent's view of the node exactly what it says."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from fi_rig import Rig

from sol.actuators.base import WriteError
from sol.fault_injection import environment
from sol.fault_injection.failpoints import DaemonKilled
from sol.fault_injection.faults import get_fault
from sol.kernel.errors import SensorError
from sol.sim.scenarios import get_scenario

ACTIVE, BEFORE, AFTER = 12.0, 5.0, 35.0


# -- sensor boundary ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("data.nan", lambda u: math.isnan(u.cores)),
        ("data.inf", lambda u: u.cores == math.inf),
        ("data.out_of_range", lambda u: u.cores == -1.0),
        ("data.noise", lambda u: math.isfinite(u.cores)),
    ],
    ids=["nan", "inf", "out-of-range", "noise"],
)
def test_value_faults_corrupt_the_measurement_not_its_timestamp(
    rig: Callable[..., Rig], fault: str, check: Callable[..., bool]
) -> None:
    r = rig(get_fault(fault)).at(ACTIVE)
    u = r.backend.sensors.cpu.usage("primary")
    assert check(u)
    assert u.t == ACTIVE
    assert u.interval == pytest.approx(ACTIVE)
    assert r.injector.injections == 1


@pytest.mark.parametrize("t", [BEFORE, AFTER], ids=["before", "after"])
def test_readings_are_untouched_outside_the_window(rig: Callable[..., Rig], t: float) -> None:
    r = rig(get_fault("data.nan")).at(t)
    assert math.isfinite(r.backend.sensors.cpu.usage("primary").cores)
    assert r.injector.injections == 0


def test_pressure_is_not_a_data_reading(rig: Callable[..., Rig]) -> None:
    """PSI comes from another kernel file: assess_performance keeps seeing the truth."""
    r = rig(get_fault("data.nan")).at(ACTIVE)
    assert math.isfinite(r.backend.sensors.cpu.pressure("primary").some_avg10)


def test_stale_serves_the_onset_sample_again(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("data.stale")).at(ACTIVE)
    first = r.backend.sensors.cpu.usage("primary")
    again = r.at(ACTIVE + 5).backend.sensors.cpu.usage("primary")
    assert again == first
    assert again.t == ACTIVE


def test_frozen_keeps_the_value_with_fresh_timestamps(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("data.frozen")).at(ACTIVE)
    first = r.backend.sensors.cpu.usage("primary")
    again = r.at(ACTIVE + 5).backend.sensors.cpu.usage("primary")
    assert again.cores == first.cores
    assert again.t == ACTIVE + 5


def test_frozen_idle_holds_the_primaries_usage_counter_and_nothing_else(rig: Callable[..., Rig]) -> None:
    """Only their usage counter sticks (reading idle): what could tell it from idle moves on."""
    r = rig(get_fault("data.frozen_idle")).at(ACTIVE)
    cpu = r.backend.sensors.cpu
    first, delay0, harvest0 = cpu.usage("primary"), cpu.run_queue_delay("primary"), cpu.usage("harvest")
    r.backend.actuators.cpu.set_harvest_cores(int(cpu.total_cores()))  # squeeze them: they wait
    r.at(ACTIVE + 5)
    again = cpu.usage("primary")
    assert (again.total_core_s, again.cores, again.t) == (first.total_core_s, 0.0, ACTIVE + 5)
    assert cpu.run_queue_delay("primary").total_s > delay0.total_s
    assert cpu.usage("harvest").total_core_s > harvest0.total_core_s
    assert r.injector.injections == 2
    r.at(AFTER)
    assert cpu.usage("primary").total_core_s > first.total_core_s  # the counter moves again


@pytest.mark.parametrize(
    ("fault", "match"),
    [("data.garbage", "cannot parse"), ("data.missing", "ENODATA")],
    ids=["garbage", "missing"],
)
def test_unreadable_sources_raise_the_linux_backends_error(
    rig: Callable[..., Rig], fault: str, match: str
) -> None:
    f = get_fault(fault)
    if "p" in f.params:
        f = f.with_params(p=1.0)
    r = rig(f).at(ACTIVE)
    with pytest.raises(SensorError, match=match):
        r.backend.sensors.cpu.usage("primary")


def test_sensors_record_which_facilities_the_agent_used(rig: Callable[..., Rig]) -> None:
    r = rig(None).at(1.0)
    r.backend.sensors.cpu.usage("primary")
    assert r.backend.touched == {"cpu"}


# -- actuator boundary ----------------------------------------------------------------------


def _granted(r: Rig) -> int:
    return int(r.node.actuators.cpu.harvest_cores())


def test_a_healthy_write_journals_the_before_image_then_writes_and_reads_back(
    rig: Callable[..., Rig],
) -> None:
    r = rig(None).at(1.0)
    r.backend.actuators.cpu.set_harvest_cores(6)
    assert _granted(r) == 6
    assert r.journal is not None
    [rec] = r.journal.open_records("tester")
    assert (rec.kind, rec.before) == ("sim.cpu.harvest_cores", 0)
    report = r.journal.restore(r.backend.restorers())
    assert report.ok and _granted(r) == 0


@pytest.mark.parametrize(
    ("fault", "errno_name"),
    [("act.eperm", "EPERM"), ("act.eio", "EIO")],
    ids=["eperm", "eio"],
)
def test_refused_writes_raise_with_the_errno_and_change_nothing(
    rig: Callable[..., Rig], fault: str, errno_name: str
) -> None:
    f = get_fault(fault)
    if "p" in f.params:
        f = f.with_params(p=1.0)
    r = rig(f).at(ACTIVE)
    with pytest.raises(WriteError) as info:
        r.backend.actuators.cpu.set_harvest_cores(6)
    assert info.value.errno_name == errno_name
    assert _granted(r) == 0
    assert r.journal is not None and len(r.journal.open_records()) == 1  # record first, then the write


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("act.not_applied", 0), ("act.partial", 3)],
    ids=["not-applied", "partial"],
)
def test_read_back_catches_writes_that_did_not_take_effect(
    rig: Callable[..., Rig], fault: str, expected: int
) -> None:
    r = rig(get_fault(fault)).at(ACTIVE)
    with pytest.raises(WriteError) as info:
        r.backend.actuators.cpu.set_harvest_cores(6)
    assert info.value.reason == "readback-mismatch"
    assert _granted(r) == expected


def test_without_safeguards_a_dropped_write_goes_unnoticed(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("act.not_applied"), safeguards=False).at(ACTIVE)
    r.backend.actuators.cpu.set_harvest_cores(6)
    assert _granted(r) == 0


def test_a_hung_write_consumes_forever_and_never_lands(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("act.hang")).at(ACTIVE)
    r.backend.actuators.cpu.set_harvest_cores(6)
    assert r.clock.now() - ACTIVE > 86400
    assert _granted(r) == 0


def test_a_delayed_write_lands_late_unless_revoked(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("sched.actuator_delayed")).at(ACTIVE)
    r.backend.actuators.cpu.set_harvest_cores(6)
    assert r.clock.now() == pytest.approx(ACTIVE + 3.0)
    assert _granted(r) == 0
    r.at(ACTIVE + 3.0)
    assert _granted(r) == 6
    r.backend.actuators.cpu.set_harvest_cores(2)
    r.backend.revoke("tester")  # quarantine: the late write must not land after the restore
    r.at(ACTIVE + 10.0)
    assert _granted(r) == 6


def test_restore_goes_through_the_failpoint_too(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("act.eperm")).at(BEFORE)
    r.backend.actuators.cpu.set_harvest_cores(6)
    r.at(ACTIVE)
    assert r.journal is not None
    assert not r.journal.restore(r.backend.restorers()).ok
    r.at(AFTER)
    assert r.journal.restore(r.backend.restorers()).ok
    assert _granted(r) == 0


def test_an_armed_kill_lands_the_write_then_kills(rig: Callable[..., Rig]) -> None:
    r = rig(get_fault("proc.sigkill")).at(ACTIVE)
    r.backend.kill_armed = True
    with pytest.raises(DaemonKilled):
        r.backend.actuators.cpu.set_harvest_cores(6)
    assert _granted(r) == 6
    assert r.journal is not None and [x.before for x in r.journal.open_records()] == [0]


# -- the node -------------------------------------------------------------------------------


def _cpu_demand(node: object) -> float:
    return float(node.ground_truth()["cpu.primary_demand_core_s"])  # type: ignore[attr-defined]


def test_scale_load_changes_cpu_demand_exactly_over_its_window() -> None:
    base = get_scenario("default").build(1)
    spiked = get_scenario("default").build(1)
    marks: list[tuple[float, float]] = []
    for t in (40.0, 70.0, 100.0):
        base.advance(t)
        base.sync()
        if t == 40.0:
            spiked.advance(t)
            spiked.sync()
            undo = environment.scale_load(spiked, 1.5, ("cpu",))
        elif t == 70.0:
            spiked.advance(t)
            spiked.sync()
            undo()
        else:
            spiked.advance(t)
        marks.append((_cpu_demand(base), _cpu_demand(spiked)))
    (b40, s40), (b70, s70), (b100, s100) = marks
    assert s40 == pytest.approx(b40)
    assert 1.2 * (b70 - b40) < s70 - s40 <= 1.5 * (b70 - b40) + 1e-6
    assert s100 - s70 == pytest.approx(b100 - b70, rel=1e-9)


def test_memory_pressure_makes_far_memory_hot() -> None:
    calm, hot = get_scenario("default").build(1), get_scenario("default").build(1)
    for node in (calm, hot):
        node.advance(10.0)
        node.sync()
    environment.memory_pressure(hot, 4.0, 0.3)
    for node in (calm, hot):
        node.advance(40.0)
    assert hot.ground_truth()["mem.far_accesses"] > 1.3 * calm.ground_truth()["mem.far_accesses"]


def test_power_emergency_lowers_the_budget_and_undoes() -> None:
    node = get_scenario("default").build(1)
    before = node.sensors.gpu.power_budget_mw()
    undo = environment.lower_gpu_budget(node, 0.5)
    assert node.sensors.gpu.power_budget_mw() == pytest.approx(before * 0.5, abs=1)
    undo()
    assert node.sensors.gpu.power_budget_mw() == before


def test_replicated_streams_multiply_requests() -> None:
    calm, busy = get_scenario("default").build(1), get_scenario("default").build(1)
    environment.scale_load(busy, 2.0, ("gpu", "faas"))
    for node in (calm, busy):
        node.advance(120.0)
    a, b = calm.ground_truth(), busy.ground_truth()
    assert b["gpu.requests"] == 2 * a["gpu.requests"]
    assert b["faas.invocations"] == 2 * a["faas.invocations"]
