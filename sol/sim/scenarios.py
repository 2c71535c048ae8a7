"""Named scenarios: a node shape, its workloads and a default duration.

Every agent domain has one scenario on a real trace and one synthetic stress case, and
``default`` has all four facilities on synthetic workloads (``sol run`` / ``sol sim`` with no
arguments). Trace scenarios read the public samples from ``../shared/data`` (or
``$SOL_SHARED_DATA``); ``scenario_from_trace`` builds one around any supported trace file.
A recorded trace starts over at its end: ``Scenario.replay`` says how long it is, so a run
longer than that can say it loops.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sol.sim._common import STREAM_CPU_SYNTH, block_rng
from sol.sim.arrivals import request_cpu_demand
from sol.sim.cpu import CpuConfig, CpuFacility, VmCpuDemand
from sol.sim.faas import (
    CombinedStream,
    FaasConfig,
    FaasFacility,
    InvocationStream,
    LoopedTrace,
    Population,
    ResampledTrace,
)
from sol.sim.gpu import GpuConfig, GpuFacility, RequestStream
from sol.sim.memory import MemoryConfig, MemoryFacility, MemoryWorkload, MultiMemoryFacility, perturbed_plays
from sol.sim.node import SimNode
from sol.sim.synthetic import (
    VM_VCPU_CHOICES,
    VM_VCPU_WEIGHTS,
    PoissonLlmRequests,
    SyntheticFunctions,
    faas_rate_share,
    synthetic_memory,
    synthetic_vm_cpu,
)
from sol.sim.traces import (
    FORMAT_FACILITY,
    VmCpuTable,
    detect_format,
    load_functions_2019,
    load_functions_2021,
    load_llm_2023,
    load_memory_trace,
    load_vm_cpu_readings,
    load_vm_cpu_wide,
)

__all__ = [
    "Replay",
    "Scenario",
    "ScenarioError",
    "ScenarioInfo",
    "get_scenario",
    "list_scenarios",
    "scenario_from_trace",
    "shared_data_dir",
]

GiB = 1 << 30
MiB = 1 << 20
#: mem-damon's default run: about ten plays of its 57 s recording
MEM_DAMON_S = 600.0

#: memory for the FaaS nodes' objects (sizing in docs/simulator.md, "FaaS")
DEFAULT_FAAS_MEMORY = 8 * GiB
FAAS_2019_MEMORY = 144 * GiB
FAAS_2019_MIXED_MEMORY = 240 * GiB
FAAS_2021_MEMORY = 2 * GiB
FAAS_STRESS_MEMORY = 32 * GiB


class ScenarioError(ValueError):
    """An unknown scenario, or one whose trace is not available here."""


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    description: str
    duration_s: float
    facilities: tuple[str, ...]


@dataclass(frozen=True)
class Replay:
    """A scenario's node and the recorded trace it replays."""

    node: SimNode
    #: seconds of recorded trace; past them it starts over. None: synthetic workloads only
    trace_span_s: float | None = None

    def loops(self, duration_s: float) -> float | None:
        """How many times a run of ``duration_s`` goes through the trace, when more than once.

        >>> Replay(SimNode(), 60.0).loops(600.0), Replay(SimNode(), 60.0).loops(30.0)
        (10.0, None)
        """
        span = self.trace_span_s
        if span is None or span <= 0 or duration_s <= span:
            return None
        return duration_s / span


@dataclass(frozen=True)
class Scenario:
    info: ScenarioInfo
    _build: Callable[[int, float], Replay]

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def build(self, seed: int, clock_start: float = 0.0) -> SimNode:
        """A fresh node at clock time ``clock_start``; the same seed gives the same node."""
        return self.replay(seed, clock_start).node

    def replay(self, seed: int, clock_start: float = 0.0) -> Replay:
        """``build``, with the length of the recorded trace the node replays."""
        return self._build(int(seed), float(clock_start))


def shared_data_dir() -> Path:
    """Where the public trace samples are: ``$SOL_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("SOL_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _shared(rel: str, dataset: str) -> Path:
    p = shared_data_dir() / rel
    if not p.exists():
        raise ScenarioError(
            f"this scenario replays {rel}, which is not at {p.resolve()}; point SOL_SHARED_DATA at the "
            f"folder of the public samples, or fetch the dataset with `sol data fetch {dataset}` and use "
            "`sol sim --trace`"
        )
    return p


# ---------------------------------------------------------------------------------------
# assembling nodes
# ---------------------------------------------------------------------------------------


def _node(clock_start: float, label: str) -> SimNode:
    return SimNode(clock_start=clock_start, label=label)


def _add_cpu(node: SimNode, cfg: CpuConfig, demand: VmCpuDemand, seed: int) -> None:
    node.attach(CpuFacility(cfg, demand, seed=seed, lock=node.lock, now=node.now, origin=node.clock_start))


def _add_memory(node: SimNode, cfg: MemoryConfig, w: MemoryWorkload, seed: int) -> None:
    node.attach(MemoryFacility(cfg, w, seed=seed, lock=node.lock, now=node.now, origin=node.clock_start))


def _add_gpu(node: SimNode, cfg: GpuConfig, req: RequestStream, seed: int) -> None:
    node.attach(GpuFacility(cfg, req, seed=seed, lock=node.lock, now=node.now, origin=node.clock_start))


def _add_faas(
    node: SimNode, cfg: FaasConfig, stream: InvocationStream, seed: int, population: Population | str
) -> None:
    """``population``: its name when the node runs one (the ground truth says which)."""
    pop = Population.single(population, len(stream.functions)) if isinstance(population, str) else population
    node.attach(
        FaasFacility(
            cfg, stream, seed=seed, lock=node.lock, now=node.now, origin=node.clock_start, population=pop
        )
    )


def _resampled(trace: LoopedTrace, seed: int) -> ResampledTrace:
    """A recorded trace replayed once, then drawn again every pass (never an exact loop)."""
    return ResampledTrace(trace, seed=seed)


def _vcpus(seed: int, n: int) -> np.ndarray:
    rng = block_rng(seed, STREAM_CPU_SYNTH, 1)
    out: np.ndarray = rng.choice(np.array(VM_VCPU_CHOICES), size=n, p=np.array(VM_VCPU_WEIGHTS)).astype(
        np.int64
    )
    return out


def vm_demand_from_table(table: VmCpuTable, seed: int, vms: slice | None = None) -> VmCpuDemand:
    """A VM CPU trace as node demand; core counts (not in the trace) drawn per VM."""
    sel = vms or slice(None)
    avg = table.avg_pct[:, sel]
    mx = table.max_pct[:, sel] if table.max_pct is not None else avg
    names = table.names[sel]
    return VmCpuDemand(
        avg_pct=avg,
        max_pct=mx,
        window_s=table.window_s,
        vcpus=_vcpus(seed, len(names)),
        names=names,
        source=table.path,
    )


def _gpu_config(count: int, budget_share: float, **kw: float) -> GpuConfig:
    base = GpuConfig(count=count)
    budget = budget_share * count * base.tdp_w
    return GpuConfig(count=count, budget_w=budget, **kw)  # type: ignore[arg-type]


def _memory_config(footprint: int, local_share: float, **kw: object) -> MemoryConfig:
    local = int(footprint * local_share)
    return MemoryConfig(local_bytes=local, far_bytes=footprint, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# the scenarios
# ---------------------------------------------------------------------------------------


def _default(seed: int, t0: float) -> Replay:
    node = _node(t0, "default")
    demand = synthetic_vm_cpu(seed, 6, 3600.0)
    _add_cpu(node, CpuConfig(cores=int(demand.vcpus.sum()) + 2), demand, seed)
    mem = synthetic_memory(seed, footprint_bytes=8 * GiB, region_bytes=128 * MiB, duration_s=3600.0)
    _add_memory(node, _memory_config(mem.footprint, 0.6), mem, seed)
    _add_gpu(node, _gpu_config(2, 0.8), PoissonLlmRequests(seed, rate_per_s=1.2), seed)
    _add_faas(
        node,
        FaasConfig(memory_bytes=DEFAULT_FAAS_MEMORY),
        SyntheticFunctions(seed, n_functions=50),
        seed,
        "atc20",
    )
    return Replay(node)


def _cpu_azure(seed: int, t0: float) -> Replay:
    path = _shared("azure-vm-cpu-2017/azure_v1_vm_cpu_avg_100vms_5min.csv", "azure-vm-cpu-2017-sample")
    demand = vm_demand_from_table(load_vm_cpu_wide(path), seed, slice(0, 12))
    node = _node(t0, "cpu-azure")
    _add_cpu(node, CpuConfig(cores=int(demand.vcpus.sum())), demand, seed)
    return Replay(node, demand.span_s)


def _cpu_arrivals(seed: int, t0: float) -> Replay:
    llm = load_llm_2023(_shared("azure-llm-2023/AzureLLMInferenceTrace_code.csv", "azure-llm-2023-code"))
    fn = load_functions_2021(
        _shared("azure-functions/azure2021_invocations_sample199.csv", "azure-functions-2021-sample"),
        seed=seed,
    )
    demand = request_cpu_demand(llm, seed=seed, services=11, functions=fn)
    node = _node(t0, "cpu-arrivals")
    _add_cpu(node, CpuConfig(cores=int(demand.vcpus.sum()), slot_s=demand.window_s), demand, seed)
    return Replay(node, demand.span_s)


def _cpu_stress(seed: int, t0: float) -> Replay:
    demand = synthetic_vm_cpu(seed, 8, 3600.0, util_scale=4.0, peak_scale=1.5)
    node = _node(t0, "cpu-stress")
    _add_cpu(node, CpuConfig(cores=int(demand.vcpus.sum()), sub_cv=0.5), demand, seed)
    return Replay(node)


def _damo_rec_a() -> MemoryWorkload:
    return load_memory_trace(_shared("damon-access/damon_recA_regions.csv", "damo-recording-sample"))


def _mem_damon(seed: int, t0: float) -> Replay:
    w = _damo_rec_a()
    node = _node(t0, "mem-damon")
    _add_memory(node, _memory_config(w.footprint, 0.5, migrate_bw=200e6), w, seed)
    return Replay(node, w.span_s)


def _mem_damon_perturbed(seed: int, t0: float) -> Replay:
    # mem-damon plays its 57 s recording about ten times in its ten minutes; here every play
    # is shifted in time and address (seeded), so memorising one play does not pay in the next
    rec = _damo_rec_a()
    w = perturbed_plays(rec, seed, math.ceil(MEM_DAMON_S / rec.span_s))
    node = _node(t0, "mem-damon-perturbed")
    _add_memory(node, _memory_config(w.footprint, 0.5, migrate_bw=200e6), w, seed)
    return Replay(node, w.span_s)


def _mem_stress(seed: int, t0: float) -> Replay:
    w = synthetic_memory(
        seed, footprint_bytes=32 * GiB, region_bytes=256 * MiB, duration_s=1800.0, phase_s=30.0, churn=0.5
    )
    node = _node(t0, "mem-stress")
    # a workload from the quarter Pond saw lose more than 25 % with all its memory far
    _add_memory(node, _memory_config(w.footprint, 0.4, stall_quantiles=(0.77, 1.0)), w, seed)
    return Replay(node)


def _gpu_splitwise(seed: int, t0: float) -> Replay:
    req = load_llm_2023(_shared("azure-llm-2023/AzureLLMInferenceTrace_code.csv", "azure-llm-2023-code"))
    node = _node(t0, "gpu-splitwise")
    _add_gpu(node, _gpu_config(4, 0.75), req, seed)
    return Replay(node, req.span_s)


def _gpu_stress_at(inlet_c: float, label: str) -> Callable[[int, float], Replay]:
    def build(seed: int, t0: float) -> Replay:
        node = _node(t0, label)
        _add_gpu(
            node,
            _gpu_config(4, 0.6, ambient_c=inlet_c),
            PoissonLlmRequests(seed, rate_per_s=6.0, burstiness=1.0),
            seed,
        )
        return Replay(node)

    return build


# 40 C: at most 85 C at a sustained TDP, under the 87 C slowdown. 45 C (degraded cooling):
# sustained prefill bursts reach the slowdown and the thermal limit binds
_gpu_stress = _gpu_stress_at(40.0, "gpu-stress")
_gpu_stress_hot = _gpu_stress_at(45.0, "gpu-stress-hot")


def _functions_2019(seed: int) -> ResampledTrace:
    path = _shared(
        "azure-functions/azure2019_sample1000fn_60min_invocation.csv", "azure-functions-2019-sample"
    )
    return _resampled(load_functions_2019(path, seed=seed), seed)


def _faas_2019(seed: int, t0: float) -> Replay:
    stream = _functions_2019(seed)
    node = _node(t0, "faas-azure2019")
    _add_faas(node, FaasConfig(memory_bytes=FAAS_2019_MEMORY), stream, seed, "azure2019_sample")
    return Replay(node, stream.span_s)


def rare_functions_for(n_sample: int) -> int:
    """How many of ATC'20's apps invoked under 10 times an hour go with ``n_sample`` of the
    10-1,000 an hour the 2019 sample was drawn from (2,461 for 1,000).

    >>> rare_functions_for(1000)
    2461
    """
    return round(n_sample * faas_rate_share(0.0, 10 / 60) / faas_rate_share(10 / 60, 1000 / 60))


def _faas_2019_mixed(seed: int, t0: float) -> Replay:
    sample = _functions_2019(seed)
    rare = SyntheticFunctions(
        seed,
        n_functions=rare_functions_for(len(sample.functions)),
        rate_range_per_min=(0.0, 10 / 60),
        name_prefix="rare-",
        stream_block=1 << 40,
        source="ATC'20 apps under 10 invocations an hour (synthetic)",
    )
    stream = CombinedStream((("azure2019_sample", sample), ("atc20_rare", rare)))
    node = _node(t0, "faas-azure2019-mixed")
    _add_faas(node, FaasConfig(memory_bytes=FAAS_2019_MIXED_MEMORY), stream, seed, stream.population)
    return Replay(node, sample.span_s)


def _faas_2021(seed: int, t0: float) -> Replay:
    path = _shared("azure-functions/azure2021_invocations_sample199.csv", "azure-functions-2021-sample")
    stream = _resampled(load_functions_2021(path, seed=seed), seed)
    node = _node(t0, "faas-azure2021")
    _add_faas(node, FaasConfig(memory_bytes=FAAS_2021_MEMORY), stream, seed, "azure2021_sample")
    return Replay(node, stream.span_s)


def _faas_stress(seed: int, t0: float) -> Replay:
    node = _node(t0, "faas-stress")
    _add_faas(
        node,
        FaasConfig(keepalive_s=600.0, memory_bytes=FAAS_STRESS_MEMORY),
        SyntheticFunctions(seed, n_functions=300, rate_scale=3.0),
        seed,
        "atc20",
    )
    return Replay(node)


#: mem-multi's workloads: name, seed offset, the part of Pond's sensitivity CDF it is drawn from
MEM_MULTI_WORKLOADS = (
    ("batch-a", 0, (0.0, 0.26)),  # loses < 1 % with every page far
    ("batch-b", 1, (0.0, 0.26)),
    ("web", 2, (0.26, 0.42)),  # 1-5 %
    ("db", 3, (0.77, 1.0)),  # > 25 %
)


def _mem_multi(seed: int, t0: float) -> Replay:
    node = _node(t0, "mem-multi")
    members = []
    for name, k, quantiles in MEM_MULTI_WORKLOADS:
        s = seed * 16 + k
        w = synthetic_memory(s, footprint_bytes=4 * GiB, region_bytes=128 * MiB, duration_s=1800.0)
        members.append((name, MemoryConfig(local_bytes=0, far_bytes=0, stall_quantiles=quantiles), w, s))
    total = sum(w.footprint for _, _, w, _ in members)
    node.attach(
        MultiMemoryFacility(
            members,
            local_bytes=total // 2,
            far_bytes=total,
            lock=node.lock,
            now=node.now,
            origin=node.clock_start,
        )
    )
    return Replay(node)


_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            ScenarioInfo(
                "default",
                "small node, all four facilities, synthetic workloads",
                600.0,
                ("cpu", "memory", "gpu", "faas"),
            ),
            _default,
        ),
        Scenario(
            ScenarioInfo(
                "cpu-azure",
                "12 VMs of the Azure 2017 VM CPU sample on their own cores, one day",
                86400.0,
                ("cpu",),
            ),
            _cpu_azure,
        ),
        Scenario(
            ScenarioInfo(
                "cpu-arrivals",
                "11 services replaying the Azure LLM 2023 arrivals and a Functions 2021 host, 96 vCPUs",
                3436.0,
                ("cpu",),
            ),
            _cpu_arrivals,
        ),
        Scenario(
            ScenarioInfo(
                "cpu-stress", "8 synthetic VMs at 4x the Azure mean load with sharper peaks", 3600.0, ("cpu",)
            ),
            _cpu_stress,
        ),
        Scenario(
            ScenarioInfo(
                "mem-damon",
                "DAMON recording (damo recA) replayed on a node with half of it local",
                MEM_DAMON_S,
                ("memory",),
            ),
            _mem_damon,
        ),
        Scenario(
            ScenarioInfo(
                "mem-damon-perturbed",
                "mem-damon with every play of the recording shifted in time and address (seeded)",
                MEM_DAMON_S,
                ("memory",),
            ),
            _mem_damon_perturbed,
        ),
        Scenario(
            ScenarioInfo(
                "mem-stress", "32 GiB with a hot set that shifts every ~30 s, 40 % local", 1800.0, ("memory",)
            ),
            _mem_stress,
        ),
        Scenario(
            ScenarioInfo(
                "mem-multi",
                "4 workloads of 4 GiB (two insensitive, one mildly, one > 25 % sensitive), half local",
                1800.0,
                ("memory",),
            ),
            _mem_multi,
        ),
        Scenario(
            ScenarioInfo(
                "gpu-splitwise",
                "Azure LLM 2023 code trace on 4 GPUs under a 75 % power budget",
                3436.0,
                ("gpu",),
            ),
            _gpu_splitwise,
        ),
        Scenario(
            ScenarioInfo(
                "gpu-stress", "bursty 6 req/s synthetic LLM load, 60 % budget, 40 C inlet", 1800.0, ("gpu",)
            ),
            _gpu_stress,
        ),
        Scenario(
            ScenarioInfo(
                "gpu-stress-hot",
                "gpu-stress with a 45 C inlet (degraded cooling): the thermal limit binds",
                1800.0,
                ("gpu",),
            ),
            _gpu_stress_hot,
        ),
        Scenario(
            ScenarioInfo(
                "faas-azure2019",
                "1,000 Azure Functions 2019 functions: the recorded hour, then hours drawn again from it",
                3600.0,
                ("faas",),
            ),
            _faas_2019,
        ),
        Scenario(
            ScenarioInfo(
                "faas-azure2019-mixed",
                f"faas-azure2019 with the {rare_functions_for(1000):,} rarer apps ATC'20 counts beside its "
                "1,000 functions (synthetic, under 10 invocations an hour)",
                3600.0,
                ("faas",),
            ),
            _faas_2019_mixed,
        ),
        Scenario(
            ScenarioInfo(
                "faas-azure2021",
                "Azure Functions 2021 per-invocation sample (199 invocations)",
                1260.0,
                ("faas",),
            ),
            _faas_2021,
        ),
        Scenario(
            ScenarioInfo("faas-stress", "300 synthetic functions at 3x the ATC'20 rates", 3600.0, ("faas",)),
            _faas_stress,
        ),
    )
}


def list_scenarios() -> list[ScenarioInfo]:
    return [s.info for s in _SCENARIOS.values()]


def get_scenario(name: str) -> Scenario:
    try:
        return _SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(_SCENARIOS)}") from None


def scenario_from_trace(path: Path) -> Scenario:
    """A scenario replaying ``path`` on a node shaped for its facility (format from its header)."""
    path = Path(path)
    fmt = detect_format(path)
    facility = FORMAT_FACILITY[fmt]
    label = f"trace:{path.name}"
    if facility == "cpu":
        table = load_vm_cpu_wide(path) if fmt == "azure-vm-cpu-wide" else load_vm_cpu_readings(path)
        span = table.avg_pct.shape[0] * table.window_s

        def build_cpu(seed: int, t0: float) -> Replay:
            demand = vm_demand_from_table(table, seed)
            node = _node(t0, label)
            _add_cpu(node, CpuConfig(cores=int(demand.vcpus.sum())), demand, seed)
            return Replay(node, span)

        info = ScenarioInfo(label, f"{len(table.names)} VMs of {path.name} ({fmt})", span, ("cpu",))
        return Scenario(info, build_cpu)
    if facility == "gpu":
        req = load_llm_2023(path)

        def build_gpu(seed: int, t0: float) -> Replay:
            node = _node(t0, label)
            _add_gpu(node, _gpu_config(4, 0.75), req, seed)
            return Replay(node, req.span_s)

        info = ScenarioInfo(
            label, f"{req.arrival_s.size} LLM requests of {path.name} on 4 GPUs", req.span_s, ("gpu",)
        )
        return Scenario(info, build_gpu)
    if facility == "faas":
        if fmt == "azure-functions-2019":
            probe = load_functions_2019(path, seed=0)
            span = probe.span_s
            desc = f"{len(probe.functions)} functions of {path.name} (per-minute counts)"

            def build_faas(seed: int, t0: float) -> Replay:
                node = _node(t0, label)
                _add_faas(
                    node, FaasConfig(), _resampled(load_functions_2019(path, seed=seed), seed), seed, "trace"
                )
                return Replay(node, span)
        else:
            probe21 = load_functions_2021(path, seed=0)
            span = probe21.span_s
            desc = f"{probe21.start_s.size} invocations of {path.name}"

            def build_faas(seed: int, t0: float) -> Replay:
                node = _node(t0, label)
                _add_faas(
                    node, FaasConfig(), _resampled(load_functions_2021(path, seed=seed), seed), seed, "trace"
                )
                return Replay(node, span)

        return Scenario(ScenarioInfo(label, desc, span, ("faas",)), build_faas)
    w = load_memory_trace(path)

    def build_mem(seed: int, t0: float) -> Replay:
        node = _node(t0, label)
        _add_memory(node, _memory_config(w.footprint, 0.5), w, seed)
        return Replay(node, w.span_s)

    info = ScenarioInfo(
        label, f"{w.phase_t.size} DAMON snapshots of {path.name}, half local", w.span_s, ("memory",)
    )
    return Scenario(info, build_mem)
