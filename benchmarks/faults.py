"""The full fault matrix (the SOL paper's evaluation, for our agents) and hundreds of real SIGKILLs.

1. Every registered agent (built-ins and ``sol.agents`` plugins) x every fault, with SOL's
   safeguards on and off, on the full timeline (300 s per run, the fault over [60, 180) s,
   the load x3 over its second half), averaged over ``--seeds``. Prints the table, writes
   JSON and a PNG when asked; exit status 1 if any safeguarded run broke DESIGN §4.
2. ``--kills N`` (default 200; 0 to skip): SIGKILL ``sol run --backend linux`` mid-actuation
   N times on real test cgroups, ``sol restore`` after each, every knob checked against its
   before-image (skipped with the reason where the host cannot run it). Target: 0 lost.

    .venv/bin/python benchmarks/faults.py [--seeds 1 2 3] [--agents ...] [--faults ...]
        [--json FILE] [--plot FILE] [--kills 200] [--lanes 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--agents", nargs="+", metavar="NAME")
    p.add_argument("--faults", nargs="+", metavar="NAME")
    p.add_argument("--json", type=Path, metavar="FILE")
    p.add_argument("--plot", type=Path, metavar="FILE")
    p.add_argument("--kills", type=int, default=200, help="real SIGKILLs of `sol run` (0: skip)")
    p.add_argument("--lanes", type=int, default=4, help="daemons killed side by side")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--no-matrix", action="store_true", help="only the SIGKILL campaign")
    args = p.parse_args(argv)
    ok = True
    if not args.no_matrix:
        ok = _matrix(args)
    if args.kills > 0:
        ok = _kills(args) and ok
    return 0 if ok else 1


def _matrix(args: argparse.Namespace) -> bool:
    from sol.fault_injection.faults import FAULTS, Timeline, get_fault
    from sol.fault_injection.matrix import load_agents, run_matrix
    from sol.fault_injection.report import print_matrix, write_json, write_plot

    agents, problems = load_agents(args.agents)
    faults = [get_fault(n) for n in args.faults] if args.faults else list(FAULTS.values())
    progress = (lambda line: print(f"  {line}", file=sys.stderr)) if args.verbose else None
    matrix = run_matrix(
        agents, faults, seeds=args.seeds, timeline=Timeline(), progress=progress, problems=problems
    )
    print_matrix(matrix, sys.stdout, verbose=True)
    if args.json:
        write_json(matrix, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(matrix, args.plot)
        print(f"wrote {args.plot}")
    return matrix.passed


def _kills(args: argparse.Namespace) -> bool:
    from sol.fault_injection.process import sigkill_campaign, skip_reason

    print()
    ok = True
    reason = skip_reason()
    if reason:
        print(f"SIGKILL test skipped: {reason}")
    else:
        report = sigkill_campaign(args.kills, lanes=args.lanes, seed=1)
        if report.kills == 0 and report.start_failures:
            why = report.start_failures[0]
            print(f"SIGKILL test skipped: sol run --backend linux does not start: {why}")
        else:
            print(report.summary())
            for failure in report.failures + report.start_failures:
                print(f"  {failure}")
            ok = report.lost == 0 and not report.start_failures
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
