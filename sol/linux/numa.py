"""NUMA topology and per-node memory from sysfs (Documentation/ABI/stable/sysfs-devices-node).

``/sys/devices/system/node/online`` lists the nodes; each ``nodeN/`` has ``cpulist``,
``meminfo`` ("Node N MemTotal: ... kB") and ``distance``. A node without CPUs is a memory-only
node: a CXL expander or a far socket's memory, the slow tier unless ``far_nodes`` says which.

>>> import tempfile, pathlib
>>> sys_root = pathlib.Path(tempfile.mkdtemp())
>>> _ = make_fake_nodes(sys_root, {0: ("0-3", 8 << 30, 2 << 30), 1: ("", 16 << 30, 1 << 30)})
>>> [(n.node, n.tier, n.total_bytes >> 30) for n in NumaTopology(sys_root).nodes(now=0.0)]
[(0, 'local', 8), (1, 'far', 16)]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sol.facilities import NumaNode
from sol.kernel.errors import SensorError, Unsupported
from sol.kernel.procfs import parse_cpulist, parse_node_meminfo, parse_numa_maps, read_file

__all__ = ["NumaTopology", "make_fake_nodes", "process_node_bytes"]


class NumaTopology:
    def __init__(self, sys_root: Path, *, far_nodes: tuple[int, ...] = ()) -> None:
        self.base = Path(sys_root) / "devices" / "system" / "node"
        online = self.base / "online"
        if not online.is_file():
            raise Unsupported("numa", f"{online} is missing: kernel without NUMA sysfs")
        self.ids = parse_cpulist(read_file(online), online)
        if not self.ids:
            raise SensorError(online, "no node online")
        unknown = sorted(set(far_nodes) - set(self.ids))
        if unknown:
            raise ValueError(f"linux.memory.far_nodes {unknown} are not online NUMA nodes ({list(self.ids)})")
        self.cpus = {
            n: parse_cpulist(
                read_file(self.base / f"node{n}" / "cpulist"), self.base / f"node{n}" / "cpulist"
            )
            for n in self.ids
        }
        if far_nodes:
            self.far = frozenset(far_nodes)
        else:
            self.far = frozenset(n for n in self.ids if not self.cpus[n])

    def tier(self, node: int) -> str:
        return "far" if node in self.far else "local"

    def meminfo(self, node: int) -> dict[str, int]:
        path = self.base / f"node{node}" / "meminfo"
        return parse_node_meminfo(read_file(path), path)

    def nodes(self, *, now: float) -> tuple[NumaNode, ...]:
        out = []
        for n in self.ids:
            info = self.meminfo(n)
            total = info["MemTotal"]
            used = info.get("MemUsed", total - info.get("MemFree", total))
            if not 0 <= used <= total:
                raise SensorError(
                    self.base / f"node{n}" / "meminfo", f"MemUsed {used} outside [0, MemTotal {total}]"
                )
            out.append(NumaNode(t=now, node=n, tier=self.tier(n), total_bytes=total, used_bytes=used))
        return tuple(out)

    def free_bytes(self) -> dict[int, int]:
        out = {}
        for n in self.ids:
            info = self.meminfo(n)
            out[n] = info.get("MemFree", info["MemTotal"] - info.get("MemUsed", 0))
        return out

    def distance(self, node: int) -> tuple[int, ...]:
        path = self.base / f"node{node}" / "distance"
        fields = read_file(path).split()
        if not all(f.isdigit() for f in fields):
            raise SensorError(path, f"expected distances, got {' '.join(fields)[:40]!r}")
        return tuple(int(f) for f in fields)


def process_node_bytes(proc_root: Path, pid: int) -> dict[int, int]:
    """Bytes of ``pid`` on each node, from ``/proc/PID/numa_maps``."""
    path = Path(proc_root) / str(pid) / "numa_maps"
    out: dict[int, int] = {}
    for mapping in parse_numa_maps(read_file(path), path):
        for node, b in mapping.node_bytes.items():
            out[node] = out.get(node, 0) + b
    return out


def make_fake_nodes(sys_root: Path, nodes: Mapping[int, tuple[str, int, int]]) -> Path:
    """A fake ``devices/system/node`` tree: ``{node: (cpulist, total_bytes, used_bytes)}``.

    For tests and dry runs of the placement logic on hosts with one node.
    """
    base = Path(sys_root) / "devices" / "system" / "node"
    base.mkdir(parents=True, exist_ok=True)
    ids = sorted(nodes)
    (base / "online").write_text(",".join(map(str, ids)) + "\n")
    (base / "possible").write_text(",".join(map(str, ids)) + "\n")
    for n, (cpus, total, used) in nodes.items():
        d = base / f"node{n}"
        d.mkdir(exist_ok=True)
        (d / "cpulist").write_text(cpus + "\n")
        kb_total, kb_used = total // 1024, used // 1024
        (d / "meminfo").write_text(
            f"Node {n} MemTotal:       {kb_total} kB\nNode {n} MemFree:        {kb_total - kb_used} kB\n"
            f"Node {n} MemUsed:        {kb_used} kB\n"
        )
        (d / "distance").write_text(" ".join("10" if m == n else "20" for m in ids) + "\n")
    return base
