"""``sol completion bash|zsh``: a shell completion script generated from the argument parser.

Every command, subcommand, option and choice comes from ``sol.cli.build_parser``, so the
script cannot drift from the commands; an option that takes a path completes file names.
zsh runs the same function through its ``bashcompinit`` layer.

    eval "$(sol completion bash)"    # in ~/.bashrc
    eval "$(sol completion zsh)"     # in ~/.zshrc, after compinit
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SHELLS", "completion_script"]

SHELLS = ("bash", "zsh")

#: what may go into the script unquoted: a word the shell will not expand or split
_WORD = re.compile(r"[A-Za-z0-9_.:+-]+")


@dataclass(slots=True)
class _Command:
    """One (sub)command: what may follow it."""

    path: str  # "" for sol itself, else "ctl dry-run"
    subcommands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    #: option -> its choices ([] free text, None a file name)
    values: dict[str, list[str] | None] = field(default_factory=dict)
    #: choices of its positional arguments
    words: list[str] = field(default_factory=list)
    #: a positional argument is a file name
    files: bool = False


def _commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[_Command]:
    cmd = _Command(path)
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if _WORD.fullmatch(name):
                    cmd.subcommands.append(name)
                    children.append((name, sub))
            continue
        choices = [str(c) for c in action.choices or () if _WORD.fullmatch(str(c))]
        is_path = action.type is Path
        if action.option_strings:
            opts = [o for o in action.option_strings if _WORD.fullmatch(o)]
            cmd.options.extend(opts)
            # takes a value (store_true, help and version take none; "?" one it may go without)
            if action.nargs not in (0, "?"):
                for o in opts:
                    cmd.values[o] = None if is_path else choices
        else:
            cmd.words.extend(choices)
            cmd.files = cmd.files or is_path
    yield cmd
    for name, sub in children:
        yield from _commands(sub, f"{path} {name}".strip())


def _words(items: list[str]) -> str:
    return " ".join(items)


def _bash(parser: argparse.ArgumentParser) -> str:
    commands = list(_commands(parser))
    walk: list[str] = []
    for c in commands:
        for name in c.subcommands:
            walk.append(f'            "{c.path}/{name}") cmd="{f"{c.path} {name}".strip()}" ;;')
        if c.values:
            patterns = "|".join(f'"{c.path}/{o}"' for o in c.values)
            walk.append(f"            {patterns}) skip=1 ;;")
    values: list[str] = []
    for c in commands:
        for opt, choices in c.values.items():
            if choices is None:
                reply = 'COMPREPLY=($(compgen -f -- "$cur"))'
            elif choices:
                reply = f'COMPREPLY=($(compgen -W "{_words(choices)}" -- "$cur"))'
            else:
                reply = ":"  # free text: nothing to offer
            values.append(f'        "{c.path}/{opt}") {reply}; return 0 ;;')
    options = [
        f'            "{c.path}") COMPREPLY=($(compgen -W "{_words(c.options)}" -- "$cur")) ;;'
        for c in commands
        if c.options
    ]
    positional: list[str] = []
    for c in commands:
        words = c.subcommands + c.words
        parts = []
        if words:
            parts.append(f'COMPREPLY=($(compgen -W "{_words(words)}" -- "$cur"))')
        if c.files:
            parts.append('COMPREPLY+=($(compgen -f -- "$cur"))')
        if parts:
            positional.append(f'        "{c.path}") {"; ".join(parts)} ;;')
    lines = [
        "# bash completion for sol, generated from its argument parser by `sol completion bash`",
        "_sol() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local cmd="" skip="" word i',
        "    COMPREPLY=()",
        "    # the (sub)command typed so far; an option's value is not a command",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        if [[ -n "$skip" ]]; then skip=""; continue; fi',
        '        case "$cmd/$word" in',
        *walk,
        "        esac",
        "    done",
        '    case "$cmd/$prev" in',
        *values,
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        case "$cmd" in',
        *options,
        "        esac",
        "        return 0",
        "    fi",
        '    case "$cmd" in',
        *positional,
        "    esac",
        "    return 0",
        "}",
        "complete -o filenames -F _sol sol",
    ]
    return "\n".join(lines) + "\n"


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The script for ``shell`` (one of ``SHELLS``) completing ``parser``'s commands."""
    if shell == "bash":
        return _bash(parser)
    if shell == "zsh":
        return (
            "# zsh completion for sol, generated by `sol completion zsh`: the bash function through\n"
            "# zsh's bashcompinit (load it after compinit)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + _bash(parser)
        )
    raise ValueError(f"no completion for shell {shell!r}; known: {', '.join(SHELLS)}")
