"""Hooks that drive the simulated node: load spikes, memory pressure, a power emergency.

Environment faults change the *world*, not the agent's view of it, through the simulated
facilities' public setters (``sol.sim``):

* CPU: ``CpuFacility.set_demand`` with a scaled copy of its ``VmCpuDemand``.
* Memory: ``MemoryFacility.set_workload`` with the workload's access frequencies raised.
* GPU / FaaS: ``set_requests`` / ``set_stream`` with the stream wrapped so each event is
  replicated ``factor`` times (the fractional part by a deterministic subset).
* GPU power budget: ``GpuFacility.set_budget_w``.

Every hook returns its undo. The caller brings the node up to the switch time first
(``SimNode.advance`` + ``sync``), so a switch happens at an exact virtual time and the
ground truth integrates the old load before it and the new one after it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["NodeHookUnavailable", "lower_gpu_budget", "memory_pressure", "scale_load"]

Undo = Callable[[], None]


class NodeHookUnavailable(RuntimeError):
    """The node lacks what an environment fault drives, or the simulator changed shape."""


def _facilities(node: Any) -> dict[str, Any]:
    facilities = getattr(node, "facilities", None)
    if facilities is None:
        raise NodeHookUnavailable(
            f"{type(node).__name__} is not a simulated node (no `facilities`): environment faults "
            "need sol.sim's SimNode"
        )
    return dict(facilities)


def _noop() -> None:
    return None


def _chain(undos: list[Undo]) -> Undo:
    def undo() -> None:
        for u in reversed(undos):
            u()

    return undo


# -- CPU -------------------------------------------------------------------------------


def scale_cpu_demand(facility: Any, factor: float) -> Undo:
    """Primary demand x ``factor`` (each VM capped at 100 % of its vCPUs)."""
    try:
        demand = facility.demand
        scaled = dataclasses.replace(
            demand,
            avg_pct=np.minimum(demand.avg_pct * factor, 100.0),
            max_pct=np.minimum(demand.max_pct * factor, 100.0),
        )
        set_demand = facility.set_demand
    except (AttributeError, TypeError) as exc:
        raise NodeHookUnavailable(f"cannot scale the simulated CPU demand (sol.sim changed?): {exc}") from exc
    set_demand(scaled)
    return lambda: set_demand(demand)


# -- memory ----------------------------------------------------------------------------

def scale_memory_access(facility: Any, factor: float, floor: float = 0.0) -> Undo:
    """Per-page access rates x ``factor``; every region at least ``floor`` access frequency.

    A region's access frequency ``p`` is the chance its sampled page is touched in a DAMON
    sampling interval, ``1 - exp(-rate * interval)``, so rates x k give ``1 - (1 - p)^k``.
    """
    try:
        w = facility.w
        freq = 1.0 - np.power(1.0 - w.freq, factor)
        freq = np.clip(np.maximum(freq, floor), 0.0, 1.0)
        hot = dataclasses.replace(w, freq=freq)
        set_workload = facility.set_workload
    except (AttributeError, TypeError) as exc:
        raise NodeHookUnavailable(f"cannot scale simulated memory access (sol.sim changed?): {exc}") from exc
    set_workload(hot)
    return lambda: set_workload(w)


# -- event streams (GPU requests, FaaS invocations) --------------------------------------


class ReplicatedStream:
    """A request/invocation stream whose events each come ``factor`` times.

    Copies are offset by a millisecond each and the result re-sorted by time; the fractional
    part of ``factor`` copies a deterministic subset (by the event's sub-second phase).
    """

    def __init__(self, inner: Any, factor: float) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.inner = inner
        self.factor = factor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def between(self, t0: float, t1: float) -> tuple[Any, ...]:
        arrays = self.inner.between(t0, t1)
        times = arrays[0]
        if times.size == 0 or self.factor == 1.0:
            return tuple(arrays)
        whole = math.floor(self.factor)
        frac = self.factor - whole
        parts: list[tuple[Any, ...]] = []
        for k in range(whole):
            parts.append((times + 1e-3 * k, *arrays[1:]))
        if frac > 0:
            phase = np.mod(times * 997.0, 1.0)
            sel = phase < frac
            parts.append((times[sel] + 1e-3 * whole, *(a[sel] for a in arrays[1:])))
        if not parts:
            return tuple(a[:0] for a in arrays)
        merged = [np.concatenate([p[i] for p in parts]) for i in range(len(arrays))]
        order = np.argsort(merged[0], kind="stable")
        # keep events inside the asked window: an offset copy may cross t1
        keep = merged[0][order] < t1
        return tuple(m[order][keep] for m in merged)


def _scale_stream(facility: Any, attr: str, setter: str, factor: float) -> Undo:
    try:
        inner = getattr(facility, attr)
        set_stream = getattr(facility, setter)
    except AttributeError as exc:
        what = f"the simulated {facility.name} facility has no `{attr}`/`{setter}`"
        raise NodeHookUnavailable(what) from exc
    set_stream(ReplicatedStream(inner, factor))
    return lambda: set_stream(inner)


# -- the hooks faults use -----------------------------------------------------------------


def scale_load(node: Any, factor: float, facilities: tuple[str, ...] | None = None) -> Undo:
    """Every facility's load x ``factor`` (or only those named): the load-spike / surge hook."""
    present = _facilities(node)
    undos: list[Undo] = []
    for name, facility in present.items():
        if facilities is not None and name not in facilities:
            continue
        if name == "cpu":
            undos.append(scale_cpu_demand(facility, factor))
        elif name == "memory":
            undos.append(scale_memory_access(facility, factor))
        elif name == "gpu":
            undos.append(_scale_stream(facility, "requests", "set_requests", factor))
        elif name == "faas":
            undos.append(_scale_stream(facility, "stream", "set_stream", factor))
    return _chain(undos) if undos else _noop


def memory_pressure(node: Any, factor: float, floor: float) -> Undo:
    facility = _facilities(node).get("memory")
    if facility is None:
        return _noop
    return scale_memory_access(facility, factor, floor)


def lower_gpu_budget(node: Any, share: float) -> Undo:
    """The node's GPU power budget drops to ``share`` of itself."""
    facility = _facilities(node).get("gpu")
    if facility is None:
        return _noop
    try:
        budget = facility.config.budget_w
        set_budget = facility.set_budget_w
    except AttributeError as exc:
        raise NodeHookUnavailable(f"cannot read the simulated GPU config (sol.sim changed?): {exc}") from exc
    if budget is None:
        raise NodeHookUnavailable("the simulated node has no GPU power budget to lower")
    set_budget(budget * share)
    return lambda: set_budget(budget)
