"""``sol new-agent NAME``: a new agent as an installable plugin package, ready to fill in.

What it writes (``DIR/sol-agent-NAME``, nothing if that exists):

=================================  ================================================================
file                               what it is
=================================  ================================================================
``pyproject.toml``                 the distribution, with the ``sol.agents`` entry point sol's
                                   registry reads (``sol agents`` lists the agent once installed)
``sol_agent_NAME/agent.py``        the agent: valid and safe as generated (it observes and changes
                                   nothing, like ``sol.agents.noop``), a TODO where each piece of
                                   decision logic goes, typed ``Params``, the docstring
                                   ``sol agents`` shows
``tests/test_NAME.py``             ``sol.testing.check_agent``, a simulated run, the entry point
``sol.toml``                       a config that runs the agent alone under ``sol sim``
``README.md``                      install, test, simulate: three commands
=================================  ================================================================

The templates are the strings below, so what ``sol new-agent`` makes is reviewed with sol's
code; ``examples/sol-agent-hello`` in the repository is its output for ``hello``, installed and
tested by ``make test``, and a test checks the two are still the same.

>>> sorted(render("hello"))[:3]
['README.md', 'pyproject.toml', 'sol.toml']
>>> check_name("Hello")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sol.scaffold.ScaffoldError: agent name 'Hello' must be snake_case: ...
"""

from __future__ import annotations

import keyword
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

__all__ = ["Names", "ScaffoldError", "check_name", "new_agent", "render"]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(ValueError):
    """A name or a destination ``sol new-agent`` cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class Names:
    """Every name derived from the agent's: one rule, used by every template."""

    name: str  # the registry key and config section: hello
    cls: str  # the agent class: HelloAgent
    package: str  # the import package: sol_agent_hello
    dist: str  # the distribution and its folder: sol-agent-hello

    @classmethod
    def of(cls, name: str) -> Names:
        camel = "".join(part.capitalize() for part in name.split("_") if part)
        return cls(
            name=name,
            cls=camel if camel.endswith("Agent") else camel + "Agent",
            package=f"sol_agent_{name}",
            dist="sol-agent-" + name.replace("_", "-"),
        )


def check_name(name: str, taken: Iterable[str] = ()) -> str:
    """``name`` if it can name an agent, else :class:`ScaffoldError` saying why."""
    if not _SNAKE.match(name):
        raise ScaffoldError(
            f"agent name {name!r} must be snake_case: a lower-case letter, then lower-case letters, "
            "digits or '_' (it is the registry key and the config section [agents.NAME])"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"agent name {name!r} is a Python keyword")
    taken = sorted(taken)
    if name in taken:
        # the registry ignores a plugin whose name a built-in agent has
        raise ScaffoldError(f"agent name {name!r} is taken by a built-in agent ({', '.join(taken)})")
    return name


def render(name: str) -> dict[str, str]:
    """The new package's files: relative path -> text."""
    n = Names.of(check_name(name))
    exports = sorted([n.cls, "Params"])  # as isort and ruff order them
    values = {
        "name": n.name,
        "cls": n.cls,
        "package": n.package,
        "dist": n.dist,
        "imports": ", ".join(exports),
        "all": ", ".join(f'"{e}"' for e in exports),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "sol.toml": SIM_CONFIG,
        f"{n.package}/__init__.py": INIT,
        f"{n.package}/agent.py": AGENT,
        f"{n.package}/py.typed": "",
        f"tests/test_{n.name}.py": TEST,
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def new_agent(name: str, parent: Path, *, taken: Iterable[str] = ()) -> Path:
    """Write the package of agent ``name`` to ``parent/sol-agent-NAME``; return that folder.

    Refuses (``ScaffoldError``) a bad name or a folder that exists. The files are written to a
    temporary folder beside it that is then renamed into place, so a failure half-way leaves
    no half-made package behind.
    """
    files = render(check_name(name, taken))
    target = Path(parent) / Names.of(name).dist
    if os.path.lexists(target):
        raise ScaffoldError(f"{target} already exists: remove it or choose another --dir")
    if not Path(parent).is_dir():
        raise ScaffoldError(f"{parent} is not a directory")
    # mkdir, not mkdtemp: the folder gets the user's umask like every file in it, not 0700
    staging = Path(parent) / f".{target.name}.{os.getpid()}.tmp"
    staging.mkdir()
    try:
        _write_all(staging, files)
        # rename(2) onto an existing empty folder succeeds: check again right before it
        if os.path.lexists(target):
            raise ScaffoldError(f"{target} already exists: remove it or choose another --dir")
        staging.rename(target)
    except BaseException:
        _remove_tree(staging)
        raise
    return target


def _write_all(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _remove_tree(root: Path) -> None:
    if not root.exists():
        return
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        else:
            path.unlink()
    root.rmdir()


# -- templates (string.Template: $name, $cls, $package, $dist, $imports, $all) ---------------

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The $name agent for SOL node agents"
readme = "README.md"
requires-python = ">=3.11"
# TODO: license = "<SPDX expression>" and license-files = ["LICENSE"]
dependencies = ["sol-node-agents>=0.1"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# How sol finds the agent: `sol agents` lists it once this package is installed.
# The key is the agent's `name`, the value "module:Class".
[project.entry-points."sol.agents"]
$name = "$package.agent:$cls"

[tool.setuptools]
packages = ["$package"]

[tool.setuptools.package-data]
$package = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"

[tool.ruff]
line-length = 110
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]

[tool.mypy]
strict = true
"""

README = """\
# $dist

The `$name` agent for [SOL node agents](https://arxiv.org/abs/2201.10477).
TODO: what it manages, what it reads and what it changes, in a paragraph.

Made by `sol new-agent $name`: as generated it observes nothing and changes nothing, and
passes sol's conformance checks. The TODOs in `$package/agent.py` say where the decision
logic goes; sol's guide to writing an agent (`docs/writing-an-agent.md`) builds a complete one.

```sh
pip install -e '.[test]'                       # into the environment sol is installed in
pytest                                         # sol.testing.check_agent, a simulated run, the entry point
sol sim --config sol.toml --duration 1h        # an hour of a simulated node, in seconds
```

Then `sol agents` lists `$name`, and on a host it is enabled in `/etc/sol/sol.toml` like any
other agent, first in dry-run:

```toml
[agents.$name]
dry_run = true
```
"""

SIM_CONFIG = """\
# sol sim --config sol.toml: the $name agent alone on a simulated node (no root needed)
backend = "sim"

[sim]
scenario = "default"     # sol sim --list-scenarios
seed = 1

[agents.$name]
enabled = true
dry_run = false
# [agents.$name.params]  # any field of Params
# margin = 1.0
"""

INIT = '''\
"""The $name agent for SOL node agents."""

from $package.agent import $imports

__all__ = [$all]
'''

AGENT = '''\
"""The $name agent: TODO its whole story, sensor to actuator, in one screen.

Made by ``sol new-agent $name``. As generated it observes nothing and changes nothing (like
sol's ``noop`` agent), so it is safe anywhere and passes ``sol.testing.check_agent``. Each TODO
says where a piece of the decision logic goes. The runtime owns every loop, clock, thread,
timeout and fallback: the agent never sleeps, never starts a thread, never reads the wall clock
and never opens ``/sys`` or ``/proc`` itself; it gets a clock, sensors and actuators in
``setup(ctx)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sol import Agent, Context, Prediction, Schedule, Verdict
from sol.sdk import bounds, check_fields


@dataclass(frozen=True, slots=True)
class Params:
    """The agent's parameters: ``[agents.$name.params]`` in sol.toml fills them (``ctx.config``)."""

    # TODO: one field per tunable, each with a default and its range next to it: config
    # refuses a value outside the range (and NaN) at its key's line. This one is an example.
    margin: float = field(default=1.0, metadata=bounds(ge=0))

    def __post_init__(self) -> None:
        check_fields(self)


class $cls(Agent):
    # TODO: the docstring's first line is what `sol agents` shows: what the agent manages.
    """Observes nothing and changes nothing yet: a new agent made by sol new-agent."""

    name = "$name"
    # TODO: how often to collect and to act, how long a prediction may be applied, how often
    # to assess (seconds); `sol.Schedule` has the rest (timeouts, budgets, backoff).
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=10.0)
    Params = Params
    # TODO (fault injection, `sol faults matrix`): the simulator's ground-truth metric the
    # agent's decisions can hurt, lower is better, e.g.
    # harm_metric = "cpu.primary_unserved_windows"

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.p: Params = ctx.config
        # TODO: take the facilities the agent needs, e.g.
        #     self.cpu = ctx.sensors.require("cpu")  # FacilityMissing: not for this node
        #     self.harvest = ctx.actuators.require("cpu")
        # and build the model from self.p (a learner from sol.predictors).

    # -- model side: may be slow, may be starved ---------------------------------------
    def collect(self) -> object:
        # TODO: one observation, e.g. self.ctx.sensors.cpu.usage("primary")
        return None

    def validate(self, obs: object) -> Verdict:
        # TODO: fail what must never be learned from (sol.safety.validators: finite, in_range,
        # Fresh, NotFrozen, all_of)
        return Verdict.ok()

    def learn(self, obs: object) -> None:
        # TODO: update the model with one valid observation
        return None

    def predict(self) -> object:
        # TODO: the decision act() will apply, from the model
        return None

    def assess_model(self) -> Verdict:
        # TODO: fail while the model is not good enough to use (sol.safety.assessors)
        return Verdict.ok()

    def default_predict(self) -> object:
        # TODO: the safe decision: cheap, never failing, applied whenever the model is not
        return None

    # -- actuator side: always on time ---------------------------------------------------
    def act(self, prediction: Prediction) -> None:
        # TODO: apply prediction.value through self.ctx.actuators (they journal every write)
        return None

    def assess_performance(self) -> Verdict:
        # TODO: fail when the workloads are hurt: the runtime then calls mitigate() and applies
        # defaults for a backoff
        return Verdict.ok()

    def mitigate(self) -> None:
        # TODO: back to a safe state now; idempotent
        return None

    def clean_up(self) -> None:
        # TODO: undo what the agent changed; idempotent, and working even if setup failed
        # half-way (getattr(self, "...", None))
        return None

    # TODO (fault injection): the most aggressive decision an adversarial model could make
    # def fault_aggressive(self) -> object:
    #     return ...
'''

TEST = '''\
"""The $name agent passes sol's conformance kit, runs on a simulated node and is registered."""

from __future__ import annotations

from pathlib import Path

import pytest
from sol.config import load_config
from sol.registry import Registry
from sol.testing import Check, check_agent, simulate

from $package import $cls


@pytest.mark.parametrize("check", list(check_agent($cls)), ids=lambda c: c.name)
def test_conforms(check: Check) -> None:
    check()


def test_runs_ten_simulated_minutes_on_its_model() -> None:
    result = simulate($cls(), duration=600.0, seed=1)
    assert result.state == "stopped" and not result.errors()
    assert any(p.source == "model" for _, p in result.actions)


def test_sol_finds_it_through_its_entry_point() -> None:
    # fails until the package is installed (pip install -e .): the entry point is in its metadata
    assert Registry().get("$name") is $cls


def test_the_sim_config_enables_it() -> None:
    config = load_config(Path(__file__).parents[1] / "sol.toml", agents={"$name": $cls})
    assert [a.name for a in config.enabled_agents] == ["$name"]
'''
