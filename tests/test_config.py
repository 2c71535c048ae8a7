"""sol.config: typed TOML config whose every error names the file, the line and the key."""

from __future__ import annotations

import dataclasses
import doctest
import io
import json
import re
import tomllib
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sol.config
import sol.files
from sol.config import (
    EMBEDDED_SOURCE,
    AgentConfig,
    Config,
    ConfigError,
    LinuxConfig,
    LinuxCpuConfig,
    LinuxFaasConfig,
    LinuxGpuConfig,
    LinuxMemoryConfig,
    MemoryTarget,
    check_config_command,
    default_config_path,
    load_config,
    loads_config,
    locate_keys,
)
from sol.sdk import Agent, NoParams, ParamError, Schedule

# -- stub agents (module level: their annotations must resolve) ---------------------------

BASE_SCHEDULE = Schedule(collect_every=1.0, act_every=2.0, prediction_ttl=3.0, assess_every=5.0)


class Noop(Agent):
    name = "noop"
    schedule = BASE_SCHEDULE


@dataclass(frozen=True)
class EwmaParams:
    alpha: float = 0.3
    window: int = 10
    mode: Literal["mean", "peak"] = "mean"
    tags: list[str] | None = None
    limit: int | str = 5
    cache: Path = Path("/tmp/cache")

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")


class ExampleEwma(Agent):
    name = "example_ewma"
    schedule = Schedule(
        collect_every=0.5, act_every=0.5, prediction_ttl=2.0, assess_every=5.0, predict_every=1.0
    )
    Params = EwmaParams


@dataclass(frozen=True)
class NeedsParams:
    target: str
    share: float = 0.5


class Needy(Agent):
    name = "needy"
    schedule = BASE_SCHEDULE
    Params = NeedsParams


class Unscheduled(Agent):
    name = "unscheduled"


AGENTS: dict[str, type[Agent]] = {
    "noop": Noop,
    "example_ewma": ExampleEwma,
    "needy": Needy,
    "unscheduled": Unscheduled,
}
SRC = "sol.toml"


def load(text: str, **kwargs: Any) -> Config:
    return loads_config(text, source=SRC, agents=AGENTS, **kwargs)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(p) for p in info.value.problems]


# -- every kind of error names the file, the line and the key ------------------------------

ERROR_CASES = [
    pytest.param(
        'backnd = "sim"', "sol.toml:1: backnd: unknown key (known: backend, rollback,", id="unknown-top-key"
    ),
    pytest.param(
        '\nrollback = "sometimes"',
        'sol.toml:2: rollback: expected one of "auto", "not_on_exit", got "sometimes"',
        id="bad-literal",
    ),
    pytest.param(
        'backend = "windows"',
        'sol.toml:1: backend: expected one of "sim", "linux", got "windows"',
        id="bad-backend",
    ),
    pytest.param(
        "backend = 1", 'sol.toml:1: backend: expected one of "sim", "linux", got 1', id="literal-wrong-type"
    ),
    pytest.param(
        '[log]\nlevl = "info"',
        "sol.toml:2: log.levl: unknown key (known: format, level); did you mean level?",
        id="unknown-section-key",
    ),
    pytest.param(
        '[log]\nlevel = "verbose"',
        'sol.toml:2: log.level: expected one of "debug", "info", "warning", "error"',
        id="bad-log-level",
    ),
    pytest.param(
        '[sim]\nseed = "1"', 'sol.toml:2: sim.seed: expected an integer, got "1"', id="string-for-int"
    ),
    pytest.param(
        "[sim]\nseed = true", "sol.toml:2: sim.seed: expected an integer, got true", id="bool-is-not-int"
    ),
    pytest.param(
        "[sim]\n\nseed = 1.5", "sol.toml:3: sim.seed: expected an integer, got 1.5", id="float-for-int"
    ),
    pytest.param(
        "[sim]\nscenario = 3", "sol.toml:2: sim.scenario: expected a string, got 3", id="int-for-string"
    ),
    pytest.param(
        "[linux]\ncgroup_root = 7",
        "sol.toml:2: linux.cgroup_root: expected a non-empty path string, got 7",
        id="int-for-path",
    ),
    pytest.param(
        '[linux]\nproc_root = ""',
        "sol.toml:2: linux.proc_root: expected a non-empty path string",
        id="empty-path",
    ),
    pytest.param(
        "[linux.cpu]\nrun_delay_cpu_share = 0.0",
        "sol.toml:2: linux.cpu.run_delay_cpu_share: must be a finite number in (0, 1], got 0.0",
        id="run-delay-share-zero",
    ),
    pytest.param(
        "[linux.cpu]\nreserved_cores = [\n  99,\n  -1,\n]",
        "sol.toml:4: linux.cpu.reserved_cores[1]: must be an integer >= 0, got -1",
        id="reserved-core-negative",
    ),
    pytest.param(
        '[linux.cpu]\nharvest_cgroup = "/"',
        "sol.toml:2: linux.cpu.harvest_cgroup: must be a relative, normalised cgroup path below the root, "
        'without "..", got "/"',
        id="harvest-cgroup-root",
    ),
    pytest.param(
        '[linux.cpu]\nharvest_cgroup = "../escape"',
        "sol.toml:2: linux.cpu.harvest_cgroup: must be a relative",
        id="harvest-cgroup-dotdot",
    ),
    pytest.param(
        '[linux.cpu]\nharvest_cgroup = "/sys/fs/cgroup/x"',
        "sol.toml:2: linux.cpu.harvest_cgroup: must be a relative",
        id="harvest-cgroup-absolute",
    ),
    pytest.param(
        '[linux.cpu]\nharvest_cgroup = "a//b/"',
        "sol.toml:2: linux.cpu.harvest_cgroup: must be a relative",
        id="harvest-cgroup-not-normalised",
    ),
    pytest.param(
        '[linux.cpu]\nharvest_cgroup = "."',
        "sol.toml:2: linux.cpu.harvest_cgroup: must be a relative",
        id="harvest-cgroup-dot",
    ),
    pytest.param(
        "[linux.memory]\nmigrate_mb_s = nan",
        "sol.toml:2: linux.memory.migrate_mb_s: must be a finite number > 0, got nan",
        id="linux-nan",
    ),
    pytest.param(
        "[linux.memory]\nfar_nodes = [0, -2]",
        "sol.toml:2: linux.memory.far_nodes[1]: must be an integer >= 0, got -2",
        id="far-node-negative",
    ),
    pytest.param(
        "[daemon]\nmetrics = true\nmetrics_port = 70000",
        "sol.toml:3: daemon.metrics_port: must be an integer in [0, 65535], got 70000",
        id="daemon-key-not-header",
    ),
    pytest.param(
        "[daemon]\nreport_every = inf",
        "sol.toml:2: daemon.report_every: must be a finite number of seconds in [0.001, 604800], got inf",
        id="daemon-report-inf",
    ),
    pytest.param('log = "json"', 'sol.toml:1: log: expected a table, got "json"', id="section-not-table"),
    pytest.param(
        "paths.state_dir = 1979-05-27",
        "sol.toml:1: paths.state_dir: expected a non-empty path string, got 1979-05-27 (a date/time)",
        id="date-for-path",
    ),
    pytest.param(
        "[agents.nope]",
        "sol.toml:1: agents.nope: unknown agent (known: example_ewma, needy, noop, unscheduled)",
        id="unknown-agent",
    ),
    pytest.param(
        '[agents."my.agent"]\nenabled = true',
        'sol.toml:1: agents."my.agent": unknown agent',
        id="unknown-agent-quoted",
    ),
    pytest.param(
        "agents = 1", "sol.toml:1: agents: expected a table of agents, got 1", id="agents-not-table"
    ),
    pytest.param(
        "[agents]\nnoop = 3", "sol.toml:2: agents.noop: expected a table, got 3", id="agent-not-table"
    ),
    pytest.param(
        "[agents.noop]\nenable = true",
        "sol.toml:2: agents.noop.enable: "
        "unknown key (known: enabled, dry_run, schedule, params); did you mean enabled?",
        id="unknown-agent-key",
    ),
    pytest.param(
        "[agents.noop]\nenabled = 1",
        "sol.toml:2: agents.noop.enabled: expected true or false, got 1",
        id="int-is-not-bool",
    ),
    pytest.param(
        '[agents.noop]\ndry_run = "yes"',
        'sol.toml:2: agents.noop.dry_run: expected true or false, got "yes"',
        id="string-is-not-bool",
    ),
    pytest.param(
        "[agents.noop]\nenabled = true\n\n[agents.noop.schedule]\ncolect_every = 1",
        "sol.toml:5: agents.noop.schedule.colect_every: unknown key (known: collect_every, act_every,",
        id="schedule-typo",
    ),
    pytest.param(
        "agents.noop.schedule.colect_every = 1",
        "sol.toml:1: agents.noop.schedule.colect_every: unknown key",
        id="schedule-typo-dotted-key",
    ),
    pytest.param(
        "[agents.noop]\nschedule = { act_every = 1, colect_every = 1 }",
        "sol.toml:2: agents.noop.schedule.colect_every: unknown key",
        id="schedule-typo-inline-table",
    ),
    pytest.param(
        "[agents.noop]\nschedule = 5",
        "sol.toml:2: agents.noop.schedule: expected a table, got 5",
        id="schedule-not-table",
    ),
    pytest.param(
        '[agents.noop.schedule]\nact_every = "1s"',
        'sol.toml:2: agents.noop.schedule.act_every: expected a number, got "1s"',
        id="schedule-wrong-type",
    ),
    pytest.param(
        "[agents.noop.schedule]\nmax_invalid_streak = 2.5",
        "sol.toml:2: agents.noop.schedule.max_invalid_streak: expected an integer, got 2.5",
        id="schedule-count-float",
    ),
    pytest.param(
        "[agents.noop.schedule]\n\ncollect_every = -1",
        "sol.toml:3: agents.noop.schedule.collect_every: "
        "must be a finite number of seconds in [0.001, 604800], got -1.0",
        id="schedule-negative",
    ),
    pytest.param(
        "[agents.noop.schedule]\nact_every = 1e-300",
        "sol.toml:2: agents.noop.schedule.act_every: "
        "must be a finite number of seconds in [0.001, 604800], got 1e-300",
        id="schedule-below-the-floor",
    ),
    pytest.param(
        "[agents.noop.schedule]\ncallback_timeout = 1e-9",
        "sol.toml:2: agents.noop.schedule.callback_timeout: must be a finite number of seconds in [0.001,",
        id="schedule-timeout-below-the-floor",
    ),
    pytest.param(
        "[agents.noop.schedule]\nassess_every = 1e9",
        "sol.toml:2: agents.noop.schedule.assess_every: "
        "must be a finite number of seconds in [0.001, 604800]",
        id="schedule-above-the-ceiling",
    ),
    pytest.param(
        "[agents.noop.schedule]\nprediction_ttl = 0.5",
        "sol.toml:2: agents.noop.schedule.prediction_ttl: "
        "prediction_ttl (0.5) must be >= predict_every (1.0)",
        id="schedule-ttl-below-predict-every",
    ),
    pytest.param(
        "[agents.noop.schedule]\nmax_errors = 0",
        "sol.toml:2: agents.noop.schedule.max_errors: must be an integer >= 1, got 0",
        id="schedule-count-zero",
    ),
    pytest.param(
        "[agents.noop.schedule]\ncollect_every = nan",
        "sol.toml:2: agents.noop.schedule.collect_every: must be a finite number",
        id="schedule-nan",
    ),
    pytest.param(
        "[agents.noop.schedule]\ncpu_budget = 20",
        "sol.toml:2: agents.noop.schedule.cpu_budget: must be a finite number of cores in (0, 16], got 20.0",
        id="schedule-budget",
    ),
    pytest.param(
        "[agents.noop.schedule]\nact_every = 1\nbackoff_initial = 100",
        "sol.toml:3: agents.noop.schedule.backoff_initial: "
        "backoff_max (60.0) must be >= backoff_initial (100.0)",
        id="schedule-cross-field",
    ),
    pytest.param(
        "[agents.unscheduled.schedule]\ncollect_every = 1",
        "sol.toml:1: agents.unscheduled.schedule: "
        "Unscheduled declares no schedule; set act_every, prediction_ttl, assess_every",
        id="no-class-schedule",
    ),
    pytest.param(
        "[agents.noop.params]\nalpha = 0.5",
        "sol.toml:2: agents.noop.params.alpha: unknown key (this table takes no keys)",
        id="params-for-no-params",
    ),
    pytest.param(
        "[agents.example_ewma.params]\nalpah = 0.5",
        "sol.toml:2: agents.example_ewma.params.alpah: "
        "unknown key (known: alpha, window, mode, tags, limit, cache); did you mean alpha?",
        id="params-typo",
    ),
    pytest.param(
        '[agents.example_ewma.params]\nalpha = "0.5"',
        'sol.toml:2: agents.example_ewma.params.alpha: expected a number, got "0.5"',
        id="params-wrong-type",
    ),
    pytest.param(
        '[agents.example_ewma.params]\nmode = "max"',
        'sol.toml:2: agents.example_ewma.params.mode: expected one of "mean", "peak", got "max"',
        id="params-literal",
    ),
    pytest.param(
        '[agents.example_ewma.params]\ntags = [\n  "a",\n  2,\n]',
        "sol.toml:4: agents.example_ewma.params.tags[1]: expected a string, got 2",
        id="params-list-item",
    ),
    pytest.param(
        '[agents.example_ewma.params]\ntags = "a"',
        'sol.toml:2: agents.example_ewma.params.tags: expected an array, got "a"',
        id="params-not-list",
    ),
    pytest.param(
        "[agents.example_ewma.params]\nlimit = 1.5",
        "sol.toml:2: agents.example_ewma.params.limit: expected an integer or a string, got 1.5",
        id="params-union",
    ),
    pytest.param(
        "[agents.example_ewma.params]\nalpha = 2",
        "sol.toml:2: agents.example_ewma.params.alpha: must be in (0, 1], got 2.0",
        id="params-post-init",
    ),
    pytest.param(
        "[agents.needy.params]\ntarget = 'x'\nshare = nan",
        "sol.toml:3: agents.needy.params.share: must be a finite number, got nan",
        id="params-nan-without-declared-range",
    ),
    pytest.param(
        "[agents.needy.params]\ntarget = 'x'\nshare = -inf",
        "sol.toml:3: agents.needy.params.share: must be a finite number, got -inf",
        id="params-inf-without-declared-range",
    ),
    pytest.param(
        "[agents.example_ewma]\nparams = { alpha = 0.5, wndow = 3 }",
        "sol.toml:2: agents.example_ewma.params.wndow: unknown key",
        id="params-inline-typo",
    ),
    pytest.param(
        "[agents.needy]\nenabled = true",
        "sol.toml:1: agents.needy.params.target: missing required key",
        id="params-missing-required",
    ),
    pytest.param(
        "[agents.needy.params]\nshare = 0.1",
        "sol.toml:1: agents.needy.params.target: missing required key",
        id="params-missing-required-in-table",
    ),
    pytest.param(
        "[agents.example_ewma.params]\nalpha = 1e400",
        "sol.toml:2: agents.example_ewma.params.alpha: must be a finite number, got inf",
        id="params-float-overflow",
    ),
    pytest.param(
        "[agents.needy.params]\ntarget = 'x'\nshare = 1" + "0" * 400,
        "sol.toml:3: agents.needy.params.share: number too large",
        id="params-int-overflow",
    ),
]


@pytest.mark.parametrize(("text", "expected"), ERROR_CASES)
def test_every_error_names_file_line_and_key(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


SYNTAX_CASES = [
    pytest.param("a = 1\nb = \n", r"^sol\.toml:2:5: invalid TOML: ", id="missing-value"),
    pytest.param(
        "[agents.noop]\nenabled = true\nenabled = false\n",
        r"^sol\.toml:3:\d+: invalid TOML: ",
        id="duplicate-key",
    ),
    pytest.param("[log\nlevel = 'info'", r"^sol\.toml:1:\d+: invalid TOML: ", id="unclosed-header"),
    pytest.param("a = [\n1,\n", r"^sol\.toml:2: invalid TOML: .* at end of file$", id="unterminated-array"),
]


@pytest.mark.parametrize(("text", "pattern"), SYNTAX_CASES)
def test_syntax_errors_keep_tomllib_line_and_column(text: str, pattern: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1
    assert re.match(pattern, problems[0]), problems[0]
    assert "(at line" not in problems[0]


def test_all_errors_are_collected_in_file_order() -> None:
    text = """\
backend = "windows"
[log]
level = "loud"
[agents.noop.schedule]
colect_every = 1
[agents.nope]
[agents.example_ewma.params]
alpha = "x"
mode = "max"
[sim]
seed = 1.5
"""
    with pytest.raises(ConfigError) as info:
        load(text)
    problems = info.value.problems
    assert [(p.line, p.key) for p in problems] == [
        (1, "backend"),
        (3, "log.level"),
        (5, "agents.noop.schedule.colect_every"),
        (6, "agents.nope"),
        (8, "agents.example_ewma.params.alpha"),
        (9, "agents.example_ewma.params.mode"),
        (11, "sim.seed"),
    ]
    assert str(info.value).splitlines() == [str(p) for p in problems]
    assert all(p.source == SRC for p in problems)


def test_one_error_in_a_table_does_not_hide_its_other_errors() -> None:
    # an adversarial run: act_every = -0.5 went unreported next to a misspelt key
    text = "[agents.noop.schedule]\ncolect_every = 1\nact_every = -0.5\n"
    assert problems_of(text) == [
        "sol.toml:2: agents.noop.schedule.colect_every: unknown key (known: collect_every, act_every, "
        "prediction_ttl, assess_every, predict_every, max_invalid_streak, backoff_initial, backoff_max, "
        "callback_timeout, cpu_budget, budget_window, max_errors, error_window); did you mean collect_every?",
        "sol.toml:3: agents.noop.schedule.act_every: must be a finite number of seconds in [0.001, 604800], "
        "got -0.5",
    ]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        pytest.param(
            "[agents.noop.schedule]\nact_evry = 1\nbackoff_initial = 100\n",
            [(2, "agents.noop.schedule.act_evry"), (3, "agents.noop.schedule.backoff_initial")],
            id="cross-field-schedule-check-next-to-a-typo",
        ),
        pytest.param(
            "[daemon]\nmetrics_prot = 1\nmetrics_port = -1\nreport_every = 0\n",
            [(2, "daemon.metrics_prot"), (3, "daemon.metrics_port"), (4, "daemon.report_every")],
            id="every-daemon-key",
        ),
        pytest.param(
            "[linux.cpu]\nreserved_cores = [-1]\nharvest_cgroup = '/'\n"
            "[linux.memory]\nmigrate_mb_s = 0\nfar_node = 1\ntargets = [{ pid = 0 }, {}]\n",
            [
                (2, "linux.cpu.reserved_cores[0]"),
                (3, "linux.cpu.harvest_cgroup"),
                (5, "linux.memory.migrate_mb_s"),
                (6, "linux.memory.far_node"),
                (7, "linux.memory.targets[0].pid"),
                (7, "linux.memory.targets[1]"),
            ],
            id="every-linux-key",
        ),
        pytest.param(
            "[linux]\nreserved_cores = [-1]\nharvest_cgroup = '/'\nmigrate_mb_s = 0\nfar_node = 1\n"
            "memory_pid = 0\n",
            [
                (2, "linux.reserved_cores[0]"),
                (3, "linux.harvest_cgroup"),
                (4, "linux.migrate_mb_s"),
                (5, "linux.far_node"),
                (6, "linux.memory_pid"),
            ],
            id="every-deprecated-linux-key-at-the-key-written",
        ),
        pytest.param(
            "[agents.example_ewma.params]\nalpah = 1\nalpha = 2\n",
            [(2, "agents.example_ewma.params.alpah"), (3, "agents.example_ewma.params.alpha")],
            id="post-init-check-next-to-a-typo",
        ),
    ],
)
def test_every_problem_of_a_table_is_reported_at_its_key(text: str, keys: list[tuple[int, str]]) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [(p.line, p.key) for p in info.value.problems] == keys


# -- [linux]: the host roots, and one table per facility naming its targets -------------------

FACILITY_TABLES = """\
[linux]
cgroup_root = "/host/cgroup"
proc_root = "/host/proc"
sys_root = "/host/sys"

[linux.cpu]
harvest_cgroup = "batch.slice/harvest"
primary_cgroups = ["machine.slice/*"]
reserved_cores = [0, 1]
harvest_mode = "quota"
run_delay_source = "taskstats"
run_delay_cpu_share = 0.01

[linux.memory]
targets = [
  { pid = 1234 },
  { cgroup = "machine.slice/vm-a" },
]
migrate_mb_s = 128
far_nodes = [2, 3]
damon_kdamond = 1

[linux.gpu]
power_budget_w = 1400
budget_file = "/run/rack/gpu-budget-w"

[linux.faas]
cache_dir = "/var/cache/faas"
origin_dir = "/mnt/origin"
invocation_log = "/var/log/faas.jsonl"
"""


def test_each_linux_facility_has_its_own_table() -> None:
    cfg = load(FACILITY_TABLES)
    assert cfg.linux == LinuxConfig(
        cgroup_root=Path("/host/cgroup"),
        proc_root=Path("/host/proc"),
        sys_root=Path("/host/sys"),
        cpu=LinuxCpuConfig(
            harvest_cgroup="batch.slice/harvest",
            primary_cgroups=("machine.slice/*",),
            reserved_cores=(0, 1),
            harvest_mode="quota",
            run_delay_source="taskstats",
            run_delay_cpu_share=0.01,
        ),
        memory=LinuxMemoryConfig(
            targets=(MemoryTarget(pid=1234), MemoryTarget(cgroup="machine.slice/vm-a")),
            migrate_mb_s=128.0,
            far_nodes=(2, 3),
            damon_kdamond=1,
        ),
        gpu=LinuxGpuConfig(power_budget_w=1400.0, budget_file=Path("/run/rack/gpu-budget-w")),
        faas=LinuxFaasConfig(
            cache_dir=Path("/var/cache/faas"),
            origin_dir=Path("/mnt/origin"),
            invocation_log=Path("/var/log/faas.jsonl"),
        ),
    )
    assert cfg.warnings == ()


def test_the_facility_tables_can_be_written_as_dotted_keys_or_inline_tables() -> None:
    cfg = load(
        'linux.cpu.harvest_cgroup = "h"\nlinux.memory = { targets = [{ cgroup = "vm" }, { pid = 7 }] }\n'
    )
    assert cfg.linux.cpu.harvest_cgroup == "h"
    assert cfg.linux.memory.targets == (MemoryTarget(cgroup="vm"), MemoryTarget(pid=7))


MEMORY_TARGET_CASES = [
    pytest.param(
        "targets = [\n  { pid = 1, cgroup = 'vm' },\n]",
        "sol.toml:3: linux.memory.targets[0].cgroup: cannot be given with pid: "
        "a target is one process or one cgroup",
        id="both-pid-and-cgroup",
    ),
    pytest.param(
        "targets = [\n  { pid = 1 },\n  {},\n]",
        'sol.toml:4: linux.memory.targets[1]: a target needs one key: pid = PID or cgroup = "PATH"',
        id="neither",
    ),
    pytest.param(
        "targets = [{ pid = 0 }]",
        "sol.toml:2: linux.memory.targets[0].pid: must be an integer >= 1, got 0",
        id="pid-zero",
    ),
    pytest.param(
        "targets = [{ pid = -5 }]",
        "sol.toml:2: linux.memory.targets[0].pid: must be an integer >= 1, got -5",
        id="pid-negative",
    ),
    pytest.param(
        "targets = [{ pid = '1234' }]",
        'sol.toml:2: linux.memory.targets[0].pid: expected an integer, got "1234"',
        id="pid-a-string",
    ),
    pytest.param(
        "targets = [{ cgroup = '/' }]",
        "sol.toml:2: linux.memory.targets[0].cgroup: must be a relative, normalised cgroup path "
        'below the root, without "..", got "/"',
        id="cgroup-root",
    ),
    pytest.param(
        "targets = [{ cgroup = 'machine.slice/../../etc' }]",
        "sol.toml:2: linux.memory.targets[0].cgroup: must be a relative",
        id="cgroup-dotdot",
    ),
    pytest.param(
        "targets = [{ cgroup = '/sys/fs/cgroup/vm' }]",
        "sol.toml:2: linux.memory.targets[0].cgroup: must be a relative",
        id="cgroup-absolute",
    ),
    pytest.param(
        "targets = [{ cgroup = 'vm' }, { pid = 3 }, { cgroup = 'vm' }]",
        "sol.toml:2: linux.memory.targets[2]: repeats targets[0] (cgroup vm)",
        id="a-repeated-target",
    ),
    pytest.param(
        "targets = [{ pdi = 3 }]",
        "sol.toml:2: linux.memory.targets[0].pdi: unknown key (known: pid, cgroup); did you mean pid?",
        id="a-misspelt-key",
    ),
    pytest.param(
        "targets = [1234]", "sol.toml:2: linux.memory.targets[0]: expected a table, got 1234", id="a-bare-pid"
    ),
    pytest.param(
        "targets = { pid = 1 }",
        "sol.toml:2: linux.memory.targets: expected an array, got a table",
        id="one-table-not-an-array",
    ),
]


@pytest.mark.parametrize(("body", "expected"), MEMORY_TARGET_CASES)
def test_a_memory_target_is_exactly_one_pid_or_one_cgroup_below_the_root(body: str, expected: str) -> None:
    problems = problems_of(f"[linux.memory]\n{body}\n")
    assert problems[0].startswith(expected), problems


def test_several_memory_targets_load_in_file_order() -> None:
    cfg = load(
        "[linux.memory]\ntargets = [{ cgroup = 'machine.slice/vm-b' }, { pid = 99 }, "
        "{ cgroup = 'machine.slice/vm-a' }, { pid = 1 }]\n"
    )
    assert [t.describe() for t in cfg.linux.memory.targets] == [
        "cgroup machine.slice/vm-b",
        "pid 99",
        "cgroup machine.slice/vm-a",
        "pid 1",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[linux]\n\nharvest_mode = 'quota'\ncpus = 3",
            "sol.toml:4: linux.cpus: unknown key (known: cgroup_root, proc_root, sys_root, cpu, memory, gpu, "
            "faas); did you mean cpu?",
            id="linux",
        ),
        pytest.param(
            "[linux.cpu]\nharvest_group = 'x'",
            "sol.toml:2: linux.cpu.harvest_group: unknown key (known: harvest_cgroup, primary_cgroups, "
            "reserved_cores, harvest_mode, run_delay_source, run_delay_cpu_share); "
            "did you mean harvest_cgroup?",
            id="linux.cpu",
        ),
        pytest.param(
            "[linux.memory]\n\nmemory_pid = 3",
            "sol.toml:3: linux.memory.memory_pid: unknown key (known: targets, migrate_mb_s, far_nodes, "
            "damon_kdamond)",
            id="linux.memory",
        ),
        pytest.param(
            "[linux.gpu]\nbudget_w = 300",
            "sol.toml:2: linux.gpu.budget_w: unknown key (known: power_budget_w, budget_file, serving_urls, "
            "serving_engine, serving_metrics)",
            id="linux.gpu",
        ),
        pytest.param(
            "[linux.faas]\ncache = '/c'",
            "sol.toml:2: linux.faas.cache: unknown key (known: cache_dir, origin_dir, invocation_log)",
            id="linux.faas",
        ),
        pytest.param(
            "[linux.network]\nx = 1",
            "sol.toml:1: linux.network: unknown key (known: cgroup_root,",
            id="an-unknown-facility",
        ),
    ],
)
def test_an_unknown_key_in_any_linux_table_is_an_error_at_its_line(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[linux.gpu]\npower_budget_w = 0",
            "sol.toml:2: linux.gpu.power_budget_w: must be a finite number > 0",
            id="gpu-budget-zero",
        ),
        pytest.param(
            "[linux.gpu]\npower_budget_w = inf",
            "sol.toml:2: linux.gpu.power_budget_w: must be a finite number",
            id="gpu-budget-inf",
        ),
        pytest.param(
            "[linux.gpu]\nbudget_file = ''",
            "sol.toml:2: linux.gpu.budget_file: expected a non-empty path",
            id="gpu-budget-file-empty",
        ),
        pytest.param(
            "[linux.faas]\ncache_dir = 3",
            "sol.toml:2: linux.faas.cache_dir: expected a non-empty path",
            id="faas-cache-dir-not-a-path",
        ),
        pytest.param(
            "[linux.memory]\ndamon_kdamond = -1",
            "sol.toml:2: linux.memory.damon_kdamond: must be an integer >= 0",
            id="kdamond-negative",
        ),
        pytest.param(
            "[linux]\nmemory = []",
            "sol.toml:2: linux.memory: expected a table, got an array",
            id="facility-not-a-table",
        ),
    ],
)
def test_every_facility_value_is_checked_at_its_key(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


# -- the flat [linux] keys of earlier versions: loaded at their new place, warned ------------

OLD_KEY_CASES = [
    pytest.param(old, value, where, expected, new, id=old)
    for old, value, where, expected, new in [
        ("harvest_cgroup", '"batch"', ("cpu", "harvest_cgroup"), "batch", "[linux.cpu] harvest_cgroup"),
        ("primary_cgroups", '["vm*"]', ("cpu", "primary_cgroups"), ("vm*",), "[linux.cpu] primary_cgroups"),
        ("reserved_cores", "[0]", ("cpu", "reserved_cores"), (0,), "[linux.cpu] reserved_cores"),
        ("harvest_mode", '"quota"', ("cpu", "harvest_mode"), "quota", "[linux.cpu] harvest_mode"),
        (
            "run_delay_source",
            '"taskstats"',
            ("cpu", "run_delay_source"),
            "taskstats",
            "[linux.cpu] run_delay_source",
        ),
        (
            "run_delay_cpu_share",
            "0.5",
            ("cpu", "run_delay_cpu_share"),
            0.5,
            "[linux.cpu] run_delay_cpu_share",
        ),
        (
            "memory_pid",
            "1234",
            ("memory", "targets"),
            (MemoryTarget(pid=1234),),
            "[linux.memory] targets = [{ pid = 1234 }]",
        ),
        ("migrate_mb_s", "64", ("memory", "migrate_mb_s"), 64.0, "[linux.memory] migrate_mb_s"),
        ("far_nodes", "[1]", ("memory", "far_nodes"), (1,), "[linux.memory] far_nodes"),
        ("damon_kdamond", "0", ("memory", "damon_kdamond"), 0, "[linux.memory] damon_kdamond"),
        ("gpu_power_budget_w", "300", ("gpu", "power_budget_w"), 300.0, "[linux.gpu] power_budget_w"),
        ("faas_cache_dir", '"/c"', ("faas", "cache_dir"), Path("/c"), "[linux.faas] cache_dir"),
        ("faas_origin_dir", '"/o"', ("faas", "origin_dir"), Path("/o"), "[linux.faas] origin_dir"),
        (
            "faas_invocation_log",
            '"/l.jsonl"',
            ("faas", "invocation_log"),
            Path("/l.jsonl"),
            "[linux.faas] invocation_log",
        ),
    ]
]


@pytest.mark.parametrize(("old", "value", "where", "expected", "new"), OLD_KEY_CASES)
def test_an_old_flat_linux_key_loads_at_its_new_place_with_a_deprecation_warning(
    old: str, value: str, where: tuple[str, str], expected: object, new: str
) -> None:
    cfg = load(f'backend = "linux"\n[linux]\ncgroup_root = "/cg"\n{old} = {value}\n')
    assert getattr(getattr(cfg.linux, where[0]), where[1]) == expected
    assert cfg.linux.cgroup_root == Path("/cg")
    assert [str(w) for w in cfg.warnings] == [f"sol.toml:4: linux.{old}: deprecated: use {new}"]


def test_every_old_flat_linux_key_is_covered() -> None:
    assert {p.values[0] for p in OLD_KEY_CASES} == {m.old[-1] for m in sol.config._MOVED}


def test_old_keys_beside_new_tables_merge_into_them_and_warn_in_file_order() -> None:
    cfg = load(
        "[linux]\nmemory_pid = 7\nharvest_cgroup = 'h'\n"
        "[linux.cpu]\nreserved_cores = [0]\n[linux.memory]\nfar_nodes = [1]\n"
    )
    assert (cfg.linux.cpu.harvest_cgroup, cfg.linux.cpu.reserved_cores) == ("h", (0,))
    assert (cfg.linux.memory.targets, cfg.linux.memory.far_nodes) == ((MemoryTarget(pid=7),), (1,))
    assert [(w.line, w.key) for w in cfg.warnings] == [(2, "linux.memory_pid"), (3, "linux.harvest_cgroup")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[linux]\nharvest_cgroup = 'a'\n[linux.cpu]\nharvest_cgroup = 'b'\n",
            "sol.toml:2: linux.harvest_cgroup: given twice: also as [linux.cpu] harvest_cgroup (line 4); "
            "delete this deprecated key",
            id="harvest_cgroup",
        ),
        pytest.param(
            "[linux]\nmemory_pid = 3\n[linux.memory]\ntargets = [{ pid = 3 }]\n",
            "sol.toml:2: linux.memory_pid: given twice: also as [linux.memory] targets (line 4); "
            "delete this deprecated key",
            id="memory_pid",
        ),
        pytest.param(
            "[linux]\nfaas_cache_dir = '/a'\nfaas.cache_dir = '/b'\n",
            "sol.toml:2: linux.faas_cache_dir: given twice: also as [linux.faas] cache_dir (line 3); "
            "delete this deprecated key",
            id="faas_cache_dir-dotted",
        ),
    ],
)
def test_an_old_key_and_its_new_key_together_are_an_error(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[linux]\n\nmemory_pid = 0\n",
            "sol.toml:3: linux.memory_pid: must be an integer >= 1, got 0",
            id="memory_pid-zero",
        ),
        pytest.param(
            "[linux]\nmemory_pid = 'vm'\n",
            'sol.toml:2: linux.memory_pid: expected an integer, got "vm"',
            id="memory_pid-a-string",
        ),
        pytest.param(
            "[linux]\nreserved_cores = [\n  1,\n  -1,\n]\n",
            "sol.toml:4: linux.reserved_cores[1]: must be an integer >= 0, got -1",
            id="reserved_cores-element",
        ),
        pytest.param(
            "[linux]\nharvest_cgroup = '../x'\n",
            "sol.toml:2: linux.harvest_cgroup: must be a relative",
            id="harvest_cgroup-dotdot",
        ),
        pytest.param(
            "[linux]\ngpu_power_budget_w = -1\n",
            "sol.toml:2: linux.gpu_power_budget_w: must be a finite number > 0",
            id="gpu_power_budget_w",
        ),
    ],
)
def test_a_bad_value_under_an_old_key_is_reported_at_the_key_the_file_wrote(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert str(info.value.problems[0]).startswith(expected), info.value.problems
    assert [w.key for w in info.value.warnings] == [expected.split(": ")[1].partition("[")[0]]


def test_check_config_prints_deprecation_warnings_and_still_passes(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text('backend = "linux"\n[linux]\nharvest_cgroup = "h"\nmemory_pid = 42\n[agents.noop]\n')
    out = io.StringIO()
    assert check_config_command(old, AGENTS, out) == 0
    assert out.getvalue().splitlines() == [
        f"warning: {old}:3: linux.harvest_cgroup: deprecated: use [linux.cpu] harvest_cgroup",
        f"warning: {old}:4: linux.memory_pid: deprecated: use [linux.memory] targets = [{{ pid = 42 }}]",
        f"OK: {old}: 1 agent (noop), backend linux, 2 warnings",
    ]


def test_check_config_prints_the_warnings_of_a_file_that_fails_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[linux]\nharvest_cgroup = "h"\nrun_delay_cpu_share = 2\n')
    out = io.StringIO()
    assert check_config_command(bad, AGENTS, out) == 1
    assert out.getvalue().splitlines() == [
        f"warning: {bad}:2: linux.harvest_cgroup: deprecated: use [linux.cpu] harvest_cgroup",
        f"warning: {bad}:3: linux.run_delay_cpu_share: deprecated: use [linux.cpu] run_delay_cpu_share",
        f"{bad}:3: linux.run_delay_cpu_share: must be a finite number in (0, 1], got 2.0",
        "1 problem found",
    ]


# -- the shipped configs: every [linux] key shown, each loads as shown ------------------------

SHIPPED = {
    "default.toml": Path(sol.config.__file__).with_name("default.toml"),
    "sol.toml.example": Path(__file__).resolve().parents[1] / "systemd" / "sol.toml.example",
}


def linux_keys(cls: type[Any] = LinuxConfig, prefix: tuple[str, ...] = ("linux",)) -> set[tuple[str, ...]]:
    """Every key path of ``[linux]`` and its facility tables."""
    out: set[tuple[str, ...]] = set()
    for f in dataclasses.fields(cls):
        sub = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(sub):
            out |= linux_keys(sub, (*prefix, f.name))  # type: ignore[arg-type]
        else:
            out.add((*prefix, f.name))
    return out


def uncomment_linux(text: str) -> str:
    """``text`` with its commented ``[linux...]`` headers and the keys below them uncommented
    (up to the agents' part, which has its own test)."""
    start = text.index("[linux")
    start = text.rindex("\n", 0, start) + 1
    end = text.index("\n# Agents", start)
    region = re.sub(r"(?m)^# (\[linux[a-z.]*\].*|[a-z_]+ = .*)$", r"\1", text[start:end])
    return text[:start] + region + text[end:]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_config_shows_every_linux_key_and_loads_uncommented_without_warnings(name: str) -> None:
    text = SHIPPED[name].read_text()
    for body in (text, uncomment_linux(text)):
        cfg = loads_config(body, source=name, agents=real_agents())
        assert cfg.warnings == ()
    shown = {k for k in locate_keys(uncomment_linux(text)) if k[:1] == ("linux",)}
    if name == "default.toml":  # every key is in sol/default.toml (docs/operating.md)
        assert linux_keys() <= shown
    assert {k for k in shown if not isinstance(k[-1], sol.config._Index)} <= linux_keys() | {
        ("linux",),
        ("linux", "cpu"),
        ("linux", "memory"),
        ("linux", "gpu"),
        ("linux", "faas"),
    } | {k for k in shown if k[:3] == ("linux", "memory", "targets")}


# -- the real agents: every number finite and in range, setup's checks at load ----------------


def real_agents() -> dict[str, type[Agent]]:
    from sol.registry import Registry

    return Registry(plugins=False).classes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[agents.cpu_harvest.params]\nmax_short_rate = nan",
            "sol.toml:2: agents.cpu_harvest.params.max_short_rate: "
            "must be a finite number in [0, 1], got nan",
            id="cpu_harvest-max_short_rate-nan",
        ),
        pytest.param(
            "[agents.cpu_harvest.params]\nmax_under_rate = nan",
            "sol.toml:2: agents.cpu_harvest.params.max_under_rate: "
            "must be a finite number in [0, 1], got nan",
            id="cpu_harvest-max_under_rate-nan",
        ),
        pytest.param(
            "[agents.cpu_harvest.params]\nmax_primary_pressure = nan",
            "sol.toml:2: agents.cpu_harvest.params.max_primary_pressure: "
            "must be a finite number >= 0, got nan",
            id="cpu_harvest-max_primary_pressure-nan",
        ),
        pytest.param(
            "[agents.cpu_harvest.params]\nmax_primary_delay_share = nan",
            "sol.toml:2: agents.cpu_harvest.params.max_primary_delay_share: "
            "must be a finite number in [0, 1], got nan",
            id="cpu_harvest-max_primary_delay_share-nan",
        ),
        pytest.param(
            "[agents.cpu_harvest.params]\nlr = nan",
            "sol.toml:2: agents.cpu_harvest.params.lr: must be a finite number > 0, got nan",
            id="cpu_harvest-lr-nan",
        ),
        pytest.param(
            "[agents.cpu_harvest.params]\nfrozen_samples = 1",
            "sol.toml:2: agents.cpu_harvest.params.frozen_samples: must be an integer >= 2, got 1",
            id="cpu_harvest-frozen-samples",
        ),
        pytest.param(
            "[agents.cpu_harvest.schedule]\nact_every = 1e-300",
            "sol.toml:2: agents.cpu_harvest.schedule.act_every: "
            "must be a finite number of seconds in [0.001, 604800], got 1e-300",
            id="cpu_harvest-act_every-spin",
        ),
        pytest.param(
            "[agents.example_ewma.params]\nalpha = nan",
            "sol.toml:2: agents.example_ewma.params.alpha: must be a finite number in (0, 1], got nan",
            id="example_ewma-alpha-nan",
        ),
        pytest.param(
            "[agents.example_ewma.params]\nmax_under_rate = 1.5",
            "sol.toml:2: agents.example_ewma.params.max_under_rate: "
            "must be a finite number in [0, 1], got 1.5",
            id="example_ewma-max_under_rate",
        ),
        pytest.param(
            "[agents.example_ewma.params]\nmargin_cores = -inf",
            "sol.toml:2: agents.example_ewma.params.margin_cores: must be a finite number >= 0, got -inf",
            id="example_ewma-margin-inf",
        ),
    ],
)
def test_real_agents_refuse_what_their_setup_would(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source=SRC, agents=real_agents())
    assert [str(p) for p in info.value.problems] == [expected]


def test_every_number_of_every_registered_agents_params_must_be_finite() -> None:
    """A generic check, not a list: a float field added to any Params is covered too."""
    import dataclasses
    import typing

    checked = 0
    for name, cls in real_agents().items():
        params = getattr(cls, "Params", NoParams)
        hints = typing.get_type_hints(params)
        for f in dataclasses.fields(params):
            if float not in (hints[f.name], *typing.get_args(hints[f.name])):
                continue
            for bad in ("nan", "inf", "-inf"):
                text = f"[agents.{name}.params]\n{f.name} = {bad}\n"
                with pytest.raises(ConfigError) as info:
                    loads_config(text, source=SRC, agents=real_agents())
                (problem,) = info.value.problems
                assert (problem.line, problem.key) == (2, f"agents.{name}.params.{f.name}"), str(problem)
                assert f"got {bad}" in problem.message, str(problem)
                checked += 1
    assert checked > 30  # cpu_harvest alone has more float fields than that


class Checked(Agent):
    """An agent whose setup refuses a combination of params (and says which)."""

    name = "checked"
    schedule = BASE_SCHEDULE
    Params = NeedsParams
    calls: typing.ClassVar[list[object]] = []

    @classmethod
    def check_params(cls, params: Any, schedule: Schedule) -> Sequence[ParamError]:
        cls.calls.append(params)
        problems = []
        if params.target == "nowhere":
            problems.append(ParamError("target", 'must name a place, got "nowhere"'))
        if params.share > schedule.act_every:
            raise ValueError(f"share ({params.share}) must not exceed act_every ({schedule.act_every})")
        return problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[agents.checked.params]\ntarget = "nowhere"\n',
            ['sol.toml:2: agents.checked.params.target: must name a place, got "nowhere"'],
            id="a-problem-naming-its-field",
        ),
        pytest.param(
            '[agents.checked.params]\ntarget = "x"\nshare = 5\n',
            ["sol.toml:3: agents.checked.params.share: share (5.0) must not exceed act_every (2.0)"],
            id="a-value-error-mentioning-a-set-field",
        ),
        pytest.param(
            '[agents.checked]\nenabled = true\n[agents.checked.params]\ntarget = "x"\n'
            "[agents.checked.schedule]\nact_every = 0.25\n",
            ["sol.toml:3: agents.checked.params: share (0.5) must not exceed act_every (0.25)"],
            id="a-value-error-about-a-default",
        ),
    ],
)
def test_check_config_runs_the_agents_own_params_check(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source=SRC, agents={"checked": Checked})
    assert [str(p) for p in info.value.problems] == expected


def test_the_params_check_sees_only_params_that_loaded() -> None:
    Checked.calls.clear()
    with pytest.raises(ConfigError):
        loads_config("[agents.checked.params]\ntarget = 3\n", source=SRC, agents={"checked": Checked})
    assert Checked.calls == []
    cfg = loads_config('[agents.checked.params]\ntarget = "x"\n', source=SRC, agents={"checked": Checked})
    assert Checked.calls == [NeedsParams(target="x")] and cfg.agents["checked"].params == NeedsParams("x")


# -- what a valid file gives -----------------------------------------------------------------


def test_schedule_overrides_are_applied_over_the_class_schedule() -> None:
    cfg = load("[agents.noop.schedule]\nact_every = 4\nmax_invalid_streak = 7\n")
    schedule = cfg.agents["noop"].schedule
    assert schedule == BASE_SCHEDULE.replace(act_every=4.0, max_invalid_streak=7)
    assert isinstance(schedule.act_every, float)


@pytest.mark.parametrize(
    ("agent", "override", "predict_every"),
    [
        pytest.param("noop", "collect_every = 3", 3.0, id="implicit-predict-every-follows-collect"),
        pytest.param("example_ewma", "collect_every = 3", 1.0, id="explicit-predict-every-is-kept"),
        pytest.param(
            "noop", "collect_every = 3\npredict_every = 6\nprediction_ttl = 6", 6.0, id="both-overridden"
        ),
    ],
)
def test_predict_every_follows_an_overridden_collect_every(
    agent: str, override: str, predict_every: float
) -> None:
    cfg = load(f"[agents.{agent}.schedule]\n{override}\n")
    assert cfg.agents[agent].schedule.predict_every == predict_every


@pytest.mark.parametrize(
    ("overrides", "predict_every"),
    [
        pytest.param({"collect_every": 0.05, "prediction_ttl": 0.15}, 0.05, id="defaulted-follows"),
        pytest.param(
            {"collect_every": 0.05, "predict_every": 0.1, "prediction_ttl": 0.3}, 0.1, id="overridden"
        ),
        pytest.param({"act_every": 0.05}, 0.2, id="collect-unchanged"),
    ],
)
def test_schedule_replace_carries_a_defaulted_predict_every_along_with_collect_every(
    overrides: dict[str, float], predict_every: float
) -> None:
    # benchmarks/cpu_harvest.py --window 0.05 replaced collect_every, act_every and
    # prediction_ttl of cpu_harvest's 200 ms schedule: predict_every stayed 0.2 and the
    # schedule was refused (prediction_ttl 0.15 < predict_every); at --window 0.1 the agent
    # predicted every other window. Config did this itself; every caller of replace does now.
    from sol.sdk import Schedule

    base = Schedule(collect_every=0.2, act_every=0.2, prediction_ttl=0.6, assess_every=1.0)
    assert base.replace(**overrides).predict_every == predict_every
    explicit = Schedule(
        collect_every=0.2, act_every=0.2, prediction_ttl=0.6, assess_every=1.0, predict_every=0.4
    )
    assert explicit.replace(collect_every=0.1).predict_every == 0.4


def test_params_are_an_instance_of_the_agent_params_dataclass_with_typed_values() -> None:
    cfg = load(
        """
[agents.example_ewma]
dry_run = true
[agents.example_ewma.params]
alpha = 1
window = 20
mode = "peak"
tags = ["a", "b"]
limit = "unbounded"
cache = "/var/cache/sol"
"""
    )
    agent = cfg.agents["example_ewma"]
    assert agent == AgentConfig(
        name="example_ewma",
        enabled=True,
        dry_run=True,
        schedule=ExampleEwma.schedule,
        params=EwmaParams(
            alpha=1.0,
            window=20,
            mode="peak",
            tags=["a", "b"],
            limit="unbounded",
            cache=Path("/var/cache/sol"),
        ),
    )
    assert isinstance(agent.params.alpha, float)
    assert isinstance(agent.params.cache, Path)


def test_only_configured_agents_appear_and_params_default() -> None:
    cfg = load("[agents.noop]\nenabled = false\n[agents.example_ewma]\n")
    assert list(cfg.agents) == ["noop", "example_ewma"]
    assert cfg.agents["noop"].params == NoParams()
    assert cfg.agents["example_ewma"].params == EwmaParams()
    assert [a.name for a in cfg.enabled_agents] == ["example_ewma"]
    with pytest.raises(TypeError):
        cfg.agents["x"] = cfg.agents["noop"]  # type: ignore[index]


def test_a_dotted_key_and_a_header_for_the_same_agent_both_count() -> None:
    cfg = load("agents.noop.dry_run = true\n[agents.noop.schedule]\nact_every = 9\n")
    assert cfg.agents["noop"].dry_run is True
    assert cfg.agents["noop"].schedule.act_every == 9.0


def test_embedded_default_loads_noop_and_example_on_sim() -> None:
    cfg = load_config(None, agents={"noop": Noop, "example_ewma": ExampleEwma}, environ={"HOME": "/home/op"})
    assert cfg.source == EMBEDDED_SOURCE
    assert cfg.backend == "sim"
    assert cfg.rollback == "auto"
    assert sorted(cfg.agents) == ["example_ewma", "noop"]
    assert all(a.enabled and not a.dry_run for a in cfg.agents.values())
    assert cfg.state_dir == Path("/home/op/.local/state/sol")
    assert cfg.journal_path == Path("/home/op/.local/state/sol/undo.journal")
    assert cfg.linux == LinuxConfig()


def test_embedded_default_is_strict_about_agent_names() -> None:
    with pytest.raises(ConfigError, match=r"agents\.example_ewma: unknown agent \(known: noop\)"):
        load_config(None, agents={"noop": Noop})


@pytest.mark.parametrize(
    ("text", "environ", "state_dir", "journal"),
    [
        pytest.param(
            "",
            {"XDG_STATE_HOME": "/x/state", "HOME": "/h"},
            "/x/state/sol",
            "/x/state/sol/undo.journal",
            id="xdg",
        ),
        pytest.param(
            "",
            {"XDG_STATE_HOME": "relative", "HOME": "/h"},
            "/h/.local/state/sol",
            "/h/.local/state/sol/undo.journal",
            id="xdg-relative-ignored",
        ),
        pytest.param(
            "", {"HOME": "/h"}, "/h/.local/state/sol", "/h/.local/state/sol/undo.journal", id="home"
        ),
        pytest.param(
            'backend = "linux"',
            {"XDG_STATE_HOME": "/x"},
            "/var/lib/sol",
            "/var/lib/sol/undo.journal",
            id="linux",
        ),
        pytest.param(
            '[paths]\nstate_dir = "/srv/sol"', {}, "/srv/sol", "/srv/sol/undo.journal", id="state-dir-set"
        ),
        pytest.param(
            '[paths]\njournal = "/j/undo"', {"HOME": "/h"}, "/h/.local/state/sol", "/j/undo", id="journal-set"
        ),
    ],
)
def test_state_dir_and_journal_path_defaults(
    text: str, environ: dict[str, str], state_dir: str, journal: str
) -> None:
    cfg = load(text, environ=environ)
    assert (cfg.state_dir, cfg.journal_path) == (Path(state_dir), Path(journal))


def test_load_config_reads_a_file_and_names_it(tmp_path: Path) -> None:
    good = tmp_path / "sol.toml"
    good.write_text('backend = "linux"\n[agents.noop]\ndry_run = true\n')
    cfg = load_config(good, agents=AGENTS)
    assert (cfg.source, cfg.backend, cfg.agents["noop"].dry_run) == (str(good), "linux", True)

    bad = tmp_path / "bad.toml"
    bad.write_text("[agents.noop]\nenabled = 1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:2: agents\.noop\.enabled: "):
        load_config(bad, agents=AGENTS)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, r"missing\.toml: cannot read: No such file or directory", id="missing-file"),
        pytest.param(b'a = "\xff"\n', r"missing\.toml:1: invalid TOML: not UTF-8 text", id="not-utf8"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "missing.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected):
        load_config(path, agents=AGENTS)


def test_a_config_larger_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    with path.open("wb") as fh:  # sparse: a size, not a megabyte of writes
        fh.truncate(sol.files.CONFIG_MAX_BYTES + 1)
    with pytest.raises(ConfigError) as info:
        load_config(path, agents=AGENTS)
    (problem,) = info.value.problems
    assert str(problem) == (
        f"{path}: config {path} is {sol.files.CONFIG_MAX_BYTES + 1} bytes, more than the "
        f"{sol.files.CONFIG_MAX_BYTES} a config may be; refusing to read it"
    )


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file \\(a directory\\)"):
        load_config(tmp_path, agents=AGENTS)


@pytest.mark.parametrize(
    ("environ", "system_exists", "expected"),
    [
        pytest.param({"SOL_CONFIG": "/opt/sol.toml"}, True, "/opt/sol.toml", id="env-wins"),
        pytest.param({"SOL_CONFIG": ""}, True, "SYSTEM", id="empty-env-ignored"),
        pytest.param({}, True, "SYSTEM", id="system-file"),
        pytest.param({}, False, None, id="embedded"),
    ],
)
def test_default_config_path(
    tmp_path: Path, environ: dict[str, str], system_exists: bool, expected: str | None
) -> None:
    system = tmp_path / "sol.toml"
    if system_exists:
        system.write_text("")
    result = default_config_path(environ, system_path=system)
    want = system if expected == "SYSTEM" else (Path(expected) if expected else None)
    assert result == want


def test_check_config_command_ok_and_problems(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[agents.noop]\ndry_run = true\n[agents.example_ewma]\nenabled = false\n")
    out = io.StringIO()
    assert check_config_command(good, AGENTS, out) == 0
    assert out.getvalue() == f"OK: {good}: 2 agents (noop [dry-run], example_ewma [disabled]), backend sim\n"

    bad = tmp_path / "bad.toml"
    bad.write_text('rollback = "never"\n[agents.nope]\n')
    out = io.StringIO()
    assert check_config_command(bad, AGENTS, out) == 1
    assert out.getvalue().splitlines() == [
        f'{bad}:1: rollback: expected one of "auto", "not_on_exit", got "never"',
        f"{bad}:2: agents.nope: unknown agent (known: example_ewma, needy, noop, unscheduled)",
        "2 problems found",
    ]


def test_check_config_command_on_the_embedded_default() -> None:
    out = io.StringIO()
    assert check_config_command(None, {"noop": Noop, "example_ewma": ExampleEwma}, out) == 0
    assert out.getvalue() == "OK: <embedded default>: 2 agents (noop, example_ewma), backend sim\n"


def test_doctests() -> None:
    result = doctest.testmod(sol.config)
    assert result.attempted > 0 and result.failed == 0


# -- the key locator -------------------------------------------------------------------------

LOCATE_CASES = [
    pytest.param("a = 1\nb = 2", ("b",), 2, id="top-level"),
    pytest.param("\n# c\n[t]\n\nk = 1", ("t", "k"), 5, id="table"),
    pytest.param("[a.b.c]\nk = 1", ("a", "b"), 1, id="implied-table"),
    pytest.param("[ a . 'b.c' . \"d\" ]\nk = 1", ("a", "b.c", "d", "k"), 2, id="spaced-quoted-header"),
    pytest.param("x.y.z = 1\nx.w = 2", ("x", "w"), 2, id="dotted-keys"),
    pytest.param("\"a.b\" = 1\n'c d' = 2", ("c d",), 2, id="quoted-keys"),
    pytest.param('"\\u00e9\\"\\n" = 1', ('é"\n',), 1, id="escaped-quoted-key"),
    pytest.param("t = { a = 1, b = { c = 2 } }\nz = 3", ("t", "b", "c"), 1, id="inline-table"),
    pytest.param('s = """\nx = 1\n[fake]\n"""\nreal = 1', ("real",), 5, id="multiline-string-hides-keys"),
    pytest.param("s = '''\n'''''\nreal = 1", ("real",), 3, id="multiline-literal-extra-quotes"),
    pytest.param('s = """a\\"""\n"""\nreal = 1', ("real",), 3, id="multiline-escaped-quote"),
    pytest.param("a = [\n  1, # ]\n  { k = 2 },\n]\nb = 1", ("a", "1", "k"), 3, id="array-spanning-lines"),
    pytest.param("[[p]]\nn = 1\n[[p]]\nn = 2", ("p", "1", "n"), 4, id="array-of-tables"),
    pytest.param("d = 1979-05-27 07:32:00 # c\ne = 1", ("e",), 2, id="datetime-with-space"),
    pytest.param("a = 1\r\nb = 2\r\n", ("b",), 2, id="crlf"),
]


@pytest.mark.parametrize(("text", "path", "line"), LOCATE_CASES)
def test_locate_keys(text: str, path: tuple[str, ...], line: int) -> None:
    tomllib.loads(text)  # the cases are valid TOML
    assert locate_keys(text)[path] == line


_key_chars = st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc"))
keys = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True), st.text(_key_chars, max_size=6))
scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.text(_key_chars, max_size=8).map(lambda s: json.dumps(s)),
    st.text(st.sampled_from("ab\n#[]="), max_size=10).map(lambda s: '"""' + s.replace('"', "") + '"""'),
    st.lists(st.integers(0, 9), max_size=4).map(lambda xs: "[\n" + ",\n".join(map(str, xs)) + "\n]"),
)
inline_scalars = st.one_of(st.integers(0, 99).map(str), st.text("ab #]}", max_size=5).map(json.dumps))
trees = st.recursive(
    st.dictionaries(keys, scalars, max_size=3),
    lambda children: st.dictionaries(keys, st.one_of(scalars, children), max_size=3),
    max_leaves=12,
)


def _quote(key: str, literal: bool) -> str:
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    if literal and "'" not in key:
        return f"'{key}'"
    return json.dumps(key)


class _Renderer:
    """Writes a tree as TOML in mixed styles and remembers where each key landed."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.text = ""
        self.expected: dict[tuple[str, ...], int] = {}

    def line(self) -> int:
        return self.text.count("\n") + 1

    def emit(self, content: str, path: tuple[str, ...]) -> None:
        self.expected.setdefault(path, self.line())
        self.text += content + "\n"

    def key(self, path: tuple[str, ...]) -> str:
        return ".".join(_quote(k, self.draw(st.booleans())) for k in path)

    def inline(self, tree: dict[str, Any], path: tuple[str, ...]) -> str:
        parts = []
        for k, v in tree.items():
            self.expected.setdefault((*path, k), self.line())
            value = self.inline(v, (*path, k)) if isinstance(v, dict) else self.draw(inline_scalars)
            parts.append(f"{self.key((k,))} = {value}")
        return "{ " + ", ".join(parts) + " }"

    def leaves(self, tree: dict[str, Any], rel: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
        out: list[tuple[tuple[str, ...], Any]] = []
        for k, v in tree.items():
            if isinstance(v, dict) and v:
                out.extend(self.leaves(v, (*rel, k)))
            else:
                out.append(((*rel, k), v))
        return out

    def table(self, tree: dict[str, Any], path: tuple[str, ...]) -> None:
        headers = []
        for k, v in tree.items():
            if not isinstance(v, dict):
                self.emit(f"{self.key((k,))} = {v}", (*path, k))
                continue
            style = self.draw(st.sampled_from(["header", "dotted", "inline"]))
            if style == "header":
                headers.append((k, v))
            elif style == "inline" or not v:
                self.expected.setdefault((*path, k), self.line())
                self.text += f"{self.key((k,))} = {self.inline(v, (*path, k))}\n"
            else:
                for rel, leaf in self.leaves(v, (k,)):
                    for end in range(1, len(rel)):
                        self.expected.setdefault((*path, *rel[:end]), self.line())
                    value = "{}" if isinstance(leaf, dict) else leaf
                    self.emit(f"{self.key(rel)} = {value}", (*path, *rel))
        for k, v in headers:
            self.emit(f"[{self.key((*path, k))}]", (*path, k))
            self.table(v, (*path, k))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, data=st.data())
def test_locate_keys_finds_every_key_of_any_document(tree: dict[str, Any], data: st.DataObject) -> None:
    renderer = _Renderer(data.draw)
    renderer.table(tree, ())
    tomllib.loads(renderer.text)  # the renderer writes valid TOML
    found = locate_keys(renderer.text)
    for path, line in renderer.expected.items():
        assert found.get(path) == line, (path, renderer.text)


# -- robustness: nothing but ConfigError, whatever the text -----------------------------------

FRAGMENTS = [
    "[agents.noop]",
    "[agents.noop.schedule]",
    "[agents.noop.params]",
    "[agents.example_ewma]",
    "[agents.example_ewma.params]",
    "[agents.needy.params]",
    "[agents.unscheduled.schedule]",
    "[agents]",
    "[[agents]]",
    "[sim]",
    "[log]",
    "[paths]",
    "[linux]",
    "[linux.cpu]",
    "[linux.memory]",
    "[linux.faas]",
    "[[x]]",
    "memory_pid = 0",
    "harvest_cgroup = 'a'",
    "cpu = { harvest_cgroup = '..' }",
    "targets = [{ pid = 1 }, { cgroup = 'a' }, {}, 3]",
    "faas_cache_dir = ''",
    "cache_dir = '/c'",
    "collect_every = 0",
    "collect_every = -1e400",
    "act_every = inf",
    "backoff_initial = 1e9",
    "predict_every = 1",
    "max_invalid_streak = 0",
    "cpu_budget = 99999999999999999999999",
    "seed = 99999999999999999999",
    'state_dir = "\\u0000"',
    'journal = ""',
    "alpha = nan",
    "alpha = 0.5",
    "window = true",
    "tags = [1, [2], {a = 1}]",
    "limit = 'x'",
    'mode = "peak"',
    "target = 1",
    "share = 10" + "0" * 320,
    "enabled = 1",
    "enabled = false",
    "dry_run = true",
    "noop = {}",
    "noop = { schedule = { act_every = -1 } }",
    'backend = "linux"',
    "rollback = 0",
    "agents.noop = 3",
    "agents.nope.x = 1",
    "params = []",
    "schedule = 1979-05-27T07:32:00Z",
    "= =",
    '"" = 1',
    "a.b.c = {x = [1, {y = 2}]}",
    '"""',
    "'''",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=12).map("\n".join))
def test_random_junk_raises_nothing_but_config_error(text: str) -> None:
    try:
        cfg = load(text, environ={"HOME": "/h"})
    except ConfigError as exc:
        assert exc.problems
        assert all(str(p).startswith(SRC) for p in exc.problems)
    else:
        assert isinstance(cfg, Config)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_config_shows_every_production_agent_and_its_blocks_load_uncommented(name: str) -> None:
    text = SHIPPED[name].read_text()
    start = text.index("# [agents.cpu_harvest]")
    region = re.sub(r"(?m)^# (\[agents[a-z_.]*\].*|[a-z_]+ = .*)$", r"\1", text[start:])
    cfg = loads_config(text[:start] + region, source=name, agents=real_agents())
    assert cfg.warnings == ()
    assert {"cpu_harvest", "mem_tier", "gpu_power", "faas_prewarm"} <= set(cfg.agents)
    assert all(cfg.agents[a].dry_run for a in ("cpu_harvest", "mem_tier", "gpu_power", "faas_prewarm"))
