"""Human-readable output of a simulation: the ground-truth table and plots of key series."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sol.sim.node import FACILITY_NAMES

_TITLES = {"sim": "simulation", "cpu": "CPU", "mem": "memory", "gpu": "GPU", "faas": "FaaS"}
_ORDER = ("sim", "cpu", "mem", "gpu", "faas")


def _fmt(v: float) -> str:
    if isinstance(v, bool):
        return str(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "unbounded" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    a = abs(v)
    if a >= 1e6 or a < 1e-3:
        return f"{v:.4g}"
    return f"{v:,.4f}".rstrip("0").rstrip(".")


def render_summary(ground_truth: Mapping[str, float]) -> str:
    """An aligned table of the ground truth, grouped by facility; units are in the names
    (``_s`` seconds, ``_j`` joules, ``_w`` watts, ``_pct`` percent, ``_gb_s`` GB-seconds, ...).

    >>> print(render_summary({"sim.duration_s": 60.0, "cpu.harvested_core_s": 12.5}))
    simulation
      duration_s            60
    CPU
      harvested_core_s      12.5
    """
    groups: dict[str, list[tuple[str, float]]] = {}
    for key, value in ground_truth.items():
        prefix, _, rest = key.partition(".")
        if not rest:
            prefix, rest = "other", key
        groups.setdefault(prefix, []).append((rest, float(value)))
    names = [n for items in groups.values() for n, _ in items]
    width = max((len(n) for n in names), default=0) + 4
    lines: list[str] = []
    order = [p for p in _ORDER if p in groups] + sorted(p for p in groups if p not in _ORDER)
    for prefix in order:
        lines.append(_TITLES.get(prefix, prefix))
        for name, value in groups[prefix]:
            lines.append(f"  {name:<{width}}{_fmt(value)}".rstrip())
    return "\n".join(lines)


def write_plots(node: Any, out_dir: Path) -> list[Path]:
    """One PNG per facility with its key series; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = node.series()
    written: list[Path] = []
    prefixes = {"cpu": "cpu", "memory": "mem", "gpu": "gpu", "faas": "faas"}
    label = str(getattr(node, "label", "sim")).replace("/", "_").replace(":", "_")
    for facility in FACILITY_NAMES:
        pre = prefixes[facility] + "."
        names = sorted(n for n in series if n.startswith(pre))
        if not names:
            continue
        fig, axes = plt.subplots(
            len(names), 1, figsize=(9, 1.8 * len(names) + 0.8), sharex=True, squeeze=False
        )
        for ax, name in zip(axes[:, 0], names, strict=True):
            t, v = series[name]
            ax.plot(t, v, linewidth=0.8)
            ax.set_ylabel(name[len(pre) :], fontsize=8)
            ax.grid(True, alpha=0.3)
        axes[-1, 0].set_xlabel("clock time (s)")
        fig.suptitle(f"{label}: {facility}")
        fig.tight_layout()
        path = out_dir / f"{label}-{facility}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
