"""The GPU facility over NVML (``pynvml``, package nvidia-ml-py).

A host without the NVML library, without a driver or without a GPU has no GPU facility
(``None``, the reason logged once). The node's power budget is ``[linux.gpu] power_budget_w``
or, with ``budget_file``, the watts a rack controller writes there: the file is re-read when
its modification time or size changes (one ``stat`` a read otherwise); while it is missing or
unreadable the last good value holds (``power_budget_w`` before the first), said once in the
log with the reason. Telemetry failures become
:class:`~sol.kernel.errors.SensorError` naming the GPU and the NVML error; ``NotSupported``
becomes :class:`~sol.kernel.errors.Unsupported` (e.g. energy on boards without the counter).
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sol.actuators.base import HostWriter, WriteResult
from sol.actuators.nvml import LockedClocksKnob, PowerLimitKnob
from sol.facilities import GpuUtilization, ServingStats
from sol.kernel.errors import SensorError, Unsupported
from sol.linux._util import LogOnce
from sol.linux.gate import check_writer
from sol.linux.serving import PRESETS, MetricNames, PrometheusServing
from sol.safety.guard import ActuationGuard

__all__ = ["BudgetFile", "LinuxGpuActuators", "LinuxGpuSensors", "NvmlHost", "build_gpu"]

T = TypeVar("T")


class BudgetFile:
    """The node's GPU budget (mW) from a file of watts that another controller rewrites."""

    def __init__(self, path: Path, fallback_mw: int | None, log: Any) -> None:
        self.path = path
        self.value_mw = fallback_mw
        self.log = log
        self._seen: tuple[int, int] | None = None
        self.problem: str | None = None

    def read_mw(self) -> int | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._complain(f"cannot stat it: {exc.strerror or exc}")
            return self.value_mw
        key = (st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return self.value_mw
        self._seen = key
        try:
            text = self.path.read_text(encoding="ascii", errors="strict").strip()
            watts = float(text)
        except (OSError, UnicodeError, ValueError) as exc:
            self._complain(f"cannot read watts from it: {type(exc).__name__}: {exc}")
            return self.value_mw
        if not (math.isfinite(watts) and watts > 0):
            self._complain(f"{text!r} is not a number of watts > 0")
            return self.value_mw
        new = round(watts * 1000.0)
        if new != self.value_mw or self.problem is not None:
            self.log.info("linux.gpu.budget", path=str(self.path), budget_w=watts)
        self.value_mw, self.problem = new, None
        return self.value_mw

    def _complain(self, problem: str) -> None:
        if problem != self.problem:
            self.problem = problem
            kept = "none" if self.value_mw is None else f"{self.value_mw / 1000:g} W"
            self.log.warning("linux.gpu.budget_file_bad", path=str(self.path), problem=problem, kept=kept)


class NvmlHost:
    """NVML initialised once for the backend; handles and UUIDs by index."""

    def __init__(
        self, nvml: Any, *, clock: Callable[[], float], log: Any, budget_mw: int | None = None
    ) -> None:
        self.nvml = nvml
        self.clock = clock
        self.log = log
        self.once = LogOnce(log)
        self.budget_mw = budget_mw
        self.budget_file: BudgetFile | None = None
        self.serving: PrometheusServing | None = None
        self.lock = threading.Lock()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise Unsupported("gpu", f"NVML unavailable: {type(exc).__name__}: {exc}") from exc
        try:
            n = int(nvml.nvmlDeviceGetCount())
            self.handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
            self.uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in self.handles]
        except nvml.NVMLError as exc:
            self.close()
            raise Unsupported("gpu", f"NVML cannot enumerate GPUs: {type(exc).__name__}: {exc}") from exc
        if not self.handles:
            self.close()
            raise Unsupported("gpu", "NVML reports no GPU")
        self.clocks_state: dict[str, str] = {}
        self.closed = False

    def close(self) -> None:
        if getattr(self, "closed", False):
            return
        self.closed = True
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError as exc:
            self.log.warning("linux.gpu.shutdown_failed", error=str(exc))

    def handle(self, index: int) -> Any:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.handles):
            raise IndexError(f"GPU index {index!r} out of range (0..{len(self.handles) - 1})")
        return self.handles[index]

    def call(self, index: int, what: str, fn: Callable[[Any], T]) -> T:
        handle = self.handle(index)
        try:
            with self.lock:
                return fn(handle)
        except self.nvml.NVMLError as exc:
            source = f"nvml:{self.uuids[index]}:{what}"
            if getattr(exc, "value", None) == getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3):
                raise Unsupported(source, f"{type(exc).__name__}: {exc}") from exc
            raise SensorError(source, f"{type(exc).__name__}: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LinuxGpuSensors:
    """``GpuSensors`` over NVML."""

    def __init__(self, host: NvmlHost) -> None:
        self._h = host

    def count(self) -> int:
        return len(self._h.handles)

    def power_usage_mw(self, index: int) -> int:
        return int(self._h.call(index, "power", self._h.nvml.nvmlDeviceGetPowerUsage))

    def power_limit_mw(self, index: int) -> int:
        return int(self._h.call(index, "limit", self._h.nvml.nvmlDeviceGetPowerManagementLimit))

    def power_limit_constraints_mw(self, index: int) -> tuple[int, int]:
        lo, hi = self._h.call(index, "constraints", self._h.nvml.nvmlDeviceGetPowerManagementLimitConstraints)
        return int(lo), int(hi)

    def enforced_power_limit_mw(self, index: int) -> int:
        return int(self._h.call(index, "enforced", self._h.nvml.nvmlDeviceGetEnforcedPowerLimit))

    def temperature_c(self, index: int) -> int:
        nvml = self._h.nvml
        return int(
            self._h.call(
                index, "temperature", lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
            )
        )

    def utilization(self, index: int) -> GpuUtilization:
        u = self._h.call(index, "utilization", self._h.nvml.nvmlDeviceGetUtilizationRates)
        return GpuUtilization(t=self._h.clock(), gpu=int(u.gpu), memory=int(u.memory))

    def total_energy_mj(self, index: int) -> int:
        return int(self._h.call(index, "energy", self._h.nvml.nvmlDeviceGetTotalEnergyConsumption))

    def clock_range_mhz(self, index: int) -> tuple[int, int]:
        """(lowest, highest) graphics clock of the P0 state, what locked clocks may span."""
        nvml = self._h.nvml
        lo, hi = self._h.call(
            index,
            "clocks",
            lambda h: nvml.nvmlDeviceGetMinMaxClockOfPState(h, nvml.NVML_CLOCK_GRAPHICS, nvml.NVML_PSTATE_0),
        )
        return int(lo), int(hi)

    def persistence_mode(self, index: int) -> bool:
        nvml = self._h.nvml
        return bool(
            self._h.call(index, "persistence", nvml.nvmlDeviceGetPersistenceMode) == nvml.NVML_FEATURE_ENABLED
        )

    def serving(self, index: int) -> ServingStats:
        """The inference server's metrics for GPU ``index`` (``[linux.gpu] serving_urls``)."""
        if self._h.serving is None:
            raise Unsupported("gpu.serving", "no [linux.gpu] serving_urls: the servers' metrics are not read")
        return self._h.serving.read(index)

    def power_budget_mw(self) -> int | None:
        if self._h.budget_file is not None:
            return self._h.budget_file.read_mw()
        return self._h.budget_mw


class LinuxGpuActuators:
    """``GpuActuators`` of one owner: power limits and locked clocks through its writer."""

    def __init__(self, host: NvmlHost, writer: HostWriter) -> None:
        self._h = host
        self.writer = writer
        self.sensors = LinuxGpuSensors(host)
        self.guards: dict[int, ActuationGuard] = {}

    def set_power_limit(self, index: int, mw: int) -> None:
        self.set_power_limit_result(index, mw)

    def set_power_limit_result(self, index: int, mw: int) -> WriteResult:
        h = self._h
        if isinstance(mw, bool) or not isinstance(mw, int):
            raise TypeError(f"power limit must be whole milliwatts, got {mw!r}")
        lo, hi = self.sensors.power_limit_constraints_mw(index)
        if not lo <= mw <= hi:
            raise ValueError(f"power limit {mw} mW of GPU {index} outside its constraints [{lo}, {hi}] mW")
        uuid = h.uuids[index]
        check_writer(self.writer, uuid)
        if not self.sensors.persistence_mode(index):
            h.once(
                ("persistence", uuid),
                "linux.gpu.persistence_off",
                level="warning",
                gpu=uuid,
                note="the limit resets to the default when the last NVML client exits",
            )
        # Defence in depth: the guard holds the limit inside the board's constraints.
        guard = self.guards.setdefault(index, ActuationGuard(lo=lo, hi=hi))
        knob = PowerLimitKnob(h.nvml, h.handle(index), uuid, h.lock)
        result = self.writer.write(knob, str(mw), guard=guard, now=h.clock())
        if result.written is not None and not result.dry_run:
            h.log.info(
                "linux.gpu.power_limit", gpu=uuid, limit_mw=int(result.written), enforced_mw=knob.enforced()
            )
        return result

    def lock_clocks(self, index: int, min_mhz: int, max_mhz: int) -> WriteResult:
        if not 0 < min_mhz <= max_mhz:
            raise ValueError(f"locked clocks need 0 < min <= max MHz, got {min_mhz}, {max_mhz}")
        return self._clocks(index, f"{min_mhz},{max_mhz}")

    def reset_clocks(self, index: int) -> WriteResult:
        return self._clocks(index, "reset")

    def _clocks(self, index: int, raw: str) -> WriteResult:
        h = self._h
        uuid = h.uuids[index] if 0 <= index < len(h.uuids) else str(index)
        check_writer(self.writer, uuid)
        knob = LockedClocksKnob(h.nvml, h.handle(index), uuid, h.clocks_state)
        return self.writer.write(knob, raw, now=h.clock())


def build_gpu(backend: Any) -> None:
    nvml = backend._nvml_module
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            raise Unsupported(
                "gpu", "the NVML bindings are not installed (pip package nvidia-ml-py)"
            ) from exc
    budget = backend.linux.gpu.power_budget_w
    host = NvmlHost(
        nvml,
        clock=backend.clock.now,
        log=backend.log,
        budget_mw=None if budget is None else int(budget * 1000),
    )
    backend.add_closer("nvml", host.close)
    cfg = backend.linux.gpu
    if cfg.serving_urls:
        names = MetricNames(*cfg.serving_metrics) if cfg.serving_metrics else PRESETS[cfg.serving_engine]
        try:
            host.serving = PrometheusServing(
                cfg.serving_urls, names, clock=backend.clock.now, gpus=len(host.handles)
            )
            backend.report_feature(
                "gpu.serving",
                True,
                f"{cfg.serving_engine} metrics from {', '.join(sorted(set(cfg.serving_urls)))}",
            )
        except ValueError as exc:
            backend.report_feature("gpu.serving", False, str(exc))
    backend.sensors.gpu = LinuxGpuSensors(host)
    backend.register_actuators("gpu", lambda writer, cg: LinuxGpuActuators(host, writer))
    backend.report_feature("gpu", True, f"{len(host.handles)} GPU(s) via NVML: {', '.join(host.uuids)}")
    budget_file = backend.linux.gpu.budget_file
    if budget_file is not None:
        host.budget_file = BudgetFile(Path(budget_file), host.budget_mw, backend.log)
        first = host.budget_file.read_mw()
        backend.report_feature(
            "gpu.budget_file",
            host.budget_file.problem is None,
            f"{budget_file}, re-read when it changes; now "
            + ("none" if first is None else f"{first / 1000:g} W")
            + ("" if host.budget_file.problem is None else f" ({host.budget_file.problem})"),
        )
