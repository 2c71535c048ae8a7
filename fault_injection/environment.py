"""Hooks that drive the simulated node: load spikes, memory pressure, a power emergency.

Environment faults change the *world*, not the agent's view of it. ``sol.sim`` exposes no
"change the workload now" API, so these hooks use the facility objects' own attributes, in
one place, each with a clear error if the simulator's shape changes under them:

* CPU: ``CpuFacility.demand`` (a frozen ``VmCpuDemand``) is swapped for a scaled copy and the
  facility's caches of what it derived from it are dropped, so the new load applies from the
  swap on.
* Memory: ``MemoryFacility.w`` (the workload's access frequencies) is swapped, and the rate
  tables the facility derives from it in its constructor are rebuilt the same way.
* GPU / FaaS: the request / invocation stream (``requests`` / ``stream``) is wrapped so each
  event is replicated ``factor`` times (the fractional part by a deterministic subset).
* GPU power budget: ``GpuFacility.config`` (frozen) is swapped for one with a lower budget.

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
    except (AttributeError, TypeError) as exc:
        raise NodeHookUnavailable(f"cannot scale the simulated CPU demand (sol.sim changed?): {exc}") from exc
    _settle(facility)
    facility.demand = scaled
    _forget_derived(facility)

    def undo() -> None:
        _settle(facility)
        facility.demand = demand
        _forget_derived(facility)

    return undo


def _settle(facility: Any) -> None:
    """Close the facility's lazily integrated pending segment at the old workload.

    The CPU model integrates a block's cells from a precomputed table and keeps the segment
    since the last commit pending; a grant change commits it first (``set_granted``), and so
    must a workload change, or the rest of the block would be integrated at the old load.
    """
    commit = getattr(facility, "_commit", None)
    if callable(commit):
        commit()


def _forget_derived(facility: Any) -> None:
    """Drop what the facility cached from its workload (the simulator precomputes blocks).

    Every cache a simulated facility keeps is an instance dict whose name says so; clearing
    one only costs a recomputation, so clearing them all is always correct.
    """
    for name, value in vars(facility).items():
        if isinstance(value, dict) and ("cache" in name or "table" in name):
            value.clear()


# -- memory ----------------------------------------------------------------------------

#: Attributes MemoryFacility derives from its workload in its constructor.
_MEMORY_DERIVED = ("_rate", "_rate_total", "_hot_bytes", "_weighted_bytes", "_last_change")


def _set_memory_workload(facility: Any, workload: Any) -> None:
    try:
        twin = type(facility)(
            facility.config,
            workload,
            seed=facility.seed,
            lock=facility._lock,
            now=facility._now,
            origin=facility.origin,
        )
        derived = {name: getattr(twin, name) for name in _MEMORY_DERIVED}
    except (AttributeError, TypeError) as exc:
        raise NodeHookUnavailable(
            f"cannot change the simulated memory workload (sol.sim changed?): {exc}"
        ) from exc
    _settle(facility)
    facility.w = workload
    for name, value in derived.items():
        setattr(facility, name, value)
    _forget_derived(facility)


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
    except (AttributeError, TypeError) as exc:
        raise NodeHookUnavailable(f"cannot scale simulated memory access (sol.sim changed?): {exc}") from exc
    _set_memory_workload(facility, hot)

    def undo() -> None:
        _set_memory_workload(facility, w)

    return undo


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


def _scale_stream(facility: Any, attr: str, factor: float) -> Undo:
    try:
        inner = getattr(facility, attr)
    except AttributeError as exc:
        raise NodeHookUnavailable(f"the simulated {facility.name} facility has no `{attr}`") from exc
    _settle(facility)
    setattr(facility, attr, ReplicatedStream(inner, factor))

    def undo() -> None:
        _settle(facility)
        setattr(facility, attr, inner)

    return undo


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
            undos.append(_scale_stream(facility, "requests", factor))
        elif name == "faas":
            undos.append(_scale_stream(facility, "stream", factor))
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
        config = facility.config
        budget = config.budget_w
    except AttributeError as exc:
        raise NodeHookUnavailable(f"cannot read the simulated GPU config (sol.sim changed?): {exc}") from exc
    if budget is None:
        raise NodeHookUnavailable("the simulated node has no GPU power budget to lower")
    _settle(facility)
    facility.config = dataclasses.replace(config, budget_w=budget * share)

    def undo() -> None:
        _settle(facility)
        facility.config = config

    return undo
