"""``sol``: the daemon and its tools.

    sol run          the daemon in the foreground (live executor; --duration to end by itself)
    sol status       what the running daemon and each agent are doing (control socket)
    sol ctl          pause/resume an agent, dry-run on/off, reload, health (control socket)
    sol sim          accelerated simulation of a node (virtual time), summary table at the end
    sol agents       the agents this install knows, and which ones the config enables
    sol new-agent    a new agent as an installable plugin package (agent, entry point, test)
    sol check-config validate a config file
    sol restore      roll back every open undo record (systemd ExecStopPost=)
    sol install      put the systemd unit, tmpfiles snippet and an example config in place
    sol data         public traces: list, fetch
    sol completion   a bash or zsh completion script

``--json`` gives ``sim``, ``agents``, ``check-config`` and ``status`` as JSON for scripts.

Wrong arguments print the usage and exit 2. A config, journal or backend problem prints a
message naming it and exits 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from sol import __version__
from sol.config import Config, ConfigError, ConfigProblem, default_config_path, load_config
from sol.log import configure
from sol.registry import Registry, RegistryError
from sol.sdk import Agent

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _duration(text: str) -> float:
    from sol.summary import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _agent_name(text: str) -> str:
    from sol.registry import BUILTIN_AGENTS
    from sol.scaffold import ScaffoldError, check_name

    try:
        return check_name(text, taken=BUILTIN_AGENTS)
    except ScaffoldError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (the one being run), the ``data`` and ``faults``
    subcommands get their arguments only when they are that command: their modules import
    the simulator and the fault harness (numpy and more), which ``sol restore`` under
    ``ExecStopPost=`` must not wait for (5x the start-up of a bare command)."""
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
    run.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="override [log] format; the summary table at the end goes beside console logs, else to stderr",
    )

    def with_socket(sp: argparse.ArgumentParser) -> None:
        with_config(sp)
        sp.add_argument(
            "--socket",
            type=Path,
            metavar="PATH",
            help="the daemon's control socket (default: [daemon] control_socket, /run/sol/sol.sock, "
            "<state_dir>/sol.sock)",
        )

    status = sub.add_parser("status", help="what the running daemon and its agents are doing")
    with_socket(status)
    status.add_argument("--json", action="store_true", help="the raw status object")
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        metavar="S",
        help="redraw every S seconds (default 2) until Ctrl-C",
    )

    ctl = sub.add_parser("ctl", help="change the running daemon: pause, resume, dry-run, reload, health")
    ctl_sub = ctl.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("pause", "stop an agent (clean-up, restore) until resumed"),
        ("resume", "start it again"),
    ):
        sp = ctl_sub.add_parser(action, help=text)
        with_socket(sp)
        sp.add_argument("agent", metavar="AGENT")
    dry = ctl_sub.add_parser("dry-run", help="restart agents with their actuators in (or out of) dry-run")
    with_socket(dry)
    dry.add_argument("state", choices=["on", "off"])
    dry.add_argument("agent", nargs="?", metavar="AGENT", help="one agent (default: every agent)")
    for action, text in (
        ("reload", "re-read the config file, as SIGHUP does"),
        ("health", "exit 0 while every agent loop is alive (for probes)"),
    ):
        with_socket(ctl_sub.add_parser(action, help=text))

    def with_hint_socket(sp: argparse.ArgumentParser) -> None:
        with_socket(sp)
        sp.add_argument(
            "--workload",
            action="store_true",
            help="use the workload socket ([hints] socket): as a workload, for your own cgroup "
            "(default when you are not root and it is configured)",
        )

    hint = sub.add_parser("hint", help="workload hints: what a workload tolerates (docs/hints.md)")
    hint_sub = hint.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("set", "set hints: KEY=VALUE ..."), ("clear", "clear hints: KEY ... (none: all)")):
        sp = hint_sub.add_parser(action, help=text)
        with_hint_socket(sp)
        who = sp.add_mutually_exclusive_group(required=True)
        who.add_argument("--cgroup", metavar="PATH", help="a cgroup, by its path below the cgroup root")
        who.add_argument("--pid", type=int, metavar="PID", help="a process")
        sp.add_argument(
            "items",
            nargs="*" if action == "clear" else "+",
            metavar="KEY=VALUE" if action == "set" else "KEY",
        )
    show = hint_sub.add_parser("show", help="every target's hints (yours, on the workload socket)")
    with_hint_socket(show)
    show.add_argument("--cgroup", metavar="PATH", help="only this cgroup")

    notices = sub.add_parser("notices", help="what the agents are about to do, as JSON lines")
    with_hint_socket(notices)
    notices.add_argument("--cgroup", metavar="PATH", help="only notices that concern this cgroup")
    notices.add_argument("--after", type=int, default=0, metavar="SEQ", help="only notices after this one")
    notices.add_argument("--follow", "-f", action="store_true", help="keep printing new notices until Ctrl-C")

    inst = sub.add_parser("install", help="install the systemd unit, tmpfiles snippet and an example config")
    inst.add_argument(
        "--root", type=Path, default=Path("/"), metavar="DIR", help="install under DIR (default /)"
    )
    inst.add_argument(
        "--units",
        type=Path,
        metavar="DIR",
        help="the systemd/ folder of the source tree (default: found next to sol)",
    )
    inst.add_argument(
        "--bin", type=Path, metavar="PATH", help="the sol executable the unit runs (default: this one)"
    )
    inst.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    inst.add_argument(
        "--force", action="store_true", help="install even if the unit could not run the executable"
    )

    sim = sub.add_parser("sim", help="simulate a node in virtual time and print a summary")
    with_config(sim)
    sim.add_argument(
        "--duration",
        type=_duration,
        metavar="D",
        help="virtual time (default: the scenario's own, see --list-scenarios)",
    )
    src = sim.add_mutually_exclusive_group()
    src.add_argument("--scenario", metavar="NAME", help="a named scenario (see --list-scenarios)")
    src.add_argument("--trace", type=Path, metavar="PATH", help="replay a public trace file")
    sim.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    sim.add_argument("--seed", type=int, help="override [sim] seed")
    sim.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots of the key series to DIR")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--verbose", action="store_true", help="log agent events (to stderr), stamped with simulated time"
    )
    sim.add_argument("--json", action="store_true", help="the results as one JSON object")

    agents = sub.add_parser("agents", help="list the agents this install knows and which the config enables")
    with_config(agents)
    agents.add_argument("--json", action="store_true", help="as a JSON object")

    new = sub.add_parser("new-agent", help="write a new agent as an installable plugin package")
    new.add_argument("name", type=_agent_name, metavar="NAME", help="the agent's name (snake_case)")
    new.add_argument(
        "--dir", type=Path, default=Path("."), metavar="DIR", help="where to write sol-agent-NAME (default .)"
    )

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path, nargs="?", help="the file (default: as `sol run` would pick)")
    check.add_argument(
        "--json", action="store_true", help="a JSON list of problems: {file, line, key, message}"
    )

    restore = sub.add_parser("restore", help="roll back every open undo record")
    with_config(restore)
    restore.add_argument(
        "--journal", type=Path, metavar="FILE", help="the journal (default: from the config)"
    )
    restore.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="when a running daemon holds the journal, ask it over this control socket",
    )

    data = sub.add_parser("data", help="public traces: list and fetch")
    if command in (None, "data"):
        try:
            from sol.sim.datasets import add_data_arguments
        except ImportError:  # pragma: no cover - the simulator ships with the package
            pass
        else:
            add_data_arguments(data)

    faults = sub.add_parser("faults", help="fault injection: list faults, run one, run the matrix")
    if command in (None, "faults"):
        from sol.fault_injection.cli import add_faults_arguments

        add_faults_arguments(faults)

    completion = sub.add_parser("completion", help="print a shell completion script (bash, zsh)")
    completion.add_argument("shell", choices=["bash", "zsh"])
    return p


def _command(argv: Sequence[str]) -> str:
    """The subcommand ``argv`` names ("" when none: the top-level help or an error)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""


class LazyAgents(Mapping[str, "type[Agent]"]):
    """The registry as the config loader's name -> class map, importing only the agents a
    config names: a daemon running one agent does not pay for importing every other one
    (their learners pull in large libraries). A name whose import fails is missing, as in
    ``Registry.classes()``, with the reason in ``registry.problems``."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._loaded: dict[str, type[Agent] | None] = {}

    def __getitem__(self, name: str) -> type[Agent]:
        if name not in self._loaded:
            if name not in self._registry.names():
                raise KeyError(name)
            try:
                self._loaded[name] = self._registry.get(name)
            except RegistryError as exc:
                self._registry.problems.append(str(exc))
                self._loaded[name] = None
        cls = self._loaded[name]
        if cls is None:
            raise KeyError(name)
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry.names())

    def __len__(self) -> int:
        return len(self._registry.names())


def _load(path: Path | None, registry: Registry, err: TextIO) -> Config | None:
    try:
        return load_config(path if path is not None else default_config_path(), agents=LazyAgents(registry))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"sol: {problem}", file=err)
        print("sol: fix the config (`sol check-config FILE` lists every problem)", file=err)
        return None


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command(argv)).parse_args(argv)
    registry = Registry()
    try:
        return _dispatch(args, registry, out, err)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from sol.control import ControlError
        from sol.daemon import DaemonError

        if isinstance(exc, DaemonError | ControlError | OSError | LookupError | ValueError):
            print(f"sol {args.command}: {exc}", file=err)
            return EXIT_FAIL
        raise


def _dispatch(args: argparse.Namespace, registry: Registry, out: TextIO, err: TextIO) -> int:
    cmd = args.command
    if cmd == "check-config":
        from sol.config import check_config_command
        from sol.daemon import config_file_problems

        path = args.file if args.file is not None else default_config_path()
        unsafe = config_file_problems(path) if path is not None else []
        if args.json:
            return _check_config_json(path, unsafe, registry, out)
        for problem in unsafe:
            print(f"{path}: unsafe for a root daemon: {problem}", file=out)
        rc = check_config_command(path, LazyAgents(registry), out)
        return rc or (EXIT_FAIL if unsafe else EXIT_OK)

    if cmd == "agents":
        return _agents(args, registry, out, err)

    if cmd == "completion":
        from sol.completion import completion_script

        out.write(completion_script(args.shell, build_parser()))
        return EXIT_OK

    if cmd == "new-agent":
        return _new_agent(args, out)

    if cmd == "data":
        from sol.sim.datasets import data_command

        return data_command(args, out)

    if cmd == "faults":
        from sol.fault_injection.cli import faults_command

        status: int = faults_command(args, out)
        return status

    if cmd == "install":
        from sol.install import install_command

        return install_command(
            root=args.root,
            units=args.units,
            sol_bin=args.bin,
            dry_run=args.dry_run,
            force=args.force,
            out=out,
            err=err,
        )

    if cmd == "restore":
        return _restore(args, registry, out, err)

    if cmd == "run":
        return _run(args, registry, out, err)

    if cmd in ("status", "ctl", "hint", "notices"):
        config = _load(args.config, registry, err)
        if config is None:
            return EXIT_FAIL
        if cmd == "status":
            return _status(args, config, out, err)
        if cmd == "hint":
            return _hint(args, config, out, err)
        if cmd == "notices":
            return _notices(args, config, out, err)
        return _ctl(args, config, out, err)

    config = _load(args.config, registry, err)
    if config is None:
        return EXIT_FAIL

    if cmd == "sim":
        return _sim(args, config, registry, out, err)
    raise AssertionError(cmd)


def _sim(args: argparse.Namespace, config: Config, registry: Registry, out: TextIO, err: TextIO) -> int:
    from sol.simulate import render_scenarios, run_simulation

    if args.list_scenarios:
        if args.json:
            from dataclasses import asdict

            from sol.sim.scenarios import list_scenarios

            print(json.dumps([asdict(i) for i in list_scenarios()], indent=2), file=out)
        else:
            print(render_scenarios(), file=out)
        return EXIT_OK
    fmt: Any = "console" if args.verbose else "json"
    level = "info" if args.verbose else "error"
    configure(fmt, level, stream=err)  # until the run begins: loading a trace may log
    return run_simulation(
        config,
        duration=args.duration,
        scenario=args.scenario,
        trace=args.trace,
        seed=args.seed,
        plots=args.plots,
        out=out,
        err=err,
        progress=not args.quiet,
        as_json=args.json,
        registry=registry,
        # events happen at simulated times: stamp them so, not with the wall clock's
        configure_log=lambda clock: configure(fmt, level, stream=err, clock=clock),
    )


def _run(args: argparse.Namespace, registry: Registry, out: TextIO, err: TextIO) -> int:
    from dataclasses import replace

    from sol.daemon import check_config_file, run_daemon

    path = args.config if args.config is not None else default_config_path()
    check_config_file(path)  # as root: refuse a file someone else could have written

    def load() -> Config:
        check_config_file(path)
        config = load_config(path, agents=LazyAgents(registry))
        if args.backend:
            config = replace(config, backend=args.backend)
        if args.dry_run:
            config = replace(config, agents={n: replace(a, dry_run=True) for n, a in config.agents.items()})
        return config

    try:
        config = load()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"sol: {problem}", file=err)
        print("sol: fix the config (`sol check-config FILE` lists every problem)", file=err)
        return EXIT_FAIL
    log_format = args.log_format or config.log.format
    configure(log_format, config.log.level, stream=out)
    # the summary table follows console logs on their stream; JSON lines stay JSON lines
    console = log_format == "console" or (log_format == "auto" and out.isatty())
    return run_daemon(
        config,
        duration=args.duration,
        registry=registry,
        load=load,
        relog=lambda c: configure(args.log_format or c.log.format, c.log.level, stream=out),
        summary=out if console else err,
    )


def _sockets(args: argparse.Namespace, config: Config) -> list[Path]:
    from sol.daemon import control_socket_candidates

    if getattr(args, "socket", None) is not None:
        return [args.socket]
    return control_socket_candidates(config)


def _ask(args: argparse.Namespace, config: Config, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request to the first socket that answers; ControlError when none does."""
    from sol.control import ControlError, request

    candidates = _sockets(args, config)
    last: ControlError | None = None
    for path in candidates:
        if len(candidates) > 1 and not path.exists():
            continue
        try:
            return request(path, payload)
        except ControlError as exc:
            last = exc
    if last is not None:
        raise last
    raise ControlError(
        f"no control socket at {' or '.join(map(str, candidates))}: "
        "is the daemon running? (`systemctl status sol`)"
    )


_FAILED = object()


def _result(
    args: argparse.Namespace, config: Config, payload: Mapping[str, Any], what: str, err: TextIO
) -> Any:
    """The result of one request, or ``_FAILED`` after printing why (no daemon, or its refusal)."""
    from sol.control import ControlError

    try:
        reply = _ask(args, config, payload)
    except ControlError as exc:
        print(f"sol {what}: {exc}", file=err)
        return _FAILED
    if not reply.get("ok"):
        print(f"sol {what}: {reply.get('error')}", file=err)
        return _FAILED
    return reply.get("result")


def _hint_socket(args: argparse.Namespace, config: Config) -> None:
    """``--workload`` (or a user with a workload socket configured): ask that socket."""
    if args.socket is None and config.hints.socket is not None and (args.workload or os.geteuid() != 0):
        args.socket = config.hints.socket


def _hint_value(text: str) -> object:
    """A hint value from the command line: true/false, a number, else the text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _hint(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:

    _hint_socket(args, config)
    payload: dict[str, Any]
    if args.action == "show":
        payload = {"cmd": "hints"}
        if args.cgroup:
            payload["cgroup"] = args.cgroup
    else:
        payload = {"cmd": "hint", **({"cgroup": args.cgroup} if args.cgroup else {"pid": args.pid})}
        if args.action == "set":
            pairs = {}
            for item in args.items:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    print(f"sol hint set: {item!r} is not KEY=VALUE", file=err)
                    return EXIT_USAGE
                pairs[key] = _hint_value(value)
            payload["set"] = pairs
        else:
            payload["clear"] = list(args.items) if args.items else True
    result = _result(args, config, payload, f"hint {args.action}", err)
    if result is _FAILED:
        return EXIT_FAIL
    print(json.dumps(result, indent=2), file=out)
    return EXIT_OK


def _notices(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:

    _hint_socket(args, config)
    after = args.after
    while True:
        payload: dict[str, Any] = {"cmd": "notices", "after": after}
        if args.cgroup:
            payload["cgroup"] = args.cgroup
        result = _result(args, config, payload, "notices", err)
        if result is _FAILED:
            return EXIT_FAIL
        if result.get("missed"):
            print(json.dumps({"missed": result["missed"]}), file=out)
        for notice in result.get("notices", []):
            print(json.dumps(notice), file=out)
        out.flush()
        got = result.get("notices", [])
        # a full reply may stop short of the last: go on from the last one printed
        after = int(got[-1]["seq"]) if len(got) >= 1000 else max(after, int(result.get("last", after)))
        if not args.follow:
            return EXIT_OK
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return EXIT_OK


def _status(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    from sol.control import ControlError

    while True:
        try:
            reply = _ask(args, config, {"cmd": "status"})
        except ControlError as exc:
            print(f"sol status: {exc}", file=err)
            return EXIT_FAIL
        if not reply.get("ok"):
            print(f"sol status: {reply.get('error')}", file=err)
            return EXIT_FAIL
        if args.json:
            print(json.dumps(reply["result"], indent=2), file=out)
        else:
            if args.watch and out.isatty():
                out.write("\x1b[H\x1b[2J")
            print(render_status(reply["result"]), file=out)
        out.flush()
        if not args.watch:
            return EXIT_OK
        try:
            time.sleep(max(0.2, args.watch))
        except KeyboardInterrupt:
            return EXIT_OK


def _ctl(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:

    action = args.action
    payload: dict[str, Any] = {"cmd": action}
    if action in ("pause", "resume"):
        payload["agent"] = args.agent
    elif action == "dry-run":
        payload["on"] = args.state == "on"
        if args.agent:
            payload["agent"] = args.agent
    result = _result(args, config, payload, f"ctl {action}", err)
    if result is _FAILED:
        return EXIT_FAIL
    result = result or {}
    if action == "health":
        print("alive" if result.get("alive") else f"NOT alive: {result.get('detail')}", file=out)
        return EXIT_OK if result.get("alive") else EXIT_FAIL
    if action == "reload" and isinstance(result, dict) and not result.get("ok"):
        print("reload failed, the running config is kept:", file=err)
        for problem in result.get("problems", []):
            print(f"  {problem}", file=err)
        return EXIT_FAIL
    print(json.dumps(result, indent=2), file=out)
    return EXIT_OK


def _restore(args: argparse.Namespace, registry: Registry, out: TextIO, err: TextIO) -> int:
    from sol.actuators.restorers import HostRoots, TargetScope
    from sol.files import ownership_problems
    from sol.safety.journal import restore_command

    # A root restore writes what the journal says: it trusts a config (which names the journal
    # and the roots of what may be written) only as far as `sol run` does.
    source = args.config if args.config is not None else default_config_path()
    untrusted = ownership_problems(source, what="config") if source is not None and source.exists() else []
    if untrusted:
        print(
            f"sol restore: refusing config {source}: anyone who can change it chooses what a root "
            "restore writes: " + "; ".join(untrusted),
            file=err,
        )
        return EXIT_FAIL
    config: Config | None = None
    journal = args.journal
    if journal is None or args.config is not None:
        config = _load(args.config, registry, err)
    # ExecStopPost= must restore even when the config was broken in the meantime: the journal
    # and the roots of what may be written then come from the raw file, else the defaults
    raw = _raw_config(args.config) if config is None else {}
    if journal is None:
        if config is None:
            journal = _journal_of_broken_config(raw)
            print(f"sol restore: using the undo journal {journal} despite the config errors above", file=err)
        else:
            journal = config.journal_path
    linux = config.linux if config is not None else _linux_of_broken_config(raw)
    captured = io.StringIO()
    scope, roots = TargetScope.from_linux(linux), HostRoots.from_linux(linux)
    rc = restore_command(journal, out=captured, scope=scope, roots=roots)
    if rc != 3 or config is None:
        out.write(captured.getvalue())
        return rc
    # A running daemon holds the journal: ask it to pause its agents and restore instead.
    from sol.control import ControlError

    try:
        reply = _ask(args, config, {"cmd": "restore"})
    except ControlError as exc:
        out.write(captured.getvalue())
        print(f"sol restore: and its control socket does not answer: {exc}", file=out)
        return rc
    if not reply.get("ok"):
        print(f"sol restore: the running daemon refused: {reply.get('error')}", file=out)
        return EXIT_FAIL
    result = reply["result"]
    paused = ", ".join(result["paused"]) or "no agent"
    print(f"a running daemon holds {journal}: it paused {paused} and restored", file=out)
    for line in result["restored"]:
        print(f"restored  {line}", file=out)
    for line in result["failed"]:
        print(f"FAILED    {line}", file=out)
    print(f"{result['open_undo_records']} undo record(s) still open; {result['note']}", file=out)
    return EXIT_OK if not result["failed"] else EXIT_FAIL


def _raw_config(path: Path | None) -> dict[str, Any]:
    """The config file as plain TOML, for ``sol restore`` when it does not load as a config."""
    import tomllib

    from sol.files import CONFIG_MAX_BYTES, read_regular

    source = path if path is not None else default_config_path()
    if source is None:
        return {}
    try:  # as the loader reads it: a regular file under the cap (a FIFO would block for ever)
        raw = tomllib.loads(read_regular(Path(source), max_bytes=CONFIG_MAX_BYTES, what="config").decode())
    except (OSError, ValueError):
        return {}
    return raw


def _journal_of_broken_config(raw: Mapping[str, Any]) -> Path:
    from sol.config import _default_state_dir

    paths = raw.get("paths") if isinstance(raw.get("paths"), dict) else {}
    assert isinstance(paths, dict)
    if isinstance(paths.get("journal"), str) and paths["journal"]:
        return Path(paths["journal"])
    if isinstance(paths.get("state_dir"), str) and paths["state_dir"]:
        return Path(paths["state_dir"]) / "undo.journal"
    backend = raw.get("backend") if raw.get("backend") in ("sim", "linux") else "linux"
    return _default_state_dir(str(backend), os.environ) / "undo.journal"


def _linux_of_broken_config(raw: Mapping[str, Any]) -> Any:
    """The ``[linux]`` roots a broken config names (what a restore may write), else defaults."""
    from sol.config import LinuxConfig, LinuxFaasConfig

    def table(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = parent.get(key)
        return value if isinstance(value, dict) else {}

    def absolute(table: Mapping[str, Any], key: str) -> Path | None:
        value = table.get(key)
        return Path(value) if isinstance(value, str) and Path(value).is_absolute() else None

    linux = table(raw, "linux")
    default = LinuxConfig()
    return LinuxConfig(
        cgroup_root=absolute(linux, "cgroup_root") or default.cgroup_root,
        proc_root=absolute(linux, "proc_root") or default.proc_root,
        sys_root=absolute(linux, "sys_root") or default.sys_root,
        # [linux.faas] cache_dir, or the deprecated [linux] faas_cache_dir
        faas=LinuxFaasConfig(
            cache_dir=absolute(table(linux, "faas"), "cache_dir") or absolute(linux, "faas_cache_dir")
        ),
    )


def render_status(status: Mapping[str, Any]) -> str:
    """The status object as an operator reads it: one header, one row per agent."""
    d = status.get("daemon", {})
    uptime = _fmt_age(float(d.get("uptime_s") or 0))
    health = "loops ok" if d.get("loops_alive") else f"LOOPS STALLED: {', '.join(d.get('stalled') or [])}"
    reloads = d.get("reloads") or {}
    cpu = d.get("cpu_pct")
    if cpu is not None:
        health += f"  cpu {cpu:.2f} % of a core (last {d.get('cpu_window_s', 0):.0f} s)"
    lines = [
        f"sol {d.get('version')}  pid {d.get('pid')}  up {uptime}  backend {d.get('backend')}  {health}",
        f"config {d.get('config')}  rollback {d.get('rollback')}  "
        f"open undo records {d.get('open_undo_records')}"
        f"  reloads {reloads.get('ok', 0)} ok / {reloads.get('failed', 0)} failed",
    ]
    if d.get("metrics"):
        lines.append(f"metrics {d['metrics']}")
    last = d.get("last_reload")
    if last and not last.get("ok"):
        lines.append(f"LAST RELOAD FAILED (running config kept): {'; '.join(last.get('problems', []))[:300]}")
    rows: list[tuple[str, ...]] = [
        (
            "AGENT",
            "STATE",
            "DRY-RUN",
            "LAST DECISION",
            "DECISIONS",
            "MODEL",
            "ERRORS",
            "MITIG",
            "CPU s",
            "ACT LATE p99",
        )
    ]
    for a in status.get("agents", []):
        last_decision = a.get("last_source") or "-"
        if a.get("last_reason"):
            last_decision += f"/{a['last_reason']}"
        share = a.get("model_share")
        late = a.get("act_late_p99_ms")
        rows.append(
            (
                str(a.get("agent")),
                str(a.get("state")),
                "yes" if a.get("dry_run") else "no",
                last_decision,
                str(a.get("decisions", 0)),
                f"{100 * share:.0f}%" if share is not None else "-",
                str(a.get("errors", 0)),
                str(a.get("mitigations", 0)),
                f"{a.get('cpu_s', 0.0):.2f}",
                f"{late:.1f}ms" if late is not None else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for a in status.get("agents", []):
        if a.get("reason") and a.get("state") != "running":
            lines.append(f"  {a['agent']}: {a['state']}: {a['reason']}")
    if not status.get("agents"):
        lines.append("(no agents configured)")
    return "\n".join(lines)


def _fmt_age(seconds: float) -> str:
    seconds = int(seconds)
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m}m"
    return f"{m}m{s}s" if m else f"{s}s"


def _agents(args: argparse.Namespace, registry: Registry, out: TextIO, err: TextIO) -> int:
    """Every agent this install knows and, per the config, whether it runs: enabled, in
    dry-run, on which schedule (the config's overrides applied)."""
    from dataclasses import asdict

    config = _load(args.config, registry, err)  # a broken config: its problems on stderr
    configured = config.agents if config is not None else {}
    rows: list[dict[str, Any]] = []
    unavailable: set[str] = set()
    for entry in registry.entries():
        row: dict[str, Any] = {"name": entry.name, "origin": entry.origin}
        ac = configured.get(entry.name)
        row["configured"] = ac is not None
        row["enabled"] = ac is not None and ac.enabled
        row["dry_run"] = ac is not None and ac.dry_run
        try:
            cls = registry.get(entry.name)
        except Exception as exc:
            unavailable.add(str(exc))
            rows.append(
                {
                    **row,
                    "schedule": None,
                    "schedule_from_config": False,
                    "description": "",
                    "problem": str(exc),
                }
            )
            continue
        schedule = ac.schedule if ac is not None else cls.schedule
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                **row,
                "schedule": asdict(schedule),
                "schedule_from_config": schedule != cls.schedule,
                "description": doc[0] if doc else "",
                "problem": None,
            }
        )
    problems = [p for p in dict.fromkeys(registry.problems) if p not in unavailable]
    if args.json:
        document = {
            "config": config.source if config is not None else None,
            "agents": rows,
            "problems": problems,
        }
        print(json.dumps(document, indent=2), file=out)
        return EXIT_OK if config is not None else EXIT_FAIL
    table = [("name", "origin", "enabled", "schedule", "description")]
    for r in rows:
        if r["problem"] is not None:
            table.append((r["name"], r["origin"], _enabled_cell(r), "-", f"UNAVAILABLE: {r['problem']}"))
            continue
        sch = r["schedule"]
        when = f"collect {sch['collect_every']:g}s / act {sch['act_every']:g}s"
        table.append(
            (
                r["name"],
                r["origin"],
                _enabled_cell(r),
                when + (" (config)" if r["schedule_from_config"] else ""),
                r["description"],
            )
        )
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t[:4], widths, strict=True)) + "  " + t[4], file=out)
    if config is not None:
        on = [a.name for a in config.enabled_agents]
        print(f"config {config.source}: enables {', '.join(on) or 'no agent'}", file=out)
    for problem in problems:
        print(f"problem: {problem}", file=out)
    return EXIT_OK if config is not None else EXIT_FAIL


def _enabled_cell(row: Mapping[str, Any]) -> str:
    if not row["configured"]:
        return "-"
    if not row["enabled"]:
        return "disabled"
    return "yes, dry-run" if row["dry_run"] else "yes"


def _check_config_json(path: Path | None, unsafe: Sequence[str], registry: Registry, out: TextIO) -> int:
    """``sol check-config --json``: every problem as ``{file, line, key, message, severity}``
    (``"error"``, or ``"warning"`` for what loads but should change); [] when none. Exit 1 on
    any error, warnings alone exit 0."""
    source = str(path) if path is not None else None

    def row(p: ConfigProblem, severity: str) -> dict[str, Any]:
        return {"file": p.source, "line": p.line, "key": p.key, "message": p.message, "severity": severity}

    problems = [
        {
            "file": source,
            "line": None,
            "key": None,
            "message": f"unsafe for a root daemon: {p}",
            "severity": "error",
        }
        for p in unsafe
    ]

    try:
        config = load_config(path, agents=LazyAgents(registry))
    except ConfigError as exc:
        found = [row(p, "warning") for p in exc.warnings] + [row(p, "error") for p in exc.problems]
    else:
        found = [row(p, "warning") for p in config.warnings]
    problems += sorted(found, key=lambda p: (p["line"] is None, p["line"] or 0))
    print(json.dumps(problems, indent=2), file=out)
    return EXIT_FAIL if any(p["severity"] == "error" for p in problems) else EXIT_OK


def _new_agent(args: argparse.Namespace, out: TextIO) -> int:
    from sol.registry import BUILTIN_AGENTS
    from sol.scaffold import Names, new_agent

    target = new_agent(args.name, args.dir, taken=BUILTIN_AGENTS)
    n = Names.of(args.name)
    print(f"wrote {target}: agent {n.name!r} ({n.package}.agent:{n.cls}), its test and a README", file=out)
    print(f"next: cd {target} && pip install -e '.[test]' && pytest", file=out)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
