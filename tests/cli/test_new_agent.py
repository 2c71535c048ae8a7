"""`sol new-agent NAME`: a plugin package that installs, passes its own tests and runs in `sol sim`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sol.scaffold import Names, ScaffoldError, new_agent, render

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sol-agent-hello"
#: what building or testing a package leaves in its folder (all in .gitignore)
ARTEFACTS = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build")


def sol(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sol", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in ARTEFACTS or part.endswith(".egg-info") for part in rel.parts) or path.is_dir():
            continue
        out[rel.as_posix()] = path.read_text(encoding="utf-8")
    return out


def install_metadata(package: Path, site: Path) -> None:
    """What `pip install` leaves for the registry: a dist-info with the package's entry points,
    read from its pyproject.toml (the real install is `make test`'s, of examples/)."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    sections = []
    for group, eps in project["entry-points"].items():
        sections.append(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    (dist / "entry_points.txt").write_text("\n".join(sections))


def test_the_committed_example_is_what_sol_new_agent_writes_today(tmp_path: Path) -> None:
    proc = sol("new-agent", "hello", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    made = tree(tmp_path / "sol-agent-hello")
    assert made == render("hello")
    committed = tree(EXAMPLE)
    stale = sorted(k for k in made.keys() | committed.keys() if made.get(k) != committed.get(k))
    assert not stale, (
        f"examples/sol-agent-hello differs from `sol new-agent hello` in {stale}: regenerate it "
        "(examples/README.md)"
    )


def test_a_new_agent_is_found_tested_and_simulated_once_installed(tmp_path: Path) -> None:
    proc = sol("new-agent", "queue_guard", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    package = tmp_path / "sol-agent-queue-guard"
    assert str(package) in proc.stdout and "pip install -e" in proc.stdout
    assert (package / "sol_agent_queue_guard" / "agent.py").is_file()
    site = tmp_path / "site"
    install_metadata(package, site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(package)]))

    # the README's three commands, after the install: its tests, `sol agents`, `sol sim`
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=package,
        env=env,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "passed" in tests.stdout and "skipped" not in tests.stdout
    listed = sol("agents", env=env)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("queue_guard "))
    assert "plugin sol-agent-queue-guard" in row
    assert "Observes nothing and changes nothing yet" in row  # the class docstring's first line
    simulated = sol("sim", "--config", "sol.toml", "--duration", "10m", "--quiet", cwd=package, env=env)
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "queue_guard" in simulated.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Hello", "must be snake_case"),
        ("my-agent", "must be snake_case"),
        ("2fast", "must be snake_case"),
        ("_private", "must be snake_case"),
        ("class", "is a Python keyword"),
        ("noop", "is taken by a built-in agent"),
    ],
    ids=["capitals", "dash", "digit-first", "underscore-first", "keyword", "builtin"],
)
def test_a_name_that_cannot_name_an_agent_is_a_usage_error(tmp_path: Path, name: str, message: str) -> None:
    proc = sol("new-agent", name, "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr and "usage: sol new-agent" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path: Path) -> None:
    mine = tmp_path / "sol-agent-hello"
    mine.mkdir()
    (mine / "agent.py").write_text("# my work\n")
    proc = sol("new-agent", "hello", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert "already exists" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["agent.py"]
    assert (mine / "agent.py").read_text() == "# my work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sol-agent-hello"]  # no staging left


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sol.scaffold

    def fail(root: Path, files: object) -> None:
        (root / "half").write_text("")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sol.scaffold, "_write_all", fail)
    with pytest.raises(OSError, match="No space left"):
        new_agent("hello", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_parent_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="is not a directory"):
        new_agent("hello", tmp_path / "nope")


@pytest.mark.parametrize(
    ("name", "cls", "package", "dist"),
    [
        ("hello", "HelloAgent", "sol_agent_hello", "sol-agent-hello"),
        ("queue_guard", "QueueGuardAgent", "sol_agent_queue_guard", "sol-agent-queue-guard"),
        ("my_agent", "MyAgent", "sol_agent_my_agent", "sol-agent-my-agent"),
        ("gpu2", "Gpu2Agent", "sol_agent_gpu2", "sol-agent-gpu2"),
    ],
    ids=["one-word", "two-words", "ends-in-agent", "digit"],
)
def test_names_derived_from_the_agent_name(name: str, cls: str, package: str, dist: str) -> None:
    assert Names.of(name) == Names(name, cls, package, dist)
    files = render(name)
    entry_points = tomllib.loads(files["pyproject.toml"])["project"]["entry-points"]["sol.agents"]
    assert entry_points == {name: f"{package}.agent:{cls}"}
    assert f"class {cls}(Agent):" in files[f"{package}/agent.py"]
    assert f'    name = "{name}"' in files[f"{package}/agent.py"]
    assert f"tests/test_{name}.py" in files


def test_doctests() -> None:
    import doctest

    import sol.scaffold

    assert doctest.testmod(sol.scaffold).failed == 0
