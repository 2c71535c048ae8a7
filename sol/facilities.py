"""The sensor and actuator interfaces of each node facility (DESIGN §5).

Agents see a node only through ``ctx.sensors.<facility>`` and ``ctx.actuators.<facility>``.
Each facility has one interface here and two implementations: the simulated twin
(``sol.sim``) and the Linux one (cgroup, PSI, schedstat, DAMON sysfs, NUMA, NVML, page
cache). The shapes follow what the real kernel and NVML interfaces give, so that the Linux
backend can implement them without inventing data:

========  ===============================================  ==================================
facility  sensor                                           real source
========  ===============================================  ==================================
cpu       ``usage(group)`` mean cores since the last call  cgroup ``cpu.stat`` ``usage_usec``
cpu       ``pressure(group)`` some/full avg10/60/300       cgroup v2 ``cpu.pressure`` (PSI)
cpu       ``run_queue_delay(group)``                       ``/proc/<pid>/schedstat`` field 2
cpu       ``set_harvest_cores(n)``                         ``cpuset.cpus`` of the harvest group
memory    ``regions()`` start/end/nr_accesses/age          DAMON sysfs ``tried_regions``
memory    ``nodes()`` per-NUMA-node used/total             ``/sys/devices/system/node/*/meminfo``
memory    ``placement(start, end)`` bytes per node         ``move_pages(2)`` status query
memory    ``migrate(start, end, to_node)``                 ``move_pages(2)`` / DAMOS migrate
gpu       power, limit, constraints, enforced, temp, util  NVML ``nvmlDeviceGet*``
gpu       ``set_power_limit(index, mw)``                   ``nvmlDeviceSetPowerManagementLimit``
faas      ``residency(name)`` resident bytes               ``mincore(2)`` on the object file
faas      ``prewarm(name)`` / ``evict(name)``              ``posix_fadvise`` WILLNEED/DONTNEED
========  ===============================================  ==================================

Every sample carries ``t``: the runtime clock's time (virtual or monotonic seconds), never
wall time. Sizes are bytes, power milliwatts (as NVML), temperatures degrees Celsius.
A facility the node lacks is ``None`` in the namespace, never a stub that returns zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload, runtime_checkable

__all__ = [
    "FACILITIES",
    "FACILITY_NAMES",
    "Actuators",
    "CacheObject",
    "CpuActuators",
    "CpuPressure",
    "CpuSensors",
    "CpuUsage",
    "DamonRegion",
    "DamonSnapshot",
    "FaasActuators",
    "FaasSensors",
    "Facility",
    "FacilityMissing",
    "GpuActuators",
    "GpuSensors",
    "GpuUtilization",
    "Invocation",
    "MemoryActuators",
    "MemoryPressure",
    "MemorySensors",
    "Migration",
    "NumaNode",
    "Prewarm",
    "Residency",
    "RunQueueDelay",
    "Sensors",
    "facility",
]

#: The CPU groups every CPU facility knows: the latency-sensitive primaries and the batch
#: group that receives harvested cores.
CpuGroup = Literal["primary", "harvest"]
CPU_GROUPS: tuple[str, ...] = ("primary", "harvest")


# ---------------------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU time a group used, as the mean number of busy cores over ``interval`` seconds.

    The interval is the time since the previous ``usage()`` call for the same group (the
    delta of the cgroup's cumulative ``usage_usec``); ``total_core_s`` is that cumulative
    counter, so a caller with its own cadence can take its own deltas.
    """

    t: float
    group: str
    cores: float
    interval: float
    total_core_s: float


@dataclass(frozen=True, slots=True)
class CpuPressure:
    """Pressure stall information of a group's CPU, as in ``cpu.pressure``.

    ``some_*`` is the share of time (0..1, not percent as the file prints it) in which at
    least one runnable task of the group waited for a CPU; ``full_*`` the share in which
    all of them did. ``*_total_s`` are the cumulative stall times.

    ``scope`` says whose tasks these are: ``"group"``, the group's own; ``"host"``, every
    task of the host, when the kernel keeps no pressure file for the group (a cgroup v1
    host: ``/proc/pressure/cpu``). A host figure counts the waiting of every group, the
    harvest group's own batch tasks included, so it cannot tell whether the primaries
    suffer: an agent judging harm to the primaries must not read it as theirs.
    """

    t: float
    group: str
    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_s: float
    full_avg10: float
    full_avg60: float
    full_avg300: float
    full_total_s: float
    scope: str = "group"


@dataclass(frozen=True, slots=True)
class RunQueueDelay:
    """Time the group's tasks spent runnable but waiting on a run queue (schedstat).

    ``total_s`` is cumulative (summed over tasks, so it can grow faster than the clock);
    ``rate`` is its mean growth per second since the previous call for the group.
    """

    t: float
    group: str
    total_s: float
    rate: float
    interval: float


@runtime_checkable
class CpuSensors(Protocol):
    def total_cores(self) -> int:
        """Cores of the node that primaries and the harvest group share."""
        ...

    def usage(self, group: str) -> CpuUsage:
        """Mean cores ``group`` used since the previous call for that group."""
        ...

    def pressure(self, group: str) -> CpuPressure: ...

    def run_queue_delay(self, group: str) -> RunQueueDelay: ...


@runtime_checkable
class CpuActuators(Protocol):
    def set_harvest_cores(self, n: int) -> None:
        """Grant ``n`` whole cores to the harvest group; the primaries keep the others.

        ``0 <= n <= total_cores()``, else ``ValueError`` and nothing changes.
        """
        ...

    def harvest_cores(self) -> int:
        """The cores currently granted to the harvest group."""
        ...


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DamonRegion:
    """One DAMON monitoring region: ``[start, end)`` and its access counters.

    ``nr_accesses`` counts the sampling intervals of the last aggregation interval in which
    DAMON saw the region's sampled page accessed (0..``max_nr_accesses``); ``age`` counts
    the aggregation intervals the region kept a similar access frequency.
    """

    start: int
    end: int
    nr_accesses: int
    age: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class DamonSnapshot:
    """The regions of the last complete aggregation interval ``[t_start, t_end)``."""

    t: float
    t_start: float
    t_end: float
    max_nr_accesses: int
    regions: tuple[DamonRegion, ...]


@dataclass(frozen=True, slots=True)
class NumaNode:
    """A memory node: ``tier`` is ``"local"`` (DRAM next to the CPUs) or ``"far"``
    (CXL-attached or a memory-only NUMA node)."""

    t: float
    node: int
    tier: str
    total_bytes: int
    used_bytes: int

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes


@dataclass(frozen=True, slots=True)
class Migration:
    """The outcome of one ``migrate()``: what moved and when the copy is done.

    ``bytes_moved`` were accepted (``move_pages`` status 0); ``bytes_failed`` could not be
    (destination full: ``-ENOMEM``); ``bytes_already`` were on the node. ``done_at`` is the
    clock time the copy completes (synchronous ``move_pages``: the call's return time).
    """

    t: float
    start: int
    end: int
    to_node: int
    bytes_moved: int
    bytes_failed: int
    bytes_already: int
    done_at: float


@dataclass(frozen=True, slots=True)
class MemoryPressure:
    """How much the managed workload's time is lost waiting on memory (optional sensor
    ``pressure()`` of a memory facility; agents check for it with ``getattr``).

    ``stall_total_s`` is cumulative: take deltas over your own interval. In the simulator it
    is the workload's extra run time from far-tier accesses and migration (``scope``
    ``"workload"``); on Linux the memory PSI ``some`` total of the workload's cgroup
    (``"group"``) or, where the kernel keeps none for it, of the whole host (``"host"``).
    ``some_avg10`` is the share of the last ~10 s stalled (0..1).
    """

    t: float
    stall_total_s: float
    some_avg10: float
    scope: str = "workload"


@runtime_checkable
class MemorySensors(Protocol):
    """The memory of one or several workloads (each its own address space) on a node's tiers.

    ``target`` names a workload (``targets()``, an optional sensor agents check for with
    ``getattr``: the names in config order); left out, it is the first, so a caller that
    manages one workload names none. An unknown name is a ``ValueError`` naming the known ones.
    ``pressure(target=None)`` (optional, see :class:`MemoryPressure`) takes it too.
    """

    def regions(self, target: str | None = None) -> DamonSnapshot:
        """DAMON's regions of the workload as of the last complete aggregation interval."""
        ...

    def nodes(self) -> tuple[NumaNode, ...]:
        """The node's memory nodes (shared by every workload)."""
        ...

    def placement(self, start: int, end: int, target: str | None = None) -> Mapping[int, int]:
        """Bytes of the workload's ``[start, end)`` on each node id (pages not present are left out)."""
        ...


@runtime_checkable
class MemoryActuators(Protocol):
    def migrate(self, start: int, end: int, to_node: int, target: str | None = None) -> Migration:
        """Move the pages of the workload's ``[start, end)`` to ``to_node``; unknown node or
        target -> ``ValueError``."""
        ...


# ---------------------------------------------------------------------------------------
# GPU (mirrors NVML; indices are NVML device indices)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuUtilization:
    """``nvmlDeviceGetUtilizationRates``: percent of the last sample period in which a
    kernel ran (``gpu``) and in which device memory was read or written (``memory``)."""

    t: float
    gpu: int
    memory: int


@dataclass(frozen=True, slots=True)
class ServingStats:
    """What the inference server on one GPU reports (optional GPU sensor ``serving(index)``;
    on a real host vLLM's or TGI's Prometheus metrics, ``sol.linux.serving``).

    ``running``: requests in the batch being decoded; ``waiting``: requests queued for their
    prompt (prefill); the two token counters are cumulative (take deltas over your own
    interval): prompt tokens prefilled and tokens generated since the server started.
    """

    t: float
    running: int
    waiting: int
    prompt_tokens_total: float
    generation_tokens_total: float


@runtime_checkable
class GpuSensors(Protocol):
    def count(self) -> int: ...

    def power_usage_mw(self, index: int) -> int:
        """Board power draw, averaged by the driver over its sample period."""
        ...

    def power_limit_mw(self, index: int) -> int:
        """The limit last set (``nvmlDeviceGetPowerManagementLimit``)."""
        ...

    def power_limit_constraints_mw(self, index: int) -> tuple[int, int]:
        """(min, max) settable limit (``nvmlDeviceGetPowerManagementLimitConstraints``)."""
        ...

    def enforced_power_limit_mw(self, index: int) -> int:
        """The limit the board enforces now (``nvmlDeviceGetEnforcedPowerLimit``): it
        trails ``power_limit_mw`` by the enforcement delay."""
        ...

    def temperature_c(self, index: int) -> int: ...

    def utilization(self, index: int) -> GpuUtilization: ...

    def total_energy_mj(self, index: int) -> int:
        """Energy since the driver loaded (``nvmlDeviceGetTotalEnergyConsumption``)."""
        ...

    def power_budget_mw(self) -> int | None:
        """The node's GPU power budget (from config or the BMC), ``None`` when unbounded."""
        ...


@runtime_checkable
class GpuActuators(Protocol):
    def set_power_limit(self, index: int, mw: int) -> None:
        """Set the board power limit; outside the constraints -> ``ValueError`` (NVML's
        ``NVML_ERROR_INVALID_ARGUMENT``) and nothing changes."""
        ...


# ---------------------------------------------------------------------------------------
# FaaS local cache
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheObject:
    """A cacheable object of the FaaS platform (a function's package, an app's data)."""

    name: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Residency:
    """``mincore(2)`` over the object: how many of its bytes are in memory now."""

    t: float
    name: str
    resident_bytes: int
    size_bytes: int

    @property
    def warm(self) -> bool:
        return self.size_bytes > 0 and self.resident_bytes >= self.size_bytes


@dataclass(frozen=True, slots=True)
class Invocation:
    """One function invocation the platform started: ``object`` is the cache object it needs."""

    t: float
    function: str
    object: str


@dataclass(frozen=True, slots=True)
class Prewarm:
    """The outcome of ``prewarm()``: bytes queued for read-ahead and when they are in."""

    t: float
    name: str
    bytes_queued: int
    ready_at: float


@runtime_checkable
class FaasSensors(Protocol):
    def objects(self) -> Sequence[CacheObject]: ...

    def residency(self, name: str) -> Residency:
        """Unknown name -> ``KeyError``."""
        ...

    def invocations(self, since: float) -> Sequence[Invocation]:
        """Invocations started at or after ``since`` (the platform keeps a bounded history)."""
        ...


@runtime_checkable
class FaasActuators(Protocol):
    def prewarm(self, name: str) -> Prewarm:
        """Start loading the object (``POSIX_FADV_WILLNEED``); already warm -> 0 bytes."""
        ...

    def evict(self, name: str) -> int:
        """Drop the object from memory (``POSIX_FADV_DONTNEED``); returns bytes dropped."""
        ...


# ---------------------------------------------------------------------------------------
# The facilities, registered once; the typed views agents get
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facility:
    """One node facility: its name (the attribute in ``ctx.sensors`` / ``ctx.actuators``) and
    the interfaces its sensors and actuators implement on every backend."""

    name: str
    sensors: type
    actuators: type
    summary: str


#: Every facility, in presentation order: the one list backends, the runtime and docs use.
FACILITIES: tuple[Facility, ...] = (
    Facility("cpu", CpuSensors, CpuActuators, "CPU usage, pressure and run-queue delay; harvest cores"),
    Facility("memory", MemorySensors, MemoryActuators, "DAMON regions, NUMA nodes; page migration"),
    Facility("gpu", GpuSensors, GpuActuators, "NVML power, limits, temperature; power limits"),
    Facility("faas", FaasSensors, FaasActuators, "function cache objects and invocations; prewarm"),
)
FACILITY_NAMES: tuple[str, ...] = tuple(f.name for f in FACILITIES)
FacilityName = Literal["cpu", "memory", "gpu", "faas"]


def facility(name: str) -> Facility:
    """The facility called ``name``; an unknown name is a ``LookupError`` listing the known.

    >>> facility("gpu").sensors.__name__
    'GpuSensors'
    """
    for f in FACILITIES:
        if f.name == name:
            return f
    raise LookupError(f"unknown facility {name!r}; known: {', '.join(FACILITY_NAMES)}")


class FacilityMissing(LookupError):
    """An agent needs a facility this node does not have: the agent does not apply here.

    Raised by :meth:`Sensors.require` / :meth:`Actuators.require` (typically in ``setup``); the
    runtime reports the agent as not applicable rather than failed.
    """

    def __init__(self, name: str, side: str, why: str = "") -> None:
        self.facility = name
        detail = f" ({why})" if why else ""
        super().__init__(f"this node has no {name} {side}{detail}")


@dataclass(slots=True)
class Sensors:
    """``ctx.sensors``: one attribute per facility, ``None`` where the node lacks it.

    ``require`` gives the facility typed and non-optional, or raises :class:`FacilityMissing`:

    >>> s = Sensors()
    >>> s.available()
    ()
    >>> s.require("cpu")
    Traceback (most recent call last):
    ...
    sol.facilities.FacilityMissing: this node has no cpu sensors
    """

    cpu: CpuSensors | None = None
    memory: MemorySensors | None = None
    gpu: GpuSensors | None = None
    faas: FaasSensors | None = None

    def available(self) -> tuple[str, ...]:
        return tuple(n for n in FACILITY_NAMES if getattr(self, n) is not None)

    @overload
    def require(self, name: Literal["cpu"]) -> CpuSensors: ...
    @overload
    def require(self, name: Literal["memory"]) -> MemorySensors: ...
    @overload
    def require(self, name: Literal["gpu"]) -> GpuSensors: ...
    @overload
    def require(self, name: Literal["faas"]) -> FaasSensors: ...
    def require(self, name: str) -> object:
        value = getattr(self, facility(name).name)
        if value is None:
            raise FacilityMissing(name, "sensors")
        return value


@dataclass(slots=True)
class Actuators:
    """``ctx.actuators``: one attribute per facility, ``None`` where the node lacks it (or the
    agent may not write it). On Linux also ``cgroups`` (logical cgroup resources), ``tc``
    (HTB classes) and ``writer`` (the agent's gated host writer), for agents beyond the four
    facilities; ``None`` on the simulator."""

    cpu: CpuActuators | None = None
    memory: MemoryActuators | None = None
    gpu: GpuActuators | None = None
    faas: FaasActuators | None = None
    cgroups: Any = None
    tc: Any = None
    writer: Any = None

    def available(self) -> tuple[str, ...]:
        return tuple(n for n in FACILITY_NAMES if getattr(self, n) is not None)

    @overload
    def require(self, name: Literal["cpu"]) -> CpuActuators: ...
    @overload
    def require(self, name: Literal["memory"]) -> MemoryActuators: ...
    @overload
    def require(self, name: Literal["gpu"]) -> GpuActuators: ...
    @overload
    def require(self, name: Literal["faas"]) -> FaasActuators: ...
    def require(self, name: str) -> object:
        value = getattr(self, facility(name).name)
        if value is None:
            raise FacilityMissing(name, "actuators")
        return value
