"""A fake NVML with the ``pynvml`` call surface, for tests and dry runs on hosts without GPUs.

It raises ``pynvml``'s own error types (``NVMLError_NotSupported``, ``NVMLError_NoPermission``,
``NVMLError_LibraryNotFound``, ...) built from the same error codes, so code that handles the
real library handles the fake identically. Devices model what the power-capping agent reads:
draw, limit, constraints, an enforced limit that trails the limit by ``enforce_delay`` reads,
temperature, utilisation, energy and persistence mode. ``fail`` injects an error code per
call name (``{"nvmlDeviceSetPowerManagementLimit": NVML_ERROR_NO_PERMISSION}``).

``FileBackedNvml`` keeps the boards (and ``fail``) in a JSON file, so that separate processes
see the same boards: a daemon that sets limits and is SIGKILLed, then ``sol restore``.
``write_pynvml_shim`` writes a ``pynvml`` module that serves such a file, for a process
started with its directory first on ``PYTHONPATH``.

>>> nvml = FakeNvml([FakeGpu(uuid="GPU-0")])
>>> nvml.nvmlInit()
>>> h = nvml.nvmlDeviceGetHandleByIndex(0)
>>> nvml.nvmlDeviceGetPowerManagementLimitConstraints(h)
(100000, 700000)
>>> nvml.nvmlDeviceSetPowerManagementLimit(h, 50_000)
Traceback (most recent call last):
...
pynvml.NVMLError_InvalidArgument: Invalid Argument
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml

__all__ = ["FakeGpu", "FakeNvml", "FileBackedNvml", "write_pynvml_shim"]


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 350_000
    limit_mw: int = 700_000
    min_mw: int = 100_000
    max_mw: int = 700_000
    default_mw: int = 700_000
    enforced_mw: int = 700_000
    #: reads of the enforced limit before it reaches a new limit (the driver's delay)
    enforce_delay: int = 0
    temperature_c: int = 45
    util_gpu: int = 30
    util_memory: int = 20
    energy_mj: int = 1_000_000
    persistence: bool = True
    locked_clocks: tuple[int, int] | None = None
    #: the P0 graphics clock range (MHz)
    min_clock_mhz: int = 345
    max_clock_mhz: int = 1980
    _pending: int = field(default=0, repr=False)


class FakeNvml:
    """Module-like: ``nvml.nvmlInit()``, ``nvml.NVMLError``, ``nvml.NVML_ERROR_*``, ..."""

    NVMLError = pynvml.NVMLError
    NVML_SUCCESS = pynvml.NVML_SUCCESS
    NVML_ERROR_UNINITIALIZED = pynvml.NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = pynvml.NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = pynvml.NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = pynvml.NVML_ERROR_GPU_IS_LOST
    NVML_FEATURE_ENABLED = pynvml.NVML_FEATURE_ENABLED
    NVML_FEATURE_DISABLED = pynvml.NVML_FEATURE_DISABLED
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_GRAPHICS = pynvml.NVML_CLOCK_GRAPHICS
    NVML_PSTATE_0 = pynvml.NVML_PSTATE_0

    def __init__(self, gpus: list[FakeGpu], *, fail: dict[str, int] | None = None) -> None:
        self.gpus = gpus
        self.fail: dict[str, int] = dict(fail or {})
        self.initialised = 0
        self.calls: list[str] = []
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------
    def _enter(self, name: str, *, needs_init: bool = True) -> None:
        self.calls.append(name)
        code = self.fail.get(name)
        if code is not None:
            raise pynvml.NVMLError(code)
        if needs_init and self.initialised <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any) -> FakeGpu:
        if not isinstance(handle, FakeGpu) or handle not in self.gpus:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    # -- init --------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._enter("nvmlInit", needs_init=False)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for g in self.gpus:
            if g.uuid == text:
                return g
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._enter("nvmlDeviceGetUUID")
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._enter("nvmlDeviceGetName")
        return self._gpu(handle).name

    # -- telemetry ---------------------------------------------------------------------
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        return self._gpu(handle).power_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit")
        return self._gpu(handle).limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> tuple[int, int]:
        self._enter("nvmlDeviceGetPowerManagementLimitConstraints")
        g = self._gpu(handle)
        return g.min_mw, g.max_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetPowerManagementDefaultLimit")
        return self._gpu(handle).default_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit")
        g = self._gpu(handle)
        with self._lock:
            if g.enforced_mw != g.limit_mw:
                if g._pending <= 0:
                    g.enforced_mw = g.limit_mw
                else:
                    g._pending -= 1
        return g.enforced_mw

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature")
        return self._gpu(handle).temperature_c

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> SimpleNamespace:
        self._enter("nvmlDeviceGetUtilizationRates")
        g = self._gpu(handle)
        return SimpleNamespace(gpu=g.util_gpu, memory=g.util_memory)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        return self._gpu(handle).energy_mj

    def nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        self._enter("nvmlDeviceGetPersistenceMode")
        enabled: int = (
            pynvml.NVML_FEATURE_ENABLED if self._gpu(handle).persistence else pynvml.NVML_FEATURE_DISABLED
        )
        return enabled

    def nvmlDeviceGetMinMaxClockOfPState(self, handle: Any, clock_type: int, pstate: int) -> tuple[int, int]:
        self._enter("nvmlDeviceGetMinMaxClockOfPState")
        g = self._gpu(handle)
        return g.min_clock_mhz, g.max_clock_mhz

    # -- control -----------------------------------------------------------------------
    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, limit: int) -> None:
        self._enter("nvmlDeviceSetPowerManagementLimit")
        g = self._gpu(handle)
        if not g.min_mw <= int(limit) <= g.max_mw:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            g.limit_mw = int(limit)
            g._pending = g.enforce_delay

    def nvmlDeviceSetGpuLockedClocks(self, handle: Any, min_mhz: int, max_mhz: int) -> None:
        self._enter("nvmlDeviceSetGpuLockedClocks")
        g = self._gpu(handle)
        if min_mhz > max_mhz or min_mhz < 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        g.locked_clocks = (int(min_mhz), int(max_mhz))

    def nvmlDeviceResetGpuLockedClocks(self, handle: Any) -> None:
        self._enter("nvmlDeviceResetGpuLockedClocks")
        self._gpu(handle).locked_clocks = None


class FileBackedNvml(FakeNvml):
    """A :class:`FakeNvml` whose boards live in ``path`` (JSON: ``{"gpus": [...], "fail":
    {...}}``), read before every call and written after every change."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        data = json.loads(self.path.read_text())
        super().__init__([_gpu_from(d) for d in data["gpus"]], fail=data.get("fail"))

    @staticmethod
    def create(path: str | os.PathLike[str], gpus: list[FakeGpu], fail: dict[str, int] | None = None) -> Path:
        out = Path(path)
        out.write_text(json.dumps({"gpus": [dataclasses.asdict(g) for g in gpus], "fail": fail or {}}))
        return out

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[FakeGpu]:
        return [_gpu_from(d) for d in json.loads(Path(path).read_text())["gpus"]]

    def _enter(self, name: str, *, needs_init: bool = True) -> None:
        data = json.loads(self.path.read_text())
        for g, d in zip(self.gpus, data["gpus"], strict=True):
            fresh = _gpu_from(d)
            for f in dataclasses.fields(FakeGpu):
                setattr(g, f.name, getattr(fresh, f.name))
        self.fail = dict(data.get("fail") or {})
        super()._enter(name, needs_init=needs_init)

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"gpus": [dataclasses.asdict(g) for g in self.gpus], "fail": self.fail}))
        os.replace(tmp, self.path)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        out = super().nvmlDeviceGetEnforcedPowerLimit(handle)
        self._save()
        return out

    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, limit: int) -> None:
        super().nvmlDeviceSetPowerManagementLimit(handle, limit)
        self._save()

    def nvmlDeviceSetGpuLockedClocks(self, handle: Any, min_mhz: int, max_mhz: int) -> None:
        super().nvmlDeviceSetGpuLockedClocks(handle, min_mhz, max_mhz)
        self._save()

    def nvmlDeviceResetGpuLockedClocks(self, handle: Any) -> None:
        super().nvmlDeviceResetGpuLockedClocks(handle)
        self._save()


def _gpu_from(d: dict[str, Any]) -> FakeGpu:
    clocks = d.get("locked_clocks")
    return FakeGpu(**{**d, "locked_clocks": tuple(clocks) if clocks else None})


_SHIM = """\"\"\"pynvml for tests: serves the fake boards of {state!r} (sol.linux.fake_nvml).\"\"\"
import importlib.machinery
import importlib.util
import os
import sys

_this = sys.modules[__name__]
_here = os.path.dirname(os.path.abspath(__file__))
_path = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_spec = importlib.machinery.PathFinder.find_spec("pynvml", _path)
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
sys.modules["pynvml"] = _real  # what sol.linux.fake_nvml imports for NVML's error types
from sol.linux.fake_nvml import FileBackedNvml  # noqa: E402

_fake = FileBackedNvml({state!r})
for _name in dir(_real):
    if not _name.startswith("__"):
        globals()[_name] = getattr(_real, _name)
for _name in dir(_fake):
    if _name.startswith("nvml"):
        globals()[_name] = getattr(_fake, _name)
sys.modules["pynvml"] = _this
"""


def write_pynvml_shim(directory: str | os.PathLike[str], state: str | os.PathLike[str]) -> Path:
    """Write ``directory/pynvml.py`` serving the boards of ``state`` (a FileBackedNvml file)."""
    out = Path(directory) / "pynvml.py"
    out.write_text(_SHIM.format(state=str(Path(state).resolve())))
    return out
