"""Which agents exist: the built-ins (one explicit map) and third-party plugins.

Third-party agents register with the entry-point group ``sol.agents``::

    [project.entry-points."sol.agents"]
    my_agent = "my_package.agent:MyAgent"

An unknown name is an error that lists the known names; a plugin that fails to import is
reported with its error, never swallowed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from sol.sdk import Agent, Schedule

ENTRY_POINT_GROUP = "sol.agents"

#: name -> "module:Class" of every built-in agent (imported only when asked for).
BUILTIN_AGENTS: dict[str, str] = {
    "noop": "sol.agents.noop:NoopAgent",
    "example_ewma": "sol.agents.example_ewma:ExampleEwmaAgent",
    "cpu_harvest": "sol.agents.cpu_harvest:CpuHarvestAgent",
    "faas_prewarm": "sol.agents.faas_prewarm:FaasPrewarmAgent",
    "gpu_power": "sol.agents.gpu_power:GpuPowerAgent",
    "mem_tier": "sol.agents.mem_tier:MemTierAgent",
}


class RegistryError(LookupError):
    pass


class UnknownAgent(RegistryError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown agent {name!r}; known agents: {', '.join(self.known) or '(none)'}")


class AgentImportError(RegistryError):
    pass


@dataclass(frozen=True, slots=True)
class AgentEntry:
    name: str
    target: str  # "module:attr"
    origin: str  # "builtin" or the distribution that provides the plugin


def _load(target: str) -> object:
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Looks agents up by name; constructed per use, no module-level state."""

    def __init__(self, builtins: dict[str, str] | None = None, *, plugins: bool = True) -> None:
        self._entries: dict[str, AgentEntry] = {}
        self.problems: list[str] = []
        for name, target in (BUILTIN_AGENTS if builtins is None else builtins).items():
            self._entries[name] = AgentEntry(name, target, "builtin")
        if plugins:
            for ep in _entry_points():
                if ep.name in self._entries:
                    self.problems.append(
                        f"plugin agent {ep.name!r} ({ep.value}) ignored: the name is taken by "
                        f"{self._entries[ep.name].target}"
                    )
                    continue
                dist = getattr(ep, "dist", None)
                origin = f"plugin {dist.name}" if dist is not None else "plugin"
                self._entries[ep.name] = AgentEntry(ep.name, ep.value, origin)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[AgentEntry]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> type[Agent]:
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownAgent(name, self._entries)
        try:
            obj = _load(entry.target)
        except Exception as exc:
            raise AgentImportError(
                f"agent {name!r} ({entry.origin}, {entry.target}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(obj, type) and issubclass(obj, Agent)):
            raise AgentImportError(f"agent {name!r} ({entry.target}) is not a sol.Agent subclass: {obj!r}")
        if obj.name != name:
            raise AgentImportError(f"agent {name!r} ({entry.target}) declares name {obj.name!r}")
        if not isinstance(getattr(obj, "schedule", None), Schedule):
            raise AgentImportError(f"agent {name!r} ({entry.target}) has no `schedule = Schedule(...)`")
        return obj

    def classes(self) -> dict[str, type[Agent]]:
        """Every agent that loads; the ones that don't are added to ``problems``."""
        out: dict[str, type[Agent]] = {}
        for name in self.names():
            try:
                out[name] = self.get(name)
            except RegistryError as exc:
                self.problems.append(str(exc))
        return out


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))
