"""The matrix as a table, as JSON, and as a plot of the harm the safeguards prevent."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TextIO

from sol.fault_injection.faults import Fault, list_faults
from sol.fault_injection.harness import Cell, time_to_safe
from sol.fault_injection.matrix import Matrix, Row

__all__ = ["finite_json", "print_cell", "print_faults", "print_matrix", "write_json", "write_plot"]


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}{unit}"
    return f"{x:.1f}{unit}"


def _pct(x: float | None) -> str:
    if x is None:
        return "—"
    return ">999%" if x > 9.99 else f"{100 * x:.0f}%"


def _response(r: dict[str, int]) -> str:
    if not r:
        return "—"
    return ", ".join(k for k, _ in sorted(r.items(), key=lambda kv: -kv[1])[:3])


def _table(header: list[str], lines: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in lines:
        print(fmt.format(*row).rstrip(), file=out)


def print_faults(out: TextIO, faults: list[Fault] | None = None) -> None:
    faults = faults or list_faults()
    lines = [[f.name, f.boundary, f.describe_params(), f.summary] for f in faults]
    _table(["fault", "failpoint", "parameters", "what fails"], lines, out)


def _row_line(r: Row) -> list[str]:
    clean_on, _, on, off = r.harm()
    safe_on, safe_off = r.time_to_safe()
    kept_on, kept_off = r.benefit_kept()
    ok = "PASS" if r.passed else f"FAIL({len(r.violations)})"
    harm = "n/a" if r.profile.harm_metric is None else f"{_num(clean_on)} | {_num(on)} | {_num(off)}"
    return [
        r.agent,
        r.fault.name,
        ok,
        f"{_num(safe_on, 's')} / {_num(safe_off, 's')}" if r.exercised else "—",
        harm,
        r.verdict(),
        f"{_pct(kept_on)} / {_pct(kept_off)}" if r.profile.benefit_metric else "n/a",
        _response(r.response()) if r.exercised else "—",
        "; ".join(r.notes()),
    ]


def print_matrix(matrix: Matrix, out: TextIO, *, verbose: bool = False) -> None:
    t = matrix.timeline
    n_faults = len({r.fault.name for r in matrix.rows})
    print(
        f"fault matrix: {len(matrix.agents())} agent(s) x {n_faults} fault(s), "
        f"seed(s) {', '.join(map(str, matrix.seeds))}; {t.duration:g} s virtual per run, fault over "
        f"[{t.onset:g}, {t.end:g}) s, load x{t.surge:g} from {t.surge_at:g} s",
        file=out,
    )
    header = [
        "agent",
        "fault",
        "§4",
        "safe on / off",
        "harm clean | on | off",
        "safeguards",
        "benefit kept on / off",
        "response (on)",
        "notes",
    ]
    _table(header, [_row_line(r) for r in matrix.rows], out)
    print(file=out)
    for name in matrix.agents():
        rows = [r for r in matrix.rows if r.agent == name]
        p = matrix.profiles.get(name)
        verdicts: dict[str, list[str]] = {}
        for r in rows:
            verdicts.setdefault(r.verdict(), []).append(r.fault.name)
        failed = sum(1 for r in rows if not r.passed)
        harm = p.harm_metric if p and p.harm_metric else "none declared (harm n/a)"
        print(
            f"{name}: scenario {p.scenario if p else '?'}, harm = {harm}; "
            f"{len(rows) - failed}/{len(rows)} pass §4"
            + "".join(f"; {k}: {len(v)}" for k, v in sorted(verdicts.items())),
            file=out,
        )
        for k in ("weak", "not prevented"):
            if k in verdicts:
                print(f"  {k}: {', '.join(verdicts[k])}", file=out)
    print(
        "safe on/off: seconds from the fault to the first safe state that took effect (worst seed; — never). "
        "harm: the agent's ground-truth harm metric (lower is better), fault-free | faulty with "
        "safeguards | faulty without. weak: the fault does no harm even without safeguards (the scenario "
        "is too weak for it).",
        file=out,
    )
    for problem in matrix.problems:
        print(f"problem: {problem}", file=out)
    bad = [r for r in matrix.rows if not r.passed]
    if bad:
        print(file=out)
        print(f"{len(bad)} row(s) violate DESIGN §4:", file=out)
        for r in bad:
            for v in r.violations[: 8 if verbose else 3]:
                print(f"  {r.agent} x {r.fault.name}: {v}", file=out)
    print(f"{'PASS' if matrix.passed else 'FAIL'} ({matrix.wall_s:.1f} s)", file=out)


def print_cell(cell: Cell, out: TextIO) -> None:
    """The detailed report of ``sol faults run AGENT FAULT``."""
    f, t = cell.fault, cell.timeline
    print(f"{cell.agent} under {f.name}: {f.summary}", file=out)
    print(
        f"  failpoint {f.boundary}, parameters {f.describe_params()}; fault over [{t.onset:g}, {t.end:g}) s "
        f"of {t.duration:g} s, load x{t.surge:g} from {t.surge_at:g} s; scenario {cell.profile.scenario}",
        file=out,
    )
    m = cell.profile.harm_metric
    b = cell.profile.benefit_metric
    lines = []
    for label, run, clean in (
        ("safeguards on", cell.on, cell.clean_on),
        ("safeguards off", cell.off, cell.clean_off),
    ):
        harm = run.ground_truth.get(m) if m else None
        ben = run.ground_truth.get(b) if b else None
        ben0 = clean.ground_truth.get(b) if b else None
        lines.append(
            [
                label,
                run.state,
                str(run.injections),
                _num(time_to_safe(run, t), "s"),
                _num(clean.ground_truth.get(m) if m else None),
                _num(harm),
                _pct(ben / ben0 if ben is not None and ben0 else None),
            ]
        )
    _table(["run", "ended", "injections", "safe after", "harm clean", "harm", "benefit kept"], lines, out)
    print(f"  harm metric: {m or 'none declared'}; benefit metric: {b or 'none'}", file=out)
    if f.daemon_metric is not None:
        on, off = cell.daemon_damage()
        print(f"  harm to the daemon itself ({f.daemon_metric}): on {_num(on)} | off {_num(off)}", file=out)
    resp = cell.response()
    print(f"  runtime response (on): {dict(resp) or 'none'}", file=out)
    print(f"  verdict: {cell.verdict()}", file=out)
    if cell.on.state == "quarantined":
        print(f"  quarantined: {cell.on.state_reason}", file=out)
    if cell.on.left_open:
        print(
            f"  {cell.on.left_open} undo record(s) could not be restored while the fault lasted; "
            f"`sol restore` after the run: {'ok' if cell.on.final_restore_ok else 'FAILED'}",
            file=out,
        )
    if cell.violations:
        print(f"  DESIGN §4 violations ({len(cell.violations)}):", file=out)
        for v in cell.violations:
            print(f"    {v}", file=out)
    else:
        print("  DESIGN §4: every guarantee held", file=out)


def write_json(matrix: Matrix, path: Path) -> None:
    path.write_text(json.dumps(finite_json(matrix.to_json()), indent=2, allow_nan=False) + "\n")


def finite_json(x: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    return x


def write_plot(matrix: Matrix, path: Path) -> None:
    """Bars of extra harm over the fault-free run, with and without safeguards, per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [a for a in matrix.agents() if (p := matrix.profiles.get(a)) is not None and p.harm_metric]
    n = max(1, len(agents))
    faults = list(dict.fromkeys(r.fault.name for r in matrix.rows))
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 0.32 * len(faults) + 1.8), squeeze=False)
    if not agents:
        axes[0][0].text(0.5, 0.5, "no agent declares a harm metric", ha="center", va="center")
        axes[0][0].axis("off")
    for ax, agent in zip(axes[0], agents, strict=False):
        rows = {r.fault.name: r for r in matrix.rows if r.agent == agent}
        on, off = [], []
        for name in faults:
            r = rows.get(name)
            clean_on, clean_off, h_on, h_off = r.harm() if r is not None else (None, None, None, None)
            on.append((h_on - clean_on) if h_on is not None and clean_on is not None else 0.0)
            off.append((h_off - clean_off) if h_off is not None and clean_off is not None else 0.0)
        y = list(range(len(faults)))
        ax.barh([v + 0.2 for v in y], off, height=0.4, color="#c0392b", label="safeguards off")
        ax.barh([v - 0.2 for v in y], on, height=0.4, color="#2e86c1", label="safeguards on")
        ax.set_yticks(y)
        ax.set_yticklabels(faults, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.6)
        p = matrix.profiles[agent]
        ax.set_title(f"{agent} ({p.scenario})", fontsize=10)
        ax.set_xlabel(f"extra {p.harm_metric} over the fault-free run", fontsize=8)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Harm under each fault, with and without SOL's safeguards", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
