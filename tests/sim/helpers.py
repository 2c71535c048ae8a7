"""Small nodes with hand-made workloads for the physics tests."""

from __future__ import annotations

import numpy as np

from sol.sim.cpu import CpuConfig, CpuFacility, VmCpuDemand
from sol.sim.faas import FaasConfig, FaasFacility, InvocationList
from sol.sim.gpu import GpuConfig, GpuFacility, LlmRequests
from sol.sim.memory import MemoryConfig, MemoryFacility, MemoryWorkload
from sol.sim.node import SimNode

MiB = 1 << 20


def cpu_node(avg_pct: list[list[float]], vcpus: list[int], cores: int, **cfg: float) -> SimNode:
    """Flat windows (max == avg: no bursts) of 300 s."""
    avg = np.array(avg_pct, dtype=float)
    demand = VmCpuDemand(
        avg_pct=avg,
        max_pct=avg.copy(),
        window_s=300.0,
        vcpus=np.array(vcpus),
        names=tuple(f"vm{i}" for i in range(len(vcpus))),
    )
    node = SimNode()
    node.attach(
        CpuFacility(
            CpuConfig(cores=cores, **cfg),
            demand,
            seed=1,
            lock=node.lock,
            now=node.now,  # type: ignore[arg-type]
            origin=0.0,
        )
    )
    return node


def mem_node(freq: list[float], local_regions: int, *, region: int = 64 * MiB, bw: float = 1e9) -> SimNode:
    n = len(freq)
    w = MemoryWorkload(
        start=0x10000000 + region * np.arange(n, dtype=np.int64),
        size=np.full(n, region, np.int64),
        phase_t=np.array([0.0]),
        freq=np.array([freq]),
        span_s=1e9,
    )
    node = SimNode()
    cfg = MemoryConfig(local_bytes=local_regions * region, far_bytes=n * region, migrate_bw=bw)
    node.attach(MemoryFacility(cfg, w, seed=3, lock=node.lock, now=node.now, origin=0.0))
    return node


def gpu_node(
    rate_per_s: float,
    duration: float,
    *,
    count: int = 1,
    prompt: int = 2000,
    output: int = 50,
    budget_w: float | None = None,
    **cfg: float,
) -> SimNode:
    n = int(rate_per_s * duration)
    t = np.arange(n) / rate_per_s if n else np.empty(0)
    req = LlmRequests(
        arrival_s=t,
        prompt_tokens=np.full(n, prompt),
        output_tokens=np.full(n, output),
        span_s=max(duration, 1.0) * 10,
    )
    node = SimNode()
    node.attach(
        GpuFacility(
            GpuConfig(count=count, budget_w=budget_w, **cfg),
            req,
            seed=1,
            lock=node.lock,  # type: ignore[arg-type]
            now=node.now,
            origin=0.0,
        )
    )
    return node


def faas_node(
    starts: list[float], durations: list[float], *, size: int = 100 * MiB, keepalive: float = 600.0
) -> SimNode:
    inv = InvocationList(
        start_s=np.array(starts, float),
        function=np.zeros(len(starts), np.int64),
        duration_s=np.array(durations, float),
        functions=("f",),
        function_object=np.array([0]),
        objects=("app",),
        object_bytes=np.array([size]),
        span_s=1e9,
    )
    node = SimNode()
    node.attach(
        FaasFacility(FaasConfig(keepalive_s=keepalive), inv, seed=1, lock=node.lock, now=node.now, origin=0.0)
    )
    return node


def run(node: SimNode, until: float, step: float = 1.0, start: float | None = None) -> None:
    t = node.now() if start is None else start
    k = 0
    while True:
        k += 1
        x = t + k * step
        if x > until:
            break
        node.advance(x)
    node.advance(until)
