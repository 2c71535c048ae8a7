"""The Linux backend: real sensors and actuators over the kernel's interfaces (DESIGN §5).

``LinuxBackend.from_config(config, journal=..., clock=...)`` builds the facilities this host
has (cgroup CPU, NUMA memory, NVML GPU, page-cache FaaS) and leaves the others ``None`` with
the reason logged once. Every root (``/sys/fs/cgroup``, ``/proc``, ``/sys``) is a parameter.

The backend is imported lazily (PEP 562) so that ``sol.actuators`` modules can use the error
types here without importing the whole backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.backend import Feature
from sol.kernel.errors import SensorError, Unsupported

if TYPE_CHECKING:
    from sol.linux.backend import LinuxBackend

__all__ = ["Feature", "LinuxBackend", "SensorError", "Unsupported"]


def __getattr__(name: str) -> Any:
    if name == "LinuxBackend":
        from sol.linux.backend import LinuxBackend

        return LinuxBackend
    raise AttributeError(f"module 'sol.linux' has no attribute {name!r}")
