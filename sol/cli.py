"""``sol``: the daemon and its tools.

    sol run          the daemon in the foreground (live executor; --duration to end by itself)
    sol sim          accelerated simulation of a node (virtual time), summary table at the end
    sol agents       the agents this install knows
    sol check-config validate a config file
    sol restore      roll back every open undo record (systemd ExecStopPost=)
    sol data         public traces: list, fetch

Wrong arguments print the usage and exit 2. A config, journal or backend problem prints a
message naming it and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from sol import __version__
from sol.config import Config, ConfigError, default_config_path, load_config
from sol.log import configure
from sol.registry import Registry

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _duration(text: str) -> float:
    from sol.daemon import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sol",
        description="SOL node agents: safe on-node learning agents and their daemon.",
    )
    p.add_argument("--version", action="version", version=f"sol {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="config file (default: $SOL_CONFIG, else /etc/sol/sol.toml, else the embedded default)",
        )

    run = sub.add_parser("run", help="run the daemon in the foreground")
    with_config(run)
    run.add_argument("--duration", type=_duration, metavar="D", help="stop by itself after D (e.g. 30s, 10m)")
    run.add_argument("--backend", choices=["sim", "linux"], help="override the config's backend")
    run.add_argument(
        "--dry-run", action="store_true", help="every agent in dry-run: log writes, change nothing"
    )
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override [log] format")

    sim = sub.add_parser("sim", help="simulate a node in virtual time and print a summary")
    with_config(sim)
    sim.add_argument(
        "--duration", type=_duration, default=3600.0, metavar="D", help="virtual time (default 1h)"
    )
    src = sim.add_mutually_exclusive_group()
    src.add_argument("--scenario", metavar="NAME", help="a named scenario (see --list-scenarios)")
    src.add_argument("--trace", type=Path, metavar="PATH", help="replay a public trace file")
    sim.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    sim.add_argument("--seed", type=int, help="override [sim] seed")
    sim.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots of the key series to DIR")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument("--verbose", action="store_true", help="log agent events (to stderr)")

    agents = sub.add_parser("agents", help="list the agents this install knows")
    with_config(agents)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, nargs="?", help="the file (default: as `sol run` would pick)")

    restore = sub.add_parser("restore", help="roll back every open undo record")
    with_config(restore)
    restore.add_argument(
        "--journal", type=Path, metavar="FILE", help="the journal (default: from the config)"
    )

    data = sub.add_parser("data", help="public traces: list and fetch")
    try:
        from sol.sim.datasets import add_data_arguments
    except ImportError:  # pragma: no cover - the simulator ships with the package
        pass
    else:
        add_data_arguments(data)
    return p


def _load(path: Path | None, registry: Registry, err: TextIO) -> Config | None:
    try:
        return load_config(path if path is not None else default_config_path(), agents=registry.classes())
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"sol: {problem}", file=err)
        print("sol: fix the config (`sol check-config FILE` lists every problem)", file=err)
        return None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    registry = Registry()
    try:
        return _dispatch(args, registry, out, err)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from sol.daemon import DaemonError

        if isinstance(exc, DaemonError | OSError | LookupError | ValueError):
            print(f"sol {args.command}: {exc}", file=err)
            return EXIT_FAIL
        raise


def _dispatch(args: argparse.Namespace, registry: Registry, out: TextIO, err: TextIO) -> int:
    cmd = args.command
    if cmd == "check-config":
        from sol.config import check_config_command

        path = args.file if args.file is not None else default_config_path()
        return check_config_command(path, registry.classes(), out)

    if cmd == "agents":
        return _agents(registry, out)

    if cmd == "data":
        from sol.sim.datasets import data_command

        return data_command(args, out)

    if cmd == "restore":
        from sol.safety.journal import restore_command

        journal = args.journal
        if journal is None:
            config = _load(args.config, registry, err)
            if config is None:
                return EXIT_FAIL
            journal = config.journal_path
        return restore_command(journal, out=out)

    config = _load(args.config, registry, err)
    if config is None:
        return EXIT_FAIL

    if cmd == "run":
        from dataclasses import replace

        from sol.daemon import run_daemon

        if args.backend:
            config = replace(config, backend=args.backend)
        if args.dry_run:
            config = replace(config, agents={n: replace(a, dry_run=True) for n, a in config.agents.items()})
        configure(args.log_format or config.log.format, config.log.level)
        return run_daemon(config, duration=args.duration)

    if cmd == "sim":
        from sol.daemon import run_simulation

        if args.list_scenarios:
            from sol.sim.scenarios import list_scenarios

            for info in list_scenarios():
                print(f"{info.name:<24} {info.description}", file=out)
            return EXIT_OK
        configure(
            "console" if args.verbose else "json", "info" if args.verbose else "error", stream=sys.stderr
        )
        return run_simulation(
            config,
            duration=args.duration,
            scenario=args.scenario,
            trace=args.trace,
            seed=args.seed,
            plots=args.plots,
            out=out,
            progress=not args.quiet,
            registry=registry,
        )
    raise AssertionError(cmd)


def _agents(registry: Registry, out: TextIO) -> int:
    rows = [("name", "origin", "schedule", "description")]
    for entry in registry.entries():
        try:
            cls = registry.get(entry.name)
        except Exception as exc:
            rows.append((entry.name, entry.origin, "-", f"UNAVAILABLE: {exc}"))
            continue
        s = cls.schedule
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            (
                entry.name,
                entry.origin,
                f"collect {s.collect_every:g}s / act {s.act_every:g}s",
                doc[0] if doc else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3], file=out)
    for problem in registry.problems:
        print(f"problem: {problem}", file=out)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
