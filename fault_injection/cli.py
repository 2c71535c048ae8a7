"""``sol faults``: list the faults, run one agent under one fault, run the matrix.

    sol faults list
    sol faults run AGENT FAULT [--seed N] [--param K=V ...] [--json FILE]
    sol faults matrix [--agents A ...] [--faults F ...] [--json FILE] [--plot FILE] [--reduced]

``sol.cli`` mounts it with :func:`add_faults_arguments` and :func:`faults_command`;
``python -m sol.fault_injection`` runs it on its own. Exit status: 0 when every safeguarded
run kept DESIGN §4, 1 when one did not (or an agent failed to load), 2 for an unknown agent,
fault or parameter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TextIO

from sol.fault_injection.faults import REDUCED_FAULTS, REDUCED_TIMELINE, Timeline, UnknownFault, get_fault
from sol.registry import RegistryError

__all__ = ["add_faults_arguments", "faults_command", "main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _timeline_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("timeline (virtual seconds)")
    g.add_argument("--duration", type=float, metavar="S", help="length of each run (default 300; reduced 90)")
    g.add_argument("--onset", type=float, metavar="S", help="when the fault starts (default 60; reduced 20)")
    g.add_argument("--length", type=float, metavar="S", help="how long it lasts (default 120; reduced 40)")
    g.add_argument(
        "--surge",
        type=float,
        metavar="X",
        help="load factor over the fault window's second half, in every run (default 3; 1 = none)",
    )


def add_faults_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sol faults`` subcommands, on ``parser``."""
    sub = parser.add_subparsers(dest="faults_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("list", help="the faults, their failpoints and parameters")

    run = sub.add_parser("run", help="one agent under one fault, with safeguards on and off")
    run.add_argument("agent", help="an agent name (see `sol agents`)")
    run.add_argument("fault", help="a fault name (see `sol faults list`)")
    run.add_argument("--seed", type=int, default=1, help="scenario and fault seed (default 1)")
    run.add_argument(
        "--param", action="append", default=[], metavar="K=V", help="override a fault parameter (repeatable)"
    )
    run.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    _timeline_options(run)

    matrix = sub.add_parser("matrix", help="every agent x every fault: the table (and JSON, a plot)")
    matrix.add_argument("--agents", nargs="+", metavar="NAME", help="only these agents (default: all)")
    matrix.add_argument("--faults", nargs="+", metavar="NAME", help="only these faults (default: all)")
    matrix.add_argument("--seeds", nargs="+", type=int, metavar="N", help="seeds to average over (default 1)")
    matrix.add_argument("--json", type=Path, metavar="FILE", help="write the matrix as JSON")
    matrix.add_argument(
        "--plot", type=Path, metavar="FILE", help="write a PNG of the harm, safeguards on vs off"
    )
    matrix.add_argument(
        "--reduced", action="store_true", help="the CI matrix: a fault of every kind, shorter runs"
    )
    matrix.add_argument(
        "--verbose", action="store_true", help="print every violation, and progress to stderr"
    )
    _timeline_options(matrix)


def _timeline(args: argparse.Namespace, base: Timeline) -> Timeline:
    overrides = {
        k: getattr(args, k)
        for k in ("duration", "onset", "length", "surge")
        if getattr(args, k, None) is not None
    }
    return dataclasses.replace(base, **overrides)


def _params(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param wants K=V, got {item!r}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {key}: {value!r} is not a number") from None
    return out


def faults_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the ``sol faults`` subcommand in ``args``; the report goes to ``out``."""
    from sol.fault_injection import report

    err = sys.stderr
    cmd = args.faults_command
    if cmd == "list":
        report.print_faults(out)
        return EXIT_OK
    try:
        if cmd == "run":
            return _run(args, out)
        if cmd == "matrix":
            return _matrix(args, out)
    except (UnknownFault, RegistryError, ValueError) as exc:
        print(f"sol faults: {exc}", file=err)
        return EXIT_USAGE
    print(f"sol faults: unknown subcommand {cmd!r}", file=err)
    return EXIT_USAGE


def _run(args: argparse.Namespace, out: TextIO) -> int:
    from sol.fault_injection.harness import run_cell
    from sol.fault_injection.matrix import Matrix, Row, load_agents
    from sol.fault_injection.profiles import profile_for
    from sol.fault_injection.report import finite_json, print_cell

    fault = get_fault(args.fault).with_params(**_params(args.param))
    agents, _ = load_agents([args.agent])
    cls = agents[args.agent]
    timeline = _timeline(args, Timeline())
    cell = run_cell(cls, fault, seed=args.seed, timeline=timeline)
    print_cell(cell, out)
    if args.json is not None:
        m = Matrix([Row(cls.name, fault, profile_for(cls), [cell])], timeline, (args.seed,))
        m.profiles[cls.name] = cell.profile
        row = finite_json(m.to_json()["rows"][0])
        args.json.write_text(json.dumps(row, indent=2, allow_nan=False) + "\n")
    return EXIT_OK if cell.passed else EXIT_FAIL


def _matrix(args: argparse.Namespace, out: TextIO) -> int:
    from sol.fault_injection.faults import FAULTS
    from sol.fault_injection.matrix import load_agents, run_matrix
    from sol.fault_injection.report import print_matrix, write_json, write_plot

    if args.faults:
        faults = [get_fault(n) for n in args.faults]
    elif args.reduced:
        faults = [FAULTS[n] for n in REDUCED_FAULTS]
    else:
        faults = list(FAULTS.values())
    timeline = _timeline(args, REDUCED_TIMELINE if args.reduced else Timeline())
    agents, problems = load_agents(args.agents)
    progress = (lambda line: print(f"  {line}", file=sys.stderr)) if args.verbose else None
    matrix = run_matrix(
        agents, faults, seeds=args.seeds or (1,), timeline=timeline, progress=progress, problems=problems
    )
    print_matrix(matrix, out, verbose=args.verbose)
    if args.json is not None:
        write_json(matrix, args.json)
        print(f"wrote {args.json}", file=out)
    if args.plot is not None:
        write_plot(matrix, args.plot)
        print(f"wrote {args.plot}", file=out)
    return EXIT_OK if matrix.passed and not matrix.problems else EXIT_FAIL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sol faults", description="Fault injection: prove every agent safe under every failure."
    )
    add_faults_arguments(parser)
    return faults_command(parser.parse_args(argv), sys.stdout)
