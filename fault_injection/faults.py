"""The named faults: what fails, at which boundary, with which parameters.

A fault is data: a name, the boundary its failpoint sits at, the mechanism that injects it and
the parameters of that mechanism. The failpoints (``sol.fault_injection.failpoints``) and the
node hooks (``sol.fault_injection.environment``) implement the mechanisms; the harness decides
when a fault is active (its window on the run's :class:`Timeline`). No fault edits agent code:
sensor and actuator faults wrap the agent's view of the node, predictor faults wrap ``learn`` /
``predict`` on the agent instance, environment faults drive the simulated node.

>>> get_fault("data.nan").boundary
'sensor'
>>> get_fault("act.eio").with_params(p=0.25).params["p"]
0.25
>>> try:
...     get_fault("data.nope")
... except LookupError as exc:
...     print(str(exc)[:40])
unknown fault 'data.nope'; known faults:
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CATEGORIES",
    "FAULTS",
    "REDUCED_FAULTS",
    "Fault",
    "Timeline",
    "UnknownFault",
    "get_fault",
    "list_faults",
]

Category = Literal["data", "model", "scheduling", "actuation", "process", "environment"]
Boundary = Literal["sensor", "predictor", "scheduler", "actuator", "process", "node"]
CATEGORIES: tuple[Category, ...] = ("data", "model", "scheduling", "actuation", "process", "environment")

#: Runtime responses a fault may require: a default reason, or these two.
MITIGATE = "mitigate"
QUARANTINE = "quarantine"


class UnknownFault(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")


@dataclass(frozen=True, slots=True)
class Timeline:
    """When things happen in one run (virtual seconds from the start of the run).

    The fault is active over ``[onset, onset + length)``. Over the second half of that window
    the node's load rises by ``surge`` (every facility: CPU demand, memory access rates, LLM
    requests, FaaS invocations), in the fault runs *and* in the fault-free baselines: a fault
    that blinds or freezes an agent only hurts when the workload moves while it lasts.
    ``surge=1`` turns this off.

    >>> Timeline().end, Timeline().surge_at
    (180.0, 120.0)
    """

    duration: float = 300.0
    onset: float = 60.0
    length: float = 120.0
    surge: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.onset < self.onset + self.length <= self.duration:
            raise ValueError(
                f"need 0 < onset < onset + length <= duration, got onset={self.onset} "
                f"length={self.length} duration={self.duration}"
            )
        if self.surge <= 0:
            raise ValueError(f"surge is a load factor > 0, got {self.surge}")

    @property
    def end(self) -> float:
        return self.onset + self.length

    @property
    def surge_at(self) -> float:
        return self.onset + self.length / 2

    def active(self, t: float) -> bool:
        return self.onset <= t < self.end


#: The timeline of the reduced matrix CI runs: shorter, same shape.
REDUCED_TIMELINE = Timeline(duration=90.0, onset=20.0, length=40.0)


@dataclass(frozen=True, slots=True)
class Fault:
    """One named fault. ``params`` are the mechanism's parameters (with their defaults)."""

    name: str
    category: Category
    boundary: Boundary
    mechanism: str
    summary: str
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    #: runtime responses of which at least one must follow once the fault is exercised
    #: (default reasons, "mitigate", "quarantine"); empty when it depends on the agent's own
    #: validate/assess (then the §4 invariants still hold, and the report shows the response)
    requires: frozenset[str] = frozenset()
    #: the facility a node fault drives ("*": every facility present)
    facility: str | None = None
    #: a fault that harms the daemon itself rather than the node: the harness's measure of
    #: that harm (a :class:`~sol.fault_injection.harness.RunRecord` ``daemon`` key), which
    #: then stands in for the agent's harm metric (``escaped_core_s``, ``held_mib``)
    daemon_metric: str | None = None

    def with_params(self, **overrides: float) -> Fault:
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(
                f"fault {self.name} has no parameter(s) {unknown}; its parameters: {sorted(self.params)}"
            )
        merged = dict(self.params)
        merged.update({k: float(v) for k, v in overrides.items()})
        return replace(self, params=MappingProxyType(merged))

    def describe_params(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.params.items()) or "-"


def _p(**kw: float) -> Mapping[str, float]:
    return MappingProxyType({k: float(v) for k, v in kw.items()})


_ERR = frozenset({"error", QUARANTINE})
_ACT = frozenset({MITIGATE, QUARANTINE})

_ALL: tuple[Fault, ...] = (
    # -- data: the sensor boundary ----------------------------------------------------
    Fault(
        "data.missing",
        "data",
        "sensor",
        "missing",
        "samples missing: a read fails with ENODATA with probability p",
        _p(p=0.5),
        _ERR,
    ),
    Fault("data.nan", "data", "sensor", "nan", "readings are NaN", _p()),
    Fault("data.inf", "data", "sensor", "inf", "readings are +inf", _p()),
    Fault(
        "data.out_of_range",
        "data",
        "sensor",
        "out_of_range",
        "readings are -1, the 'unavailable' sentinel of kernel and NVML counters",
        _p(value=-1.0),
    ),
    Fault(
        "data.stale",
        "data",
        "sensor",
        "stale",
        "the sensor serves the sample of the fault's onset again, old timestamp included",
        _p(),
    ),
    Fault(
        "data.frozen",
        "data",
        "sensor",
        "frozen",
        "the value is stuck at the onset's while timestamps stay fresh (a stuck counter)",
        _p(),
    ),
    Fault(
        "data.frozen_idle",
        "data",
        "sensor",
        "frozen_idle",
        "the primaries' CPU usage counter sticks at its onset value, so they read idle, while "
        "their run-queue delay and every other counter keep moving (a stuck cpuacct.usage)",
        _p(),
    ),
    Fault(
        "data.noise",
        "data",
        "sensor",
        "noise",
        "a noise burst: v + N(0, (sigma * (|v| + 1))^2)",
        _p(sigma=1.0),
    ),
    Fault(
        "data.garbage",
        "data",
        "sensor",
        "garbage",
        "the procfs/sysfs file holds garbage text: reads raise the Linux backend's SensorError",
        _p(),
        _ERR,
    ),
    # -- model: the predictor boundary ------------------------------------------------
    Fault(
        "model.learn_error",
        "model",
        "predictor",
        "learn_error",
        "learn() raises",
        _p(),
        _ERR,
    ),
    Fault(
        "model.predict_error",
        "model",
        "predictor",
        "predict_error",
        "predict() raises",
        _p(),
        _ERR,
    ),
    Fault(
        "model.learn_hang",
        "model",
        "predictor",
        "learn_hang",
        "learn() never returns (virtual time: consumes forever)",
        _p(),
        frozenset({"error", "expired", QUARANTINE}),
    ),
    Fault(
        "model.adversarial",
        "model",
        "predictor",
        "adversarial",
        "predict() returns the most aggressive decision (the agent's own predict still runs)",
        _p(),
    ),
    Fault(
        "model.drift",
        "model",
        "node",
        "drift",
        "workload drift: the load changes regime (x factor) at onset and stays there",
        _p(factor=2.0),
        facility="*",
    ),
    # -- scheduling -------------------------------------------------------------------
    Fault(
        "sched.model_starved",
        "scheduling",
        "scheduler",
        "model_stall",
        "the model loop is starved of CPU: every model-side call takes stall_s CPU seconds",
        _p(stall_s=0.5),
        frozenset({"expired", "error", QUARANTINE}),
    ),
    Fault(
        "sched.actuator_delayed",
        "scheduling",
        "actuator",
        "actuator_delay",
        "the actuator loop runs late: each write blocks and lands delay_s later",
        _p(delay_s=3.0),
    ),
    # -- actuation --------------------------------------------------------------------
    Fault("act.eperm", "actuation", "actuator", "eperm", "writes fail with EPERM", _p(), _ACT),
    Fault(
        "act.eio",
        "actuation",
        "actuator",
        "eio",
        "writes fail with EIO with probability p (transient)",
        _p(p=0.5),
        _ACT,
    ),
    Fault(
        "act.hang",
        "actuation",
        "actuator",
        "write_hang",
        "writes hang (virtual time: forever) and never land",
        _p(),
        _ACT,
    ),
    Fault(
        "act.not_applied",
        "actuation",
        "actuator",
        "not_applied",
        "writes return success but are silently not applied (read-back mismatch)",
        _p(),
    ),
    Fault(
        "act.partial",
        "actuation",
        "actuator",
        "partial",
        "writes apply only a share of the change",
        _p(share=0.5),
    ),
    # -- process ----------------------------------------------------------------------
    Fault(
        "proc.sigkill",
        "process",
        "process",
        "sigkill",
        "the daemon is SIGKILLed mid-actuation (after a write lands) when the surge starts; "
        "systemd runs `sol restore` (ExecStopPost) and restarts it restart_s later",
        _p(restart_s=30.0),
        frozenset({"restore"}),
    ),
    Fault(
        "proc.journal_emptied",
        "process",
        "process",
        "sigkill",
        "as proc.sigkill, and the undo journal is emptied before `sol restore` runs (a full disk, "
        "an operator's mistake): the journal's state file must bring every setting back",
        _p(restart_s=30.0, empty_journal=1.0),
        frozenset({"restore"}),
    ),
    Fault(
        "proc.crash_loop",
        "process",
        "process",
        "crash_loop",
        "the agent crashes in every callback (mitigate and clean_up too)",
        _p(),
        frozenset({QUARANTINE}),
    ),
    Fault(
        "proc.thread_escape",
        "process",
        "process",
        "thread_escape",
        "the agent's collect() starts a thread that spins until the daemon ends: a core "
        "charged to no agent's cpu_budget, outside every timeout and quarantine",
        _p(),
        frozenset({QUARANTINE}),
        daemon_metric="escaped_core_s",
    ),
    Fault(
        "proc.memory_leak",
        "process",
        "process",
        "memory_leak",
        "the agent's collect() keeps mib_per_tick MiB more at every model tick (up to cap_mib, "
        "so that the unprotected run does not take the machine's memory)",
        _p(mib_per_tick=8.0, cap_mib=512.0),
        frozenset({QUARANTINE}),
        daemon_metric="held_mib",
    ),
    # -- environment: the node itself ---------------------------------------------------
    Fault(
        "env.load_spike",
        "environment",
        "node",
        "load_spike",
        "a load spike: every facility's load x factor for spike_s from onset",
        _p(factor=5.0, spike_s=20.0),
        facility="*",
    ),
    Fault(
        "env.memory_pressure",
        "environment",
        "node",
        "memory_pressure",
        "memory-pressure spike: access rates x factor and cold memory warms up, for the window",
        _p(factor=4.0, floor=0.3),
        facility="memory",
    ),
    Fault(
        "env.power_emergency",
        "environment",
        "node",
        "power_emergency",
        "power-budget emergency: the GPU power budget drops to share of itself for the window",
        _p(share=0.5),
        facility="gpu",
    ),
)

#: name -> fault, in presentation order.
FAULTS: Mapping[str, Fault] = MappingProxyType({f.name: f for f in _ALL})

#: The faults of the reduced matrix that CI runs (every category, every boundary).
REDUCED_FAULTS: tuple[str, ...] = (
    "data.nan",
    "data.out_of_range",
    "data.stale",
    "data.frozen",
    "data.frozen_idle",
    "data.garbage",
    "model.learn_error",
    "model.learn_hang",
    "model.adversarial",
    "sched.model_starved",
    "act.eio",
    "act.not_applied",
    "proc.sigkill",
    "proc.journal_emptied",
    "proc.crash_loop",
    "proc.thread_escape",
    "proc.memory_leak",
    "env.load_spike",
)


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise UnknownFault(name) from None


def list_faults() -> list[Fault]:
    return list(FAULTS.values())
