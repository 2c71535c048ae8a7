"""sol.config: typed TOML config whose every error names the file, the line and the key."""

from __future__ import annotations

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
        "[linux]\nrun_delay_cpu_share = 0.0",
        "sol.toml:2: linux.run_delay_cpu_share: must be a finite number in (0, 1], got 0.0",
        id="run-delay-share-zero",
    ),
    pytest.param(
        "[linux]\nreserved_cores = [\n  99,\n  -1,\n]",
        "sol.toml:4: linux.reserved_cores[1]: must be an integer >= 0, got -1",
        id="reserved-core-negative",
    ),
    pytest.param(
        '[linux]\nharvest_cgroup = "/"',
        "sol.toml:2: linux.harvest_cgroup: must be a relative, normalised cgroup path below the root, "
        'without "..", got "/"',
        id="harvest-cgroup-root",
    ),
    pytest.param(
        '[linux]\nharvest_cgroup = "../escape"',
        "sol.toml:2: linux.harvest_cgroup: must be a relative",
        id="harvest-cgroup-dotdot",
    ),
    pytest.param(
        '[linux]\nharvest_cgroup = "/sys/fs/cgroup/x"',
        "sol.toml:2: linux.harvest_cgroup: must be a relative",
        id="harvest-cgroup-absolute",
    ),
    pytest.param(
        '[linux]\nharvest_cgroup = "a//b/"',
        "sol.toml:2: linux.harvest_cgroup: must be a relative",
        id="harvest-cgroup-not-normalised",
    ),
    pytest.param(
        '[linux]\nharvest_cgroup = "."',
        "sol.toml:2: linux.harvest_cgroup: must be a relative",
        id="harvest-cgroup-dot",
    ),
    pytest.param(
        "[linux]\nmigrate_mb_s = nan",
        "sol.toml:2: linux.migrate_mb_s: must be a finite number > 0, got nan",
        id="linux-nan",
    ),
    pytest.param(
        "[linux]\nfar_nodes = [0, -2]",
        "sol.toml:2: linux.far_nodes[1]: must be an integer >= 0, got -2",
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
            "[linux]\nreserved_cores = [-1]\nharvest_cgroup = '/'\nmigrate_mb_s = 0\nfar_node = 1\n",
            [
                (2, "linux.reserved_cores[0]"),
                (3, "linux.harvest_cgroup"),
                (4, "linux.migrate_mb_s"),
                (5, "linux.far_node"),
            ],
            id="every-linux-key",
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
    "[[x]]",
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
