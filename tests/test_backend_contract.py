"""Every backend keeps one typed contract (sol.backend.Backend), checked by sol.testing.check_backend.

The simulator's scenarios, the null node, the Linux backend on a fake cgroup v1 host and on this
host itself: each offers the facilities it has through the typed views, with every capability
the runtime uses declared (none looked up with getattr), and says why a facility is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sol.backend import BackendBase, NullBackend
from sol.config import LinuxConfig, LinuxCpuConfig
from sol.facilities import FACILITY_NAMES, Actuators, FacilityMissing, Sensors
from sol.sim.scenarios import get_scenario, list_scenarios
from sol.testing import BackendCheckFailed, check_backend

SCENARIOS = [s.name for s in list_scenarios()]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_simulated_scenario_keeps_the_backend_contract(scenario: str) -> None:
    try:
        node = get_scenario(scenario).build(1, clock_start=0.0)
    except FileNotFoundError as exc:  # a scenario replaying ../shared/data
        pytest.skip(f"scenario {scenario} needs its trace: {exc}")
    try:
        offered = check_backend(node)
    finally:
        node.close()
    assert offered, f"scenario {scenario} offers no facility"
    assert set(offered) <= set(FACILITY_NAMES)


def test_the_null_backend_keeps_the_contract_with_no_facility() -> None:
    assert check_backend(NullBackend()) == []


def test_the_linux_backend_keeps_the_contract_on_a_fake_v1_host(tmp_path: Path) -> None:
    from sol.linux import LinuxBackend
    from tests.linux.linux_fakes import FakeProc, FakeV1

    v1, proc = FakeV1(tmp_path / "cgroup"), FakeProc(tmp_path / "proc")
    sys_root = tmp_path / "sys"
    (sys_root / "devices" / "system" / "cpu").mkdir(parents=True)
    (sys_root / "devices" / "system" / "cpu" / "online").write_text("0-3\n")
    backend = LinuxBackend(LinuxConfig(cgroup_root=v1.root, proc_root=proc.root, sys_root=sys_root))
    try:
        assert "cpu" in check_backend(backend)
        # what the fake host lacks is absent, each with its reason
        absent = {f.name: f.detail for f in backend.features if not f.supported}
        assert {"gpu", "faas"} <= set(absent), backend.features
    finally:
        backend.close()


def test_the_linux_backend_keeps_the_contract_on_this_host() -> None:
    from sol.linux import LinuxBackend

    backend = LinuxBackend(LinuxConfig(cpu=LinuxCpuConfig(harvest_cgroup="sol_test_never_created")))
    try:
        offered = check_backend(backend)
    finally:
        backend.close()
    assert set(offered) <= set(FACILITY_NAMES)


class _Untyped(BackendBase):
    """A backend of the old shape: namespaces, not the typed views."""

    def __init__(self) -> None:
        super().__init__()
        self.sensors = SimpleNamespace(cpu=None, memory=None, gpu=None, faas=None)  # type: ignore[assignment]


class _Liar(BackendBase):
    """Claims a cpu facility whose sensors implement nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.sensors = Sensors(cpu=object())  # type: ignore[arg-type]


class _Bare:
    name = "bare"
    sensors = Sensors()
    actuators = Actuators()

    def advance(self, now: float) -> None: ...

    def ground_truth(self) -> Mapping[str, float]:
        return {}

    def close(self) -> None: ...


@pytest.mark.parametrize(
    ("backend", "problem"),
    [
        (_Untyped(), "not sol.facilities.Sensors"),
        (_Liar(), "cpu sensors do not implement CpuSensors"),
        (_Bare(), "lacks features, revocable, actuators_for, revoke, unrevoke, restored"),
    ],
    ids=["untyped-namespaces", "facility-not-implemented", "capabilities-missing"],
)
def test_check_backend_names_what_breaks_the_contract(backend: Any, problem: str) -> None:
    with pytest.raises(BackendCheckFailed, match=problem):
        check_backend(backend)


def test_an_agent_gets_a_facility_typed_or_a_clear_facility_missing() -> None:
    sensors = Sensors()
    with pytest.raises(FacilityMissing, match="this node has no gpu sensors"):
        sensors.require("gpu")
    with pytest.raises(LookupError, match="unknown facility 'disk'; known: cpu, memory, gpu, faas"):
        sensors.require("disk")  # type: ignore[call-overload]
    node = get_scenario("default").build(1, clock_start=0.0)
    try:
        cpu = node.sensors.require("cpu")
        assert cpu.total_cores() >= 1
    finally:
        node.close()
