"""NVML knobs and the GPU facility against a fake NVML with pynvml's call surface and error
types; a real-GPU test runs where NVML finds a GPU (skipped otherwise)."""

from __future__ import annotations

import doctest
import os
from pathlib import Path
from typing import Any

import pynvml
import pytest
from structlog.testing import capture_logs

import sol.linux.fake_nvml as fake_module
from sol.actuators.base import WriteError
from sol.actuators.nvml import restore_clocks, restore_limit
from sol.actuators.restorers import default_restorers
from sol.config import LinuxConfig, LinuxGpuConfig
from sol.kernel.errors import SensorError, Unsupported
from sol.linux import LinuxBackend
from sol.linux.fake_nvml import FakeGpu, FakeNvml
from sol.safety.journal import UndoJournal


class Clock:
    def now(self) -> float:
        return 10.0

    def consume(self, s: float) -> None:
        return None


def gpu_backend(
    nvml: Any, journal: UndoJournal | None, tmp_path: Path, budget_w: float | None = 1400.0
) -> LinuxBackend:
    linux = LinuxConfig(
        cgroup_root=tmp_path,
        proc_root=tmp_path,
        sys_root=tmp_path,
        gpu=LinuxGpuConfig(power_budget_w=budget_w),
    )
    return LinuxBackend(linux, journal=journal, clock=Clock(), nvml=nvml, facilities=("gpu",))


@pytest.fixture
def nvml() -> FakeNvml:
    return FakeNvml([FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb", power_mw=420_000, enforce_delay=2)])


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with UndoJournal.open(tmp_path / "state" / "undo.journal", fsync=False) as j:
        yield j


def test_fake_module_examples_run() -> None:
    assert doctest.testmod(fake_module).failed == 0


def test_sensors_read_every_nvml_figure(nvml: FakeNvml, tmp_path: Path) -> None:
    backend = gpu_backend(nvml, None, tmp_path)
    gpu = backend.sensors.gpu
    assert gpu.count() == 2
    assert gpu.power_usage_mw(1) == 420_000 and gpu.power_limit_mw(0) == 700_000
    assert gpu.power_limit_constraints_mw(0) == (100_000, 700_000)
    assert gpu.enforced_power_limit_mw(0) == 700_000 and gpu.temperature_c(0) == 45
    assert (gpu.utilization(0).gpu, gpu.utilization(0).memory) == (30, 20)
    assert gpu.total_energy_mj(0) == 1_000_000 and gpu.persistence_mode(0)
    assert gpu.power_budget_mw() == 1_400_000
    backend.close()
    assert nvml.initialised == 0 and nvml.calls[-1] == "nvmlShutdown"


def test_power_limit_is_journaled_per_uuid_read_back_and_the_enforced_limit_trails(
    nvml: FakeNvml, journal: UndoJournal, tmp_path: Path
) -> None:
    backend = gpu_backend(nvml, journal, tmp_path)
    act = backend.actuators_for("gpu_power", dry_run=False).gpu
    with capture_logs() as logs:
        act.set_power_limit(1, 500_000)
    assert nvml.gpus[1].limit_mw == 500_000
    (record,) = journal.open_records("gpu_power")
    assert (record.kind, record.target, record.before) == ("nvml.power_limit", "GPU-bbbb", "700000")
    enforced = [e["enforced_mw"] for e in logs if e["event"] == "linux.gpu.power_limit"]
    assert enforced == [700_000]  # the board has not applied it yet
    gpu = backend.sensors.gpu
    assert [gpu.enforced_power_limit_mw(1) for _ in range(2)] == [700_000, 500_000]
    assert journal.restore(default_restorers(), owner="gpu_power").ok is False  # no libnvidia-ml here
    assert restore_limit(record.target, record.before, nvml=nvml) is None
    assert nvml.gpus[1].limit_mw == 700_000


@pytest.mark.parametrize("mw", [99_999, 700_001], ids=["below-min", "above-max"])
def test_a_limit_outside_the_constraints_is_a_value_error_and_nothing_changes(
    nvml: FakeNvml, journal: UndoJournal, tmp_path: Path, mw: int
) -> None:
    act = gpu_backend(nvml, journal, tmp_path).actuators_for("gpu_power", dry_run=False).gpu
    with pytest.raises(ValueError, match="outside its constraints"):
        act.set_power_limit(0, mw)
    assert nvml.gpus[0].limit_mw == 700_000 and len(journal) == 0
    assert "nvmlDeviceSetPowerManagementLimit" not in nvml.calls


@pytest.mark.parametrize(
    ("code", "errno_name"),
    [
        (pynvml.NVML_ERROR_NO_PERMISSION, "EPERM"),
        (pynvml.NVML_ERROR_NOT_SUPPORTED, "ENOTSUP"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, "ENODEV"),
    ],
    ids=["no-permission", "not-supported", "gpu-lost"],
)
def test_nvml_errors_on_set_are_write_errors_with_an_errno(
    nvml: FakeNvml, journal: UndoJournal, tmp_path: Path, code: int, errno_name: str
) -> None:
    nvml.fail["nvmlDeviceSetPowerManagementLimit"] = code
    act = gpu_backend(nvml, journal, tmp_path).actuators_for("gpu_power", dry_run=False).gpu
    with pytest.raises(WriteError) as info:
        act.set_power_limit(0, 400_000)
    assert info.value.errno_name == errno_name and info.value.target == "GPU-aaaa"
    assert "NVMLError" in str(info.value) and nvml.gpus[0].limit_mw == 700_000


def test_telemetry_errors_are_sensor_errors_and_not_supported_is_unsupported(
    nvml: FakeNvml, tmp_path: Path
) -> None:
    gpu = gpu_backend(nvml, None, tmp_path).sensors.gpu
    nvml.fail["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    with pytest.raises(Unsupported, match="GPU-aaaa"):
        gpu.total_energy_mj(0)
    nvml.fail["nvmlDeviceGetPowerUsage"] = pynvml.NVML_ERROR_GPU_IS_LOST
    with pytest.raises(SensorError, match="GpuIsLost"):
        gpu.power_usage_mw(0)
    with pytest.raises(IndexError):
        gpu.temperature_c(2)


@pytest.mark.parametrize(
    "code",
    [
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_NO_PERMISSION,
    ],
    ids=["library-not-found", "driver-not-loaded", "no-permission"],
)
def test_nvml_failing_to_initialise_leaves_no_gpu_facility_with_the_reason(tmp_path: Path, code: int) -> None:
    nvml = FakeNvml([FakeGpu(uuid="GPU-x")], fail={"nvmlInit": code})
    with capture_logs() as logs:
        backend = gpu_backend(nvml, None, tmp_path)
    assert backend.sensors.gpu is None and backend.actuators_for("a", dry_run=True).gpu is None
    (reason,) = [e["detail"] for e in logs if e["event"] == "linux.feature" and e["feature"] == "gpu"]
    assert "NVML unavailable" in reason and "NVMLError_" in reason


def test_no_gpu_is_no_facility(tmp_path: Path) -> None:
    assert gpu_backend(FakeNvml([]), None, tmp_path).sensors.gpu is None


def _budget_backend(nvml: FakeNvml, tmp_path: Path, static: float | None = 1400.0) -> LinuxBackend:
    gpu = LinuxGpuConfig(power_budget_w=static, budget_file=tmp_path / "budget-w")
    linux = LinuxConfig(cgroup_root=tmp_path, proc_root=tmp_path, sys_root=tmp_path, gpu=gpu)
    return LinuxBackend(linux, clock=Clock(), nvml=nvml, facilities=("gpu",))


def _rewrite(path: Path, text: str, bump_ns: int) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))  # a new mtime even within a tick


def test_the_budget_file_is_re_read_when_a_rack_controller_rewrites_it(
    nvml: FakeNvml, tmp_path: Path
) -> None:
    path = tmp_path / "budget-w"
    path.write_text("1200\n")
    backend = _budget_backend(nvml, tmp_path)
    gpu = backend.sensors.gpu
    assert gpu is not None and gpu.power_budget_mw() == 1_200_000
    (feature,) = [f for f in backend.features if f.name == "gpu.budget_file"]
    assert feature.supported and feature.detail == f"{path}, re-read when it changes; now 1200 W"
    _rewrite(path, "950.5", 1_000_000)
    assert gpu.power_budget_mw() == 950_500
    with capture_logs() as logs:
        _rewrite(path, "lots", 2_000_000)  # garbage: the last good value holds, said once
        assert gpu.power_budget_mw() == 950_500
        assert gpu.power_budget_mw() == 950_500
        _rewrite(path, "-5", 3_000_000)
        assert gpu.power_budget_mw() == 950_500
        path.unlink()
        assert gpu.power_budget_mw() == 950_500
    bad = [e for e in logs if e["event"] == "linux.gpu.budget_file_bad"]
    assert ("watts" in bad[0]["problem"], bad[0]["kept"]) == (True, "950.5 W")
    assert "'-5' is not a number of watts > 0" in bad[1]["problem"] and "cannot stat" in bad[2]["problem"]
    assert len(bad) == 3
    _rewrite(path, "1000", 4_000_000)
    assert gpu.power_budget_mw() == 1_000_000


def test_a_missing_budget_file_leaves_the_static_budget_and_says_why(nvml: FakeNvml, tmp_path: Path) -> None:
    backend = _budget_backend(nvml, tmp_path)
    assert backend.sensors.gpu is not None and backend.sensors.gpu.power_budget_mw() == 1_400_000
    (feature,) = [f for f in backend.features if f.name == "gpu.budget_file"]
    assert not feature.supported and "now 1400 W (cannot stat it" in feature.detail
    assert _budget_backend(nvml, tmp_path, None).sensors.gpu.power_budget_mw() is None  # type: ignore[union-attr]


def test_persistence_off_is_warned_once(nvml: FakeNvml, journal: UndoJournal, tmp_path: Path) -> None:
    nvml.gpus[0].persistence = False
    act = gpu_backend(nvml, journal, tmp_path).actuators_for("gpu_power", dry_run=False).gpu
    with capture_logs() as logs:
        act.set_power_limit(0, 600_000)
        act.set_power_limit(0, 550_000)
    assert [e["event"] for e in logs].count("linux.gpu.persistence_off") == 1


def test_dry_run_never_calls_set(nvml: FakeNvml, tmp_path: Path) -> None:
    act = gpu_backend(nvml, None, tmp_path).actuators_for("gpu_power", dry_run=True).gpu
    with capture_logs() as logs:
        act.set_power_limit(0, 300_000)
    assert any(e["event"] == "actuation.dry_run" and e["would_write"] == "300000" for e in logs)
    assert "nvmlDeviceSetPowerManagementLimit" not in nvml.calls


def test_locked_clocks_are_journaled_and_restore_resets_them(
    nvml: FakeNvml, journal: UndoJournal, tmp_path: Path
) -> None:
    act = gpu_backend(nvml, journal, tmp_path).actuators_for("gpu_power", dry_run=False).gpu
    act.lock_clocks(0, 900, 1410)
    assert nvml.gpus[0].locked_clocks == (900, 1410)
    (record,) = journal.open_records()
    assert (record.kind, record.before) == ("nvml.clocks", "reset")
    restore_clocks(record.target, record.before, nvml=nvml)
    assert nvml.gpus[0].locked_clocks is None
    with pytest.raises(ValueError):
        act.lock_clocks(0, 1500, 900)


def test_restore_by_index_when_the_record_names_one(nvml: FakeNvml) -> None:
    nvml.gpus[0].limit_mw = 300_000
    restore_limit("0", "650000", nvml=nvml)
    assert nvml.gpus[0].limit_mw == 650_000 and nvml.initialised == 0


def _real_nvml() -> Any:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no real GPU here: {type(exc).__name__}: {exc}")
    if pynvml.nvmlDeviceGetCount() == 0:
        pynvml.nvmlShutdown()
        pytest.skip("NVML finds no GPU here")
    pynvml.nvmlShutdown()
    return pynvml


@pytest.mark.linux
def test_real_gpu_sensors_and_a_power_limit_round_trip(tmp_path: Path) -> None:
    real = _real_nvml()
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        backend = gpu_backend(real, journal, tmp_path, budget_w=None)
        try:
            gpu = backend.sensors.gpu
            assert gpu is not None and gpu.count() >= 1
            lo, hi = gpu.power_limit_constraints_mw(0)
            before = gpu.power_limit_mw(0)
            assert lo <= before <= hi and gpu.power_usage_mw(0) > 0 and 0 <= gpu.utilization(0).gpu <= 100
            target = max(lo, before - 50_000)
            act = backend.actuators_for("gpu_power", dry_run=False).gpu
            try:
                act.set_power_limit(0, target)
            except WriteError as exc:
                pytest.skip(f"cannot set the power limit here: {exc}")
            assert gpu.power_limit_mw(0) == target
            assert journal.restore(default_restorers(), owner="gpu_power").ok
            assert gpu.power_limit_mw(0) == before
        finally:
            backend.close()
