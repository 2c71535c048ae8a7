"""The daemon's configuration: one TOML file, typed and validated at load (DESIGN §6).

Every problem is collected, not just the first, and each one names the file, the line, the
dotted key and what was wrong, so an operator can fix a whole file in one pass::

    sol.toml:12: agents.noop.schedule.colect_every: unknown key (known: collect_every, ...)
    sol.toml:4: rollback: expected one of "auto", "not_on_exit", got "sometimes"

The schema is the frozen dataclasses below. Their fields *are* the schema: the known keys,
their types and their defaults are derived from the field annotations, so adding a setting to
``[sim]`` or ``[linux]`` is a one-line change. Supported field types: ``str``, ``int``,
``float`` (an integer is accepted), ``bool`` (never accepted as a number, nor a number as a
bool), ``Path``, ``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]``,
``dict[str, X]`` and nested dataclasses (a sub-table). Per-agent ``params`` tables use the
same machinery on the agent class's ``Params`` dataclass. A key that moved (``_MOVED``: the
flat ``[linux]`` keys of earlier versions) still loads at its new place, checked there but
reported at the key the file wrote, with a warning naming the new key (``Config.warnings``).

Every value is checked on its own, at its key: a number must be finite (TOML has ``nan`` and
``inf``) and within the range its field declares (``sol.sdk.bounds``, or any
``sol.sdk.rule``), elementwise for arrays. Checks across fields (a ``__post_init__``, the
agent class's ``check_params``, which runs what its ``setup`` would check without touching
the host) run once a table's values have all loaded; an unknown key does not stop them.

>>> from sol.sdk import Agent, Schedule
>>> class Idle(Agent):
...     name = "idle"
...     schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)
>>> text = '''
... [agents.idle.schedule]
... collect_every = 2
... '''
>>> cfg = loads_config(text, source="sol.toml", agents={"idle": Idle})
>>> cfg.agents["idle"].schedule.collect_every, cfg.backend
(2.0, 'sim')
>>> try:
...     loads_config('rollback = "sometimes"', source="sol.toml", agents={})
... except ConfigError as e:
...     print(e)
sol.toml:1: rollback: expected one of "auto", "not_on_exit", got "sometimes"
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import difflib
import importlib.resources
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from sol.files import CONFIG_MAX_BYTES, UntrustedFileError, read_regular
from sol.sdk import (
    MAX_PERIOD_S,
    MIN_PERIOD_S,
    Agent,
    FieldCheck,
    NoParams,
    ParamError,
    Schedule,
    ScheduleError,
    bounds,
    check_fields,
    field_check,
    relative_cgroup,
    rule,
)

__all__ = [
    "EMBEDDED_SOURCE",
    "SYSTEM_CONFIG_PATH",
    "AgentConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DaemonConfig",
    "HintsConfig",
    "LinuxConfig",
    "LinuxCpuConfig",
    "LinuxFaasConfig",
    "LinuxGpuConfig",
    "LinuxMemoryConfig",
    "LogConfig",
    "MemoryTarget",
    "PathsConfig",
    "SimConfig",
    "check_config_command",
    "default_config_path",
    "load_config",
    "loads_config",
    "locate_keys",
]

#: What ``Config.source`` says when no file was given.
EMBEDDED_SOURCE = "<embedded default>"
#: Where ``sol`` looks when ``$SOL_CONFIG`` is not set.
SYSTEM_CONFIG_PATH = Path("/etc/sol/sol.toml")

KeyPath = tuple[str, ...]


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    source: str
    line: int | None
    key: str | None
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` lists every reason, in file order.

    ``warnings`` are what would only have been warned about had the file loaded (a
    deprecated key), so ``sol check-config`` shows a whole file's to-do list at once.
    """

    def __init__(self, problems: Sequence[ConfigProblem], *, warnings: Sequence[ConfigProblem] = ()) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: list[ConfigProblem] = list(problems)
        self.warnings: list[ConfigProblem] = list(warnings)
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------

Backend = Literal["sim", "linux"]
Rollback = Literal["auto", "not_on_exit"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class PathsConfig:
    """``[paths]``; ``None`` means the backend's default (see ``Config.state_dir``)."""

    state_dir: Path | None = None
    journal: Path | None = None


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: ``auto`` is console output on a terminal, JSON lines otherwise."""

    format: LogFormat = "auto"
    level: LogLevel = "info"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """``[sim]``: the simulated node used when ``backend = "sim"``."""

    scenario: str = "default"
    seed: int = field(default=1, metadata=bounds(ge=0))  # numpy's generators take none below 0

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class LinuxCpuConfig:
    """``[linux.cpu]``: what ``cpu_harvest`` lends, and to whom (docs/linux-backend.md)."""

    #: the batch cgroup lent cores, below every hierarchy's root; created on the first real write
    harvest_cgroup: str = field(default="sol-harvest", metadata=rule(relative_cgroup))
    primary_cgroups: tuple[str, ...] = ()  # globs, e.g. ["machine.slice/*"]; empty: every task but harvest
    #: cores never lent to the harvest cgroup (that they exist is checked at setup, on the host)
    reserved_cores: tuple[int, ...] = field(default=(), metadata=bounds(ge=0))
    harvest_mode: Literal["cpuset", "quota"] = "cpuset"  # lend whole cores (cpuset.cpus) or CFS quota
    run_delay_source: Literal["schedstat", "taskstats"] = "schedstat"  # per-task run-queue delay source
    #: most of a core the run-queue sensor spends (readings are reused)
    run_delay_cpu_share: float = field(default=0.002, metadata=bounds(gt=0, le=1))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class MemoryTarget:
    """One workload ``mem_tier`` manages: a process, or every process of a cgroup.

    A cgroup target is resolved to the PIDs in its ``cgroup.procs`` when the memory facility
    is built (each start of the daemon), so the file names a VM by its scope, not by a PID
    that changes when the VM restarts.

    >>> MemoryTarget(pid=1234), MemoryTarget(cgroup="machine.slice/vm-a")
    (MemoryTarget(pid=1234, cgroup=None), MemoryTarget(pid=None, cgroup='machine.slice/vm-a'))
    >>> MemoryTarget(pid=1, cgroup="x")
    Traceback (most recent call last):
    ...
    sol.sdk.ParamError: cgroup cannot be given with pid: a target is one process or one cgroup
    """

    pid: int | None = field(default=None, metadata=bounds(ge=1))
    #: below the cgroup root, like ``harvest_cgroup``
    cgroup: str | None = field(default=None, metadata=rule(relative_cgroup))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.pid is not None and self.cgroup is not None:
            raise ParamError("cgroup", "cannot be given with pid: a target is one process or one cgroup")
        if self.pid is None and self.cgroup is None:
            raise ValueError('a target needs one key: pid = PID or cgroup = "PATH"')

    def describe(self) -> str:
        """``pid 1234`` or ``cgroup machine.slice/vm-a``, for logs and feature lines."""
        return f"pid {self.pid}" if self.pid is not None else f"cgroup {self.cgroup}"


@dataclass(frozen=True, slots=True)
class LinuxMemoryConfig:
    """``[linux.memory]``: the workloads ``mem_tier`` manages and how fast pages may move."""

    #: each exactly one of ``pid`` or ``cgroup``; empty: no managed workload (``nodes()`` only)
    targets: tuple[MemoryTarget, ...] = ()
    migrate_mb_s: float = field(default=256.0, metadata=bounds(gt=0))  # page migration bandwidth cap, MB/s
    #: NUMA nodes of the slow tier; empty: the memory-only nodes
    far_nodes: tuple[int, ...] = field(default=(), metadata=bounds(ge=0))
    #: kdamond index reserved for sol; None: use DAMON only if unused
    damon_kdamond: int | None = field(default=None, metadata=bounds(ge=0))

    def __post_init__(self) -> None:
        check_fields(self)
        seen: dict[MemoryTarget, int] = {}
        for i, target in enumerate(self.targets):
            if target in seen:
                raise ParamError(f"targets[{i}]", f"repeats targets[{seen[target]}] ({target.describe()})")
            seen[target] = i


@dataclass(frozen=True, slots=True)
class LinuxGpuConfig:
    """``[linux.gpu]``: the node's GPU power budget, and its inference servers' metrics."""

    #: watts for all the node's GPUs together; None: unbounded
    power_budget_w: float | None = field(default=None, metadata=bounds(gt=0))
    #: a file a rack controller rewrites with the budget in watts, re-read when it changes
    budget_file: Path | None = None
    #: the inference servers' Prometheus endpoints, one per GPU in NVML order (one for all,
    #: or the same URL for the GPUs of one tensor-parallel server); empty: no serving metrics
    serving_urls: tuple[str, ...] = ()
    #: "vllm" or "tgi": which metric names to read (sol.linux.serving.PRESETS)
    serving_engine: Literal["vllm", "tgi"] = "vllm"
    #: sample names overriding the preset: running, waiting, prompt tokens, generated tokens
    serving_metrics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self)
        for i, url in enumerate(self.serving_urls):
            if not url.startswith(("http://", "https://")):
                raise ParamError(f"serving_urls[{i}]", f"{url!r} is not an http:// or https:// URL")
        if self.serving_metrics and len(self.serving_metrics) != 4:
            raise ParamError(
                "serving_metrics",
                f"needs 4 sample names (running, waiting, prompt tokens, generated tokens), got "
                f"{len(self.serving_metrics)}",
            )


@dataclass(frozen=True, slots=True)
class LinuxFaasConfig:
    """``[linux.faas]``: the local function-object cache ``faas_prewarm`` manages."""

    cache_dir: Path | None = None  # local cache directory; None: no faas facility
    origin_dir: Path | None = None  # where objects missing from the cache dir are copied from
    invocation_log: Path | None = None  # JSON lines {"t": wall s, "function", "object"} per invocation


@dataclass(frozen=True, slots=True)
class LinuxConfig:
    """``[linux]``: the host roots, passed to every Linux sensor and actuator, and one
    sub-table per facility (``[linux.cpu]``, ``[linux.memory]``, ``[linux.gpu]``,
    ``[linux.faas]``).

    The flat keys of earlier versions (``[linux] harvest_cgroup``, ``memory_pid``, ...) still
    load, each with a deprecation warning naming its new place (``Config.warnings``).
    """

    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    cpu: LinuxCpuConfig = field(default_factory=LinuxCpuConfig)
    memory: LinuxMemoryConfig = field(default_factory=LinuxMemoryConfig)
    gpu: LinuxGpuConfig = field(default_factory=LinuxGpuConfig)
    faas: LinuxFaasConfig = field(default_factory=LinuxFaasConfig)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """``[daemon]``: the control socket, the Prometheus endpoint, the periodic report (``sol run``)."""

    #: default: /run/sol/sol.sock as root (when /run is writable), else <state_dir>/sol.sock
    control_socket: Path | None = None
    #: a group whose members may read status (socket mode 0660); default: root only (0600)
    control_group: str | None = None
    metrics: bool = True
    metrics_address: str = "127.0.0.1"
    #: 0: any free port
    metrics_port: int = field(default=9477, metadata=bounds(ge=0, le=65535))
    #: seconds between the one-line reports per agent (and STATUS= updates); the floor and
    #: ceiling of every schedule period (sol.sdk.MIN_PERIOD_S: a shorter one spins the main loop)
    report_every: float = field(
        default=5.0, metadata=bounds(ge=MIN_PERIOD_S, le=MAX_PERIOD_S, unit="seconds")
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class HintsConfig:
    """``[hints]``: workload hints and platform notices (sol.hints, sol.notices; docs/hints.md)."""

    #: a directory of TOML hint files an operator or orchestrator manages; none: not read
    dir: Path | None = None
    #: the workload socket, open to every user: hints for the peer's own cgroup or PID only,
    #: and notices; none: not served (root still sets hints over the control socket)
    socket: Path | None = None
    #: targets whose hints are held at most
    max_targets: int = field(default=1024, metadata=bounds(ge=1, le=65536))
    #: per-cgroup notice files are written here (``<dir>/<cgroup path>.json``); none: not written
    notices_dir: Path | None = None
    #: notices kept for clients to catch up on
    notices_kept: int = field(default=4096, metadata=bounds(ge=16, le=1_000_000))
    #: seconds between reads of the hint directory and checks for targets that are gone
    refresh_every: float = field(default=2.0, metadata=bounds(ge=0.1, le=3600.0, unit="seconds"))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """``[agents.NAME]``: one configured agent, with its schedule and params resolved."""

    name: str
    enabled: bool
    dry_run: bool
    #: the agent class's schedule with the file's overrides applied and re-validated
    schedule: Schedule
    #: an instance of the agent class's ``Params`` dataclass
    params: Any


# Fields the loader fills itself rather than from a key of the same name.
_DERIVED: dict[str, Any] = {"derived": True}


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file, typed. Only agents named under ``[agents]`` appear in ``agents``."""

    backend: Backend = "sim"
    rollback: Rollback = "auto"
    paths: PathsConfig = field(default_factory=PathsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    linux: LinuxConfig = field(default_factory=LinuxConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    hints: HintsConfig = field(default_factory=HintsConfig)
    agents: Mapping[str, AgentConfig] = field(
        default_factory=lambda: types.MappingProxyType({}), metadata=_DERIVED
    )
    #: the file it was read from, or ``EMBEDDED_SOURCE``
    source: str = field(default=EMBEDDED_SOURCE, metadata=_DERIVED)
    #: ``paths.state_dir``, or the backend's default
    state_dir: Path = field(default=Path("."), metadata=_DERIVED)
    #: ``paths.journal``, or ``<state_dir>/undo.journal``
    journal_path: Path = field(default=Path("undo.journal"), metadata=_DERIVED)
    #: what loaded but should change (a deprecated key), in file order; ``sol check-config``
    #: prints them, ``sol run`` logs them (``config.warning``)
    warnings: tuple[ConfigProblem, ...] = field(default=(), metadata=_DERIVED)

    @property
    def enabled_agents(self) -> list[AgentConfig]:
        """The configured agents with ``enabled = true``, in file order."""
        return [a for a in self.agents.values() if a.enabled]


_AGENT_KEYS = ("enabled", "dry_run", "schedule", "params")


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def default_config_path(
    environ: Mapping[str, str] | None = None, *, system_path: Path = SYSTEM_CONFIG_PATH
) -> Path | None:
    """``$SOL_CONFIG`` if set, else ``/etc/sol/sol.toml`` if it exists, else ``None`` (embedded)."""
    env = os.environ if environ is None else environ
    explicit = env.get("SOL_CONFIG")
    if explicit:
        return Path(explicit)
    if system_path.is_file():
        return system_path
    return None


def load_config(
    path: Path | None,
    *,
    agents: Mapping[str, type[Agent]],
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate ``path`` (``None``: the embedded ``sol/default.toml``).

    ``agents`` maps every known agent name to its class; ``environ`` (default ``os.environ``)
    is only read to resolve the default state directory. Raises ``ConfigError``.
    """
    if path is None:
        resource = importlib.resources.files("sol").joinpath("default.toml")
        return loads_config(
            resource.read_text(encoding="utf-8"), source=EMBEDDED_SOURCE, agents=agents, environ=environ
        )
    source = str(path)
    try:
        # A symlink to /dev/zero or a FIFO would be read for ever: refuse what is not a regular
        # file, and anything larger than a config ever is, before reading a byte.
        data = read_regular(Path(path), max_bytes=CONFIG_MAX_BYTES, what="config")
    except UntrustedFileError as exc:
        raise ConfigError([ConfigProblem(source, None, None, str(exc))]) from exc
    except OSError as exc:
        raise ConfigError([ConfigProblem(source, None, None, f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(source, line, None, "invalid TOML: not UTF-8 text")]) from exc
    return loads_config(text, source=source, agents=agents, environ=environ)


def loads_config(
    text: str,
    *,
    source: str,
    agents: Mapping[str, type[Agent]],
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Like ``load_config`` for TOML ``text``; ``source`` names it in error messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(source, exc, text)]) from exc
    builder = _Builder(source, locate_keys(text))
    config = builder.build_config(raw, agents, os.environ if environ is None else environ)
    warnings = _in_file_order(builder.warnings)
    if builder.problems or config is None:
        raise ConfigError(_in_file_order(builder.problems), warnings=warnings)
    return dataclasses.replace(config, warnings=tuple(warnings))


def check_config_command(path: Path | None, agents: Mapping[str, type[Agent]], out: TextIO) -> int:
    """``sol check-config``: print ``OK: ...`` or every problem; return the exit status.

    Warnings (a deprecated key) are printed before, each as ``warning: FILE:LINE: KEY: ...``;
    alone they do not fail the check.
    """
    try:
        config = load_config(path, agents=agents)
    except ConfigError as exc:
        for warning in exc.warnings:
            print(f"warning: {warning}", file=out)
        for problem in exc.problems:
            print(problem, file=out)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=out)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=out)
    names = []
    for agent in config.agents.values():
        flags = [flag for flag, on in (("disabled", not agent.enabled), ("dry-run", agent.dry_run)) if on]
        names.append(agent.name + (f" [{', '.join(flags)}]" if flags else ""))
    count = len(names)
    warned = len(config.warnings)
    print(
        f"OK: {config.source}: {count} agent{'s' if count != 1 else ''} ({', '.join(names)}), "
        f"backend {config.backend}" + (f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""),
        file=out,
    )
    return 0


# --------------------------------------------------------------------------------------
# Building typed values from the parsed document
# --------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A value does not fit its declared type; ``str()`` is the message (internal)."""


class _Builder:
    def __init__(self, source: str, lines: Mapping[KeyPath, int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        #: where a moved key's value now sits -> the key the file wrote (see move_old_keys)
        self.written_as: dict[KeyPath, KeyPath] = {}

    # -- reporting ---------------------------------------------------------------------
    def report(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.problem(path, message))

    def warn(self, path: KeyPath, message: str) -> None:
        self.warnings.append(self.problem(path, message))

    def problem(self, path: KeyPath, message: str) -> ConfigProblem:
        path = self.as_written(path)
        return ConfigProblem(self.source, _line_of(self.lines, path), _dotted(path), message)

    def as_written(self, path: KeyPath) -> KeyPath:
        """``path`` as the file spelled it: a moved key's value is reported at its old key."""
        for end in range(len(path), 0, -1):
            old = self.written_as.get(path[:end])
            if old is not None:
                return (*old, *path[end:])
        return path

    # -- keys that moved ---------------------------------------------------------------
    def move_old_keys(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        """``raw`` with each deprecated key's value at its new place, warned about.

        The value is then checked by the new key's field, but every problem with it is
        reported at the key and line the file wrote. Both the old and the new key: an error
        at the old one (which to keep is the operator's call).
        """
        moved: dict[str, dict[str, Any]] = {}
        for move in _MOVED:
            table = _table_at(raw, move.old[:-1])
            if table is None or move.old[-1] not in table:
                continue
            # only keys of top-level tables have moved so far: one level to copy
            outer = moved.setdefault(move.old[0], dict(table))
            value = outer.pop(move.old[-1])
            target = _table_at(raw, move.new[:-1])
            if target is not None and move.new[-1] in target:
                new_line = self.lines.get(move.new)
                where = f" (line {new_line})" if new_line is not None else ""
                also = f"given twice: also as {move.use(None)}{where}"
                self.report(move.old, f"{also}; delete this deprecated key")
                continue
            self.warn(move.old, f"deprecated: use {move.use(value)}")
            sub = outer.get(move.new[-2], {})
            if not isinstance(sub, dict):
                continue  # reported as "expected a table" at the section itself
            outer[move.new[-2]] = {**sub, move.new[-1]: move.wrap(value)}
            for end in range(len(move.inner) + 1):
                self.written_as[(*move.new, *move.inner[:end])] = move.old
        return {**raw, **moved} if moved else raw

    # -- top level ---------------------------------------------------------------------
    def build_config(
        self, raw: Mapping[str, Any], agents: Mapping[str, type[Agent]], environ: Mapping[str, str]
    ) -> Config | None:
        raw = self.move_old_keys(raw)
        settings = self.fields_from_table(Config, raw, (), extra_keys=("agents",))
        configured = self.build_agents(raw.get("agents", {}), agents)
        if settings is None or configured is None:
            return None
        paths: PathsConfig = settings.get("paths", PathsConfig())
        backend: str = settings.get("backend", "sim")
        state_dir = paths.state_dir if paths.state_dir is not None else _default_state_dir(backend, environ)
        journal = paths.journal if paths.journal is not None else state_dir / "undo.journal"
        return Config(
            **settings,
            agents=types.MappingProxyType(configured),
            source=self.source,
            state_dir=state_dir,
            journal_path=journal,
        )

    def build_agents(self, table: object, known: Mapping[str, type[Agent]]) -> dict[str, AgentConfig] | None:
        path: KeyPath = ("agents",)
        if not isinstance(table, dict):
            self.report(path, f"expected a table of agents, got {_describe(table)}")
            return None
        before = len(self.problems)
        result: dict[str, AgentConfig] = {}
        for name, body in table.items():
            agent_path = (*path, name)
            cls = known.get(name)
            if cls is None:
                self.report(agent_path, f"unknown agent (known: {_names(sorted(known)) or 'none'})")
                continue
            agent = self.build_agent(name, cls, body, agent_path)
            if agent is not None:
                result[name] = agent
        return result if len(self.problems) == before else None

    def build_agent(self, name: str, cls: type[Agent], body: object, path: KeyPath) -> AgentConfig | None:
        if not isinstance(body, dict):
            self.report(path, f"expected a table, got {_describe(body)}")
            return None
        before = len(self.problems)
        self.reject_unknown(body, _AGENT_KEYS, path)
        enabled = self.convert_key(body, "enabled", bool, path, default=True)
        dry_run = self.convert_key(body, "dry_run", bool, path, default=False)
        schedule = self.build_schedule(cls, body.get("schedule", {}), (*path, "schedule"))
        params = self.build_params(cls, body.get("params", {}), (*path, "params"))
        if schedule is not None and params is not None and params is not _MISSING:
            self.check_agent_params(cls, params, schedule, (*path, "params"), body.get("params", {}))
        if len(self.problems) != before or schedule is None:
            return None
        return AgentConfig(name=name, enabled=enabled, dry_run=dry_run, schedule=schedule, params=params)

    def check_agent_params(
        self, cls: type[Agent], params: object, schedule: Schedule, path: KeyPath, table: object
    ) -> None:
        """The agent class's own ``check_params``: what its ``setup`` would refuse."""
        names = [f.name for f in dataclasses.fields(params)]  # type: ignore[arg-type]
        given = table if isinstance(table, dict) else {}
        try:
            found: list[ValueError] = list(cls.check_params(params, schedule))
        except ValueError as exc:
            found = [exc]
        for problem in found:
            self.report(*_field_of(problem, names, given, path))

    def build_schedule(self, cls: type[Agent], table: object, path: KeyPath) -> Schedule | None:
        if not isinstance(table, dict):
            self.report(path, f"expected a table, got {_describe(table)}")
            return None
        overrides = self.fields_from_table(Schedule, table, path, check_required=False)
        if overrides is None:
            return None
        base: Schedule | None = getattr(cls, "schedule", None)
        try:
            if base is None:
                return Schedule(**overrides)
            # predict_every defaults to collect_every (DESIGN §3): Schedule.replace carries a
            # defaulted one along with an overridden collect_every
            return base.replace(**overrides)
        except TypeError:
            # Schedule(**overrides) without the required fields: the class declares no schedule.
            required = [f.name for f in dataclasses.fields(Schedule) if _is_required(f)]
            missing = [n for n in required if n not in overrides]
            self.report(path, f"{cls.__name__} declares no schedule; set {_names(missing)}")
        except ScheduleError as exc:
            self.report(self.schedule_error_path(str(exc), overrides, path), _strip_field(str(exc)))
        return None

    @staticmethod
    def schedule_error_path(message: str, overrides: Mapping[str, object], path: KeyPath) -> KeyPath:
        """Point a ``ScheduleError`` at the overridden key it is about, if any."""
        names = Schedule.field_names()
        for name in names:
            if message.startswith(name + " ") and name in overrides:
                return (*path, name)
        for name in names:
            if name in overrides and re.search(rf"\b{name}\b", message):
                return (*path, name)
        return path

    def build_params(self, cls: type[Agent], table: object, path: KeyPath) -> object:
        params_cls = getattr(cls, "Params", NoParams)
        if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
            self.report(path, f"{cls.__name__}.Params is not a dataclass; the agent cannot take params")
            return None
        if not isinstance(table, dict):
            self.report(path, f"expected a table, got {_describe(table)}")
            return None
        return self.build_dataclass(params_cls, table, path)

    # -- generic dataclass machinery ---------------------------------------------------
    def reject_unknown(self, table: Mapping[str, object], known: Sequence[str], path: KeyPath) -> None:
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f"; did you mean {hint[0]}?" if hint else ""
                listing = f"known: {_names(known)}" if known else "this table takes no keys"
                self.report((*path, key), f"unknown key ({listing}){suffix}")

    def fields_from_table(
        self,
        cls: type[Any],
        table: Mapping[str, object],
        path: KeyPath,
        *,
        extra_keys: Sequence[str] = (),
        check_required: bool = True,
    ) -> dict[str, Any] | None:
        """Convert ``table`` into keyword arguments for dataclass ``cls``.

        Every key is checked and every problem reported; None when a field's value could not
        be used or a required one is missing (unknown keys alone do not stop the cross-field
        checks of whoever builds ``cls`` from the result).
        """
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:  # a NameError etc. in the *agent's* annotations
            self.report(path, f"cannot read the field types of {cls.__name__}: {exc}")
            return None
        fields = [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("derived")]
        self.reject_unknown(table, [f.name for f in fields] + list(extra_keys), path)
        kwargs: dict[str, Any] = {}
        usable = True
        for f in fields:
            if f.name in table:
                value = self.convert(table[f.name], hints[f.name], (*path, f.name), field_check(f))
                if value is _MISSING:
                    usable = False
                else:
                    kwargs[f.name] = value
            elif check_required and _is_required(f):
                self.report((*path, f.name), "missing required key")
                usable = False
        return kwargs if usable else None

    def build_dataclass(self, cls: type[Any], table: Mapping[str, object], path: KeyPath) -> object:
        kwargs = self.fields_from_table(cls, table, path)
        if kwargs is None:
            return _MISSING
        try:
            return cls(**kwargs)
        except ValueError as exc:  # the dataclass's own __post_init__ checks
            self.report(*_field_of(exc, [f.name for f in dataclasses.fields(cls)], table, path))
            return _MISSING
        except TypeError as exc:
            self.report(path, str(exc) or type(exc).__name__)
            return _MISSING

    def convert_key(
        self, table: Mapping[str, object], key: str, tp: Any, path: KeyPath, *, default: Any
    ) -> Any:
        if key not in table:
            return default
        value = self.convert(table[key], tp, (*path, key))
        return default if value is _MISSING else value

    def convert(self, value: object, tp: Any, path: KeyPath, check: FieldCheck | None = None) -> Any:
        """``value`` as type ``tp`` passing ``check`` (each element of an array; default: a
        number must be finite); reports and returns ``_MISSING`` when it does not fit."""
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            # TOML has no null: ``X | None`` only means the default may be None.
            arms = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(arms) == 1:
                return self.convert(value, arms[0], path, check)
            for arm in arms:
                trial = _Builder(self.source, self.lines)
                converted = trial.convert(value, arm, path, check)
                if not trial.problems:
                    return converted
            self.report(path, f"expected {' or '.join(_type_name(a) for a in arms)}, got {_describe(value)}")
            return _MISSING
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if not isinstance(value, dict):
                self.report(path, f"expected a table, got {_describe(value)}")
                return _MISSING
            return self.build_dataclass(tp, value, path)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (list, tuple, Sequence):
            if not isinstance(value, list):
                self.report(path, f"expected an array, got {_describe(value)}")
                return _MISSING
            item_tp = args[0] if args else Any
            items = [self.convert(v, item_tp, (*path, _Index(i)), check) for i, v in enumerate(value)]
            if any(item is _MISSING for item in items):
                return _MISSING
            return tuple(items) if origin is tuple else items
        if origin in (dict, Mapping):
            if not isinstance(value, dict):
                self.report(path, f"expected a table, got {_describe(value)}")
                return _MISSING
            item_tp = args[1] if len(args) == 2 else Any
            converted = {k: self.convert(v, item_tp, (*path, k), check) for k, v in value.items()}
            if any(v is _MISSING for v in converted.values()):
                return _MISSING
            return converted
        try:
            result = _convert_scalar(value, tp)
        except _Invalid as exc:
            self.report(path, str(exc))
            return _MISSING
        problem = (check or _FINITE)(result)
        if problem:
            self.report(path, problem)
            return _MISSING
        return result


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
_FINITE = bounds()["sol.check"]


def _field_of(
    exc: ValueError, names: Sequence[str], table: Mapping[str, object], path: KeyPath
) -> tuple[KeyPath, str]:
    """Where a ``__post_init__``/``check_params`` error points, and what it says there.

    A ``ParamError`` names its field; a message starting with a field name is about that
    field (``"lr must be ..."``); else the first field it mentions that the table sets;
    else the table itself, message whole.
    """
    if isinstance(exc, ParamError):
        name, _, index = exc.field.partition("[")
        if name in names:
            at: KeyPath = (*path, name)
            if index.rstrip("]").isdigit():
                at = (*at, _Index(int(index.rstrip("]"))))
            return at, exc.message
    message = str(exc) or type(exc).__name__
    for name in sorted(names, key=len, reverse=True):
        if message.startswith(name + " must") or message.startswith(name + " is"):
            return (*path, name), message[len(name) + 1 :]
    for name in names:
        if name in table and re.search(rf"\b{re.escape(name)}\b", message):
            return (*path, name), message
    return path, message


def _convert_scalar(value: object, tp: Any) -> object:
    """Convert one TOML scalar; raises ``_Invalid`` with the operator-facing message."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return choice
        raise _Invalid(f"expected one of {', '.join(_fmt(c) for c in choices)}, got {_describe(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid(f"expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise _Invalid(f"number too large, got {_describe(value)}") from None
        raise _Invalid(f"expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid(f"expected a string, got {_describe(value)}")
    if tp is Path:
        if isinstance(value, str) and value:
            if "\0" in value:
                raise _Invalid("expected a path, got a string with a NUL character")
            return Path(value)
        raise _Invalid(f"expected a non-empty path string, got {_describe(value)}")
    raise _Invalid(f"unsupported field type {_type_name(tp)} (a bug in the schema, not in the file)")


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _strip_field(message: str) -> str:
    """``"collect_every must be ..."`` -> ``"must be ..."`` (the key is in the prefix)."""
    for name in Schedule.field_names():
        if message.startswith(name + " must"):
            return message[len(name) + 1 :]
    return message


def _default_state_dir(backend: str, environ: Mapping[str, str]) -> Path:
    if backend == "linux":
        return Path("/var/lib/sol")
    xdg = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "sol"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "sol"


# -- message formatting ----------------------------------------------------------------


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


def _describe(value: object) -> str:
    """A short TOML-ish rendering of a found value, for 'got ...'."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return f"{value.isoformat()} (a date/time)"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    text = _fmt(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (list, tuple, Sequence):
        return "an array"
    if origin in (dict, Mapping) or dataclasses.is_dataclass(tp):
        return "a table"
    if origin is Literal:
        return "one of " + ", ".join(_fmt(c) for c in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Index(str):
    """An array position inside a key path; equal to its digits, rendered as ``key[i]``."""

    __slots__ = ()

    def __new__(cls, index: int) -> _Index:
        return super().__new__(cls, str(index))


def _dotted(path: KeyPath) -> str:
    """Render a key path as TOML would write it (quoting parts that need it)."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, _Index) and parts:
            parts[-1] += f"[{part}]"
        elif _BARE_KEY.fullmatch(part):
            parts.append(part)
        else:
            parts.append(json.dumps(part, ensure_ascii=False))
    return ".".join(parts)


def _in_file_order(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


def _syntax_problem(source: str, exc: tomllib.TOMLDecodeError, text: str) -> ConfigProblem:
    message = str(exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    m = _AT_LINE.search(message)
    if m:
        line, column = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    else:
        end = _AT_END.search(message)
        if end:
            message = message[: end.start()] + " at end of file"
            line = text.count("\n") + (0 if text.endswith("\n") else 1)
            column = None
    return ConfigProblem(source, line, None, f"invalid TOML: {message}", column=column)


# --------------------------------------------------------------------------------------
# Keys that moved: still loaded where the file wrote them, with a warning naming the new key
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Moved:
    """A key of an earlier version (``old``) and the key that holds its value now (``new``)."""

    old: KeyPath
    new: KeyPath
    #: the old value as the new key's value (``memory_pid = N`` -> ``targets = [{pid = N}]``)
    wrapper: Callable[[object], object] | None = None
    #: where the old value sits inside the new key's value (``memory_pid``: ``[0].pid``)
    inner: KeyPath = ()
    #: how to write the new key, ``{value}`` the old value as TOML (default: ``[table] key``)
    template: str = ""

    def wrap(self, value: object) -> object:
        return value if self.wrapper is None else self.wrapper(value)

    def use(self, value: object) -> str:
        """The new key as an operator writes it; ``value`` (a scalar) filled in."""
        table = f"[{_dotted(self.new[:-1])}]"
        if self.template and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return f"{table} {self.template.format(value=_fmt(value))}"
        return f"{table} {self.new[-1]}"


def _linux_moved(old: str, section: str, new: str | None = None, **kwargs: Any) -> _Moved:
    return _Moved(("linux", old), ("linux", section, new or old), **kwargs)


#: ``[linux]``'s flat keys from before each facility had its own table: still loaded, warned.
_MOVED: tuple[_Moved, ...] = (
    *(
        _linux_moved(key, "cpu")
        for key in (
            "harvest_cgroup",
            "primary_cgroups",
            "reserved_cores",
            "harvest_mode",
            "run_delay_source",
            "run_delay_cpu_share",
        )
    ),
    _linux_moved(
        "memory_pid",
        "memory",
        "targets",
        wrapper=lambda pid: [{"pid": pid}],
        inner=(_Index(0), "pid"),
        template="targets = [{{ pid = {value} }}]",
    ),
    *(_linux_moved(key, "memory") for key in ("migrate_mb_s", "far_nodes", "damon_kdamond")),
    _linux_moved("gpu_power_budget_w", "gpu", "power_budget_w"),
    _linux_moved("faas_cache_dir", "faas", "cache_dir"),
    _linux_moved("faas_origin_dir", "faas", "origin_dir"),
    _linux_moved("faas_invocation_log", "faas", "invocation_log"),
)


def _table_at(raw: Mapping[str, Any], path: KeyPath) -> Mapping[str, Any] | None:
    """The sub-table of ``raw`` at ``path``, or None where there is none (or not a table)."""
    table: object = raw
    for part in path:
        if not isinstance(table, dict):
            return None
        table = table.get(part)
    return table if isinstance(table, dict) else None


# --------------------------------------------------------------------------------------
# Key locator: tomllib gives no positions for semantic errors, so find them ourselves.
# --------------------------------------------------------------------------------------


def _line_of(lines: Mapping[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, else of its nearest located ancestor (e.g. a missing key's table)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Map every key path of a *valid* TOML document to the 1-based line that defines it.

    Covers ``[table]`` and ``[[array.of.tables]]`` headers, dotted and quoted keys, inline
    tables, and arrays (an element is the part ``"i"`` after its array's key, so the keys of
    ``x = [{a = 1}, 2]`` are ``("x",)``, ``("x", "0")``, ``("x", "0", "a")`` and ``("x", "1")``).
    A table only implied by a longer header or dotted key gets the line of its first mention.

    >>> locate_keys('a = 1\\n[b.c]\\n"d.e" = { f = 2 }\\n')
    {('a',): 1, ('b',): 2, ('b', 'c'): 2, ('b', 'c', 'd.e'): 3, ('b', 'c', 'd.e', 'f'): 3}
    """
    scanner = _Scanner(text)
    # IndexError is only reachable on text tomllib rejected; keep what was found.
    with contextlib.suppress(IndexError):
        scanner.document()
    explicit = scanner.explicit
    merged = dict(scanner.implicit)
    merged.update(explicit)
    return dict(sorted(merged.items(), key=lambda kv: (kv[1], len(kv[0]))))


_BARE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


class _Scanner:
    """A lenient structural TOML reader: keys and their lines, values skipped, not decoded."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.explicit: dict[KeyPath, int] = {}
        self.implicit: dict[KeyPath, int] = {}
        self.array_tables: dict[KeyPath, int] = {}

    # -- character helpers -------------------------------------------------------------
    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        chunk = self.text[self.pos : self.pos + n]
        self.line += chunk.count("\n")
        self.pos += n

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces/tabs, comments, and (if ``newlines``) line breaks."""
        while not self.at_end():
            ch = self.text[self.pos]
            if ch in " \t":
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif newlines and ch in "\r\n":
                self.advance()
            else:
                return

    def record(self, path: KeyPath, line: int) -> None:
        for end in range(1, len(path)):
            self.implicit.setdefault(path[:end], line)
        self.explicit.setdefault(path, line)

    # -- grammar -----------------------------------------------------------------------
    def document(self) -> None:
        prefix: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.at_end():
                return
            start = self.pos
            if self.peek(2) == "[[":
                self.advance(2)
                key = self.key()
                self.skip_blank(newlines=False)
                self.advance(2)  # ]]
                index = self.array_tables.get(key, -1) + 1
                self.array_tables[key] = index
                self.record(key, self.line)
                prefix = (*key, _Index(index))
                self.record(prefix, self.line)
            elif self.peek() == "[":
                self.advance()
                key = self.key()
                self.skip_blank(newlines=False)
                self.advance()  # ]
                prefix = key
                self.record(prefix, self.line)
            else:
                self.keyval(prefix)
            if self.pos == start:  # never loop without progress, whatever the input
                self.advance()

    def keyval(self, prefix: KeyPath) -> None:
        line = self.line
        key = self.key()
        self.skip_blank(newlines=False)
        if self.peek() == "=":
            self.advance()
        self.skip_blank(newlines=False)
        path = (*prefix, *key)
        self.record(path, line)
        self.value(path)

    def key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            ch = self.peek()
            if ch == '"':
                parts.append(self.basic_string())
            elif ch == "'":
                parts.append(self.literal_string())
            else:
                start = self.pos
                while not self.at_end() and self.text[self.pos] in _BARE_CHARS:
                    self.pos += 1
                if self.pos == start:
                    return tuple(parts)
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def basic_string(self) -> str:
        self.advance()  # opening quote
        out: list[str] = []
        while not self.at_end():
            ch = self.text[self.pos]
            if ch == '"':
                self.advance()
                break
            if ch == "\n":  # unterminated (invalid TOML): stop at the line end
                break
            if ch == "\\":
                code = self.text[self.pos + 1 : self.pos + 2]
                if code in ("u", "U"):
                    width = 4 if code == "u" else 8
                    digits = self.text[self.pos + 2 : self.pos + 2 + width]
                    try:
                        out.append(chr(int(digits, 16)))
                    except ValueError:
                        out.append("?")
                    self.advance(2 + width)
                else:
                    out.append(_ESCAPES.get(code, code))
                    self.advance(2)
                continue
            out.append(ch)
            self.advance()
        return "".join(out)

    def literal_string(self) -> str:
        self.advance()
        end = self.text.find("'", self.pos)
        newline = self.text.find("\n", self.pos)
        if end < 0 or (0 <= newline < end):
            end = len(self.text) if newline < 0 else newline
            value = self.text[self.pos : end]
            self.advance(end - self.pos)
            return value
        value = self.text[self.pos : end]
        self.advance(end + 1 - self.pos)
        return value

    def multiline(self, quote: str) -> None:
        self.advance(3)
        while not self.at_end():
            ch = self.text[self.pos]
            if quote == '"' and ch == "\\":
                self.advance(2)
            elif self.peek(3) == quote * 3:
                self.advance(3)
                # Up to two quotes may sit right before the closing delimiter.
                extra = 0
                while extra < 2 and self.peek() == quote:
                    self.advance()
                    extra += 1
                return
            else:
                self.advance()

    def value(self, path: KeyPath) -> None:
        if self.peek(3) in ('"""', "'''"):
            self.multiline(self.peek())
        elif self.peek() == '"':
            self.basic_string()
        elif self.peek() == "'":
            self.literal_string()
        elif self.peek() == "[":
            self.array(path)
        elif self.peek() == "{":
            self.inline_table(path)
        else:
            while not self.at_end() and self.text[self.pos] not in ",]}\r\n#":
                self.pos += 1

    def array(self, path: KeyPath) -> None:
        self.advance()
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.at_end():
                return
            if self.peek() == "]":
                self.advance()
                return
            start = self.pos
            self.record((*path, _Index(index)), self.line)  # an element's own line (a bad value)
            self.value((*path, _Index(index)))
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()
                index += 1
            elif self.pos == start:
                self.advance()

    def inline_table(self, path: KeyPath) -> None:
        self.advance()
        while True:
            self.skip_blank(newlines=True)
            if self.at_end():
                return
            if self.peek() == "}":
                self.advance()
                return
            start = self.pos
            self.keyval(path)
            self.skip_blank(newlines=True)
            if self.peek() == "," or self.pos == start:
                self.advance()
