"""NVML knobs: the board power limit and locked graphics clocks of one GPU (by UUID).

``nvmlDeviceSetPowerManagementLimit`` (NVML API reference, "Device Commands") takes
milliwatts within ``nvmlDeviceGetPowerManagementLimitConstraints`` and needs root; the
board then *enforces* the new limit after a delay (``nvmlDeviceGetEnforcedPowerLimit``). The
setting is lost when the driver unloads, which happens when the last NVML client exits
unless persistence mode is on: so the limit falls back to the default, the safe direction.

``nvmlDeviceSetGpuLockedClocks(min, max)`` pins the graphics clock range;
``nvmlDeviceResetGpuLockedClocks`` undoes it. NVML has no getter for the locked range, so the
before-image of a first lock is "reset" (sol assumes no one else locked the clocks).

NVML errors become ``OSError`` with the errno an operator expects (``NoPermission`` ->
``EPERM``, ``NotSupported`` -> ``EOPNOTSUPP``, ``InvalidArgument`` -> ``EINVAL``,
``GpuIsLost`` -> ``ENODEV``), so the :class:`~sol.actuators.base.HostWriter` reports them
like any kernel knob. Targets are GPU UUIDs (stable across reboots and re-enumeration).
"""

from __future__ import annotations

import errno
import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sol.actuators.restorers import HostRoots, Restorer

__all__ = [
    "LockedClocksKnob",
    "PowerLimitKnob",
    "nvml_errno",
    "nvml_os_error",
    "restore_clocks",
    "restore_limit",
]


def nvml_errno(nvml: Any, exc: BaseException) -> int:
    value = getattr(exc, "value", None)
    table = {
        getattr(nvml, "NVML_ERROR_NO_PERMISSION", 4): errno.EPERM,
        getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", 3): errno.EOPNOTSUPP,
        getattr(nvml, "NVML_ERROR_INVALID_ARGUMENT", 2): errno.EINVAL,
        getattr(nvml, "NVML_ERROR_GPU_IS_LOST", 15): errno.ENODEV,
        getattr(nvml, "NVML_ERROR_NOT_FOUND", 6): errno.ENODEV,
        getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12): errno.ENOENT,
        getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", 9): errno.ENODEV,
        getattr(nvml, "NVML_ERROR_UNINITIALIZED", 1): errno.EIO,
    }
    return table.get(value, errno.EIO) if isinstance(value, int) else errno.EIO


def nvml_os_error(nvml: Any, exc: BaseException, what: str) -> OSError:
    code = nvml_errno(nvml, exc)
    return OSError(code, f"{what}: NVML {type(exc).__name__}: {exc}")


@contextmanager
def _nvml_call(nvml: Any, what: str) -> Iterator[None]:
    try:
        yield
    except nvml.NVMLError as exc:
        raise nvml_os_error(nvml, exc, what) from exc


class PowerLimitKnob:
    """``nvmlDevice{Get,Set}PowerManagementLimit`` of one GPU, in mW (kind ``nvml.power_limit``)."""

    kind = "nvml.power_limit"

    def __init__(self, nvml: Any, handle: Any, uuid: str, lock: threading.Lock | None = None) -> None:
        self.nvml = nvml
        self.handle = handle
        self.uuid = uuid
        self.lock = lock or threading.Lock()

    @property
    def target(self) -> str:
        return self.uuid

    def read(self) -> str:
        with self.lock, _nvml_call(self.nvml, f"read the power limit of {self.uuid}"):
            return str(int(self.nvml.nvmlDeviceGetPowerManagementLimit(self.handle)))

    def write(self, raw: str) -> None:
        with self.lock, _nvml_call(self.nvml, f"set the power limit of {self.uuid} to {raw} mW"):
            self.nvml.nvmlDeviceSetPowerManagementLimit(self.handle, int(raw))

    def matches(self, written: str, readback: str) -> bool:
        return int(written) == int(readback)

    def enforced(self) -> int:
        with self.lock, _nvml_call(self.nvml, f"read the enforced power limit of {self.uuid}"):
            return int(self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle))


class LockedClocksKnob:
    """Locked graphics clocks of one GPU (kind ``nvml.clocks``): ``"MIN,MAX"`` MHz or
    ``"reset"``. ``state`` holds what sol set last per UUID, NVML having no getter."""

    kind = "nvml.clocks"

    def __init__(self, nvml: Any, handle: Any, uuid: str, state: dict[str, str]) -> None:
        self.nvml = nvml
        self.handle = handle
        self.uuid = uuid
        self.state = state

    @property
    def target(self) -> str:
        return self.uuid

    def read(self) -> str:
        return self.state.get(self.uuid, "reset")

    def write(self, raw: str) -> None:
        with _nvml_call(self.nvml, f"lock the clocks of {self.uuid} to {raw}"):
            _apply_clocks(self.nvml, self.handle, raw)
        self.state[self.uuid] = raw.strip()

    def matches(self, written: str, readback: str) -> bool:
        return written.strip() == readback.strip()


def _apply_clocks(nvml: Any, handle: Any, raw: str) -> None:
    if raw.strip() == "reset":
        nvml.nvmlDeviceResetGpuLockedClocks(handle)
        return
    lo, _, hi = raw.partition(",")
    nvml.nvmlDeviceSetGpuLockedClocks(handle, int(lo), int(hi))


def _with_device(target: str, action: Callable[[Any, Any], None], nvml: Any = None) -> None:
    """Init NVML in this (fresh) process, find the GPU by UUID (or index), act, shut down."""
    if nvml is None:
        nvml = importlib.import_module("pynvml")  # a restore runs without agent code, often in a new process
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise nvml_os_error(nvml, exc, "cannot initialise NVML to restore a GPU setting") from exc
    try:
        with _nvml_call(nvml, f"find GPU {target}"):
            handle = (
                nvml.nvmlDeviceGetHandleByIndex(int(target))
                if target.isdigit()
                else nvml.nvmlDeviceGetHandleByUUID(target)
            )
        with _nvml_call(nvml, f"restore GPU {target}"):
            action(nvml, handle)
    finally:
        with suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def restore_limit(target: str, before: Any, *, nvml: Any = None) -> None:
    """Put the power limit (mW) recorded before sol's first write back, and verify it."""
    value = int(before)

    def act(lib: Any, handle: Any) -> None:
        lib.nvmlDeviceSetPowerManagementLimit(handle, value)
        back = int(lib.nvmlDeviceGetPowerManagementLimit(handle))
        if back != value:
            raise OSError(errno.EIO, f"GPU {target} power limit reads back {back} mW, expected {value}")

    _with_device(target, act, nvml)


def restore_clocks(target: str, before: Any, *, nvml: Any = None) -> None:
    text = str(before) if not isinstance(before, str) else before
    _with_device(target, lambda lib, handle: _apply_clocks(lib, handle, text), nvml)


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """The knob kinds this module defines, with their restorers."""
    return {"nvml.power_limit": restore_limit, "nvml.clocks": restore_clocks}
