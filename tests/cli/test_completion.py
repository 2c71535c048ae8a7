"""`sol completion bash|zsh`: a script the shell accepts, completing what the parser defines."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sol.cli import build_parser
from sol.completion import completion_script

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def script(shell: str, tmp_path: Path) -> Path:
    """What `sol completion SHELL` prints, in a file."""
    proc = subprocess.run(
        [sys.executable, "-m", "sol", "completion", shell], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / f"sol.{shell}"
    path.write_text(proc.stdout)
    return path


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return script("bash", tmp_path_factory.mktemp("completion"))


@needs_bash
def test_bash_accepts_the_bash_completion_script(bash_script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_accepts_the_zsh_completion_script(tmp_path: Path) -> None:
    proc = subprocess.run(["zsh", "-n", str(script("zsh", tmp_path))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@needs_bash
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["sol", "ct"], ["ctl"]),
        (["sol", "ctl", "dry-run", ""], ["on", "off"]),
        (["sol", "run", "--backend", ""], ["sim", "linux"]),
        (["sol", "run", "--log-format", "c"], ["console"]),
        (["sol", "sim", "--sc"], ["--scenario"]),
        (["sol", "run", "--duration", "10s", "--dry"], ["--dry-run"]),
        (["sol", "completion", ""], ["bash", "zsh"]),
        (["sol", "run", "--duration", ""], []),
    ],
    ids=[
        "command",
        "positional-choice",
        "option-choice",
        "option-prefix",
        "option",
        "after-a-value",
        "shell",
        "free-value",
    ],
)
def test_bash_completion_offers_the_commands_options_and_choices_of_the_parser(
    bash_script: Path, words: list[str], expected: list[str]
) -> None:
    path = bash_script
    quoted = " ".join(f"'{w}'" for w in words)
    probe = (
        f"source {path}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _sol\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


@needs_bash
def test_bash_completion_completes_file_names_where_an_option_takes_a_path(
    tmp_path: Path, bash_script: Path
) -> None:
    path = bash_script
    (tmp_path / "site.toml").write_text("")
    probe = (
        f"source {path}\nCOMP_WORDS=(sol run --config '{tmp_path}/si'); COMP_CWORD=3; _sol\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert proc.stdout.split() == [f"{tmp_path}/site.toml"]


def test_every_subcommand_of_the_parser_is_in_the_script() -> None:
    parser = build_parser()
    text = completion_script("bash", parser)
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands
    for name in commands:
        assert f'"/{name}") cmd="{name}"' in text


def test_an_unknown_shell_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bash, zsh"):
        completion_script("fish", build_parser())
