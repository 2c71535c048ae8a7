"""Re-run every benchmark whose output the docs record, and show what moved.

A recorded figure is a fenced block in ``docs/*.md`` whose first line is the command that made
it (``.venv/bin/python benchmarks/...``) and whose other lines are that command's output, as
pasted. This script finds every such block, runs the command again on today's code, and
compares the two outputs row by row: a row is a line of a table (a label, then columns of
numbers); each number is matched with the same row and column of the fresh output.

    .venv/bin/python benchmarks/recorded.py                 # every recorded block
    .venv/bin/python benchmarks/recorded.py --match cpu_harvest --match overcommit
    .venv/bin/python benchmarks/recorded.py --list          # what it would run
    .venv/bin/python benchmarks/recorded.py --tolerance 0.02

It prints, per block, each number that moved by more than ``--tolerance`` (relative; 1 % by
default) with its recorded and fresh value, rows that vanished or appeared, and exits 1 when
anything moved, so a change to an agent that shifts a documented figure is seen before it
lands. It never edits the docs: paste the fresh output yourself, and say why it moved.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = re.compile(r"^\s*(\.venv/bin/python|python3?) benchmarks/\S+\.py\b")
NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(?:e[-+]?\d+)?%?x?$")


@dataclass(frozen=True)
class Recorded:
    doc: Path
    line: int
    command: str
    output: list[str]

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def find_recorded(docs: list[Path]) -> list[Recorded]:
    """Every fenced block whose first non-empty line is a benchmark command."""
    found: list[Recorded] = []
    for doc in docs:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = lines[i].strip()
            if not fence.startswith("```"):
                i += 1
                continue
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            body = [ln.strip() for ln in lines[i + 1 : j]]
            first = next((k for k, ln in enumerate(body) if ln), None)
            if first is not None and COMMAND.match(body[first]):
                found.append(Recorded(doc, i + 1, body[first], body[first + 1 :]))
            i = j + 1
    return found


def rows(output: list[str]) -> dict[str, list[str]]:
    """Table rows: ``label -> numeric cells``, for lines of a label then numbers."""
    out: dict[str, list[str]] = {}
    for line in output:
        cells = [c for c in re.split(r"\s{2,}", line.strip()) if c]
        if len(cells) < 2:
            continue
        numbers = [c for c in cells[1:] if NUMBER.match(c)]
        if numbers and len(numbers) == len(cells) - 1:
            out[cells[0]] = numbers
    return out


def value(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%x"))


def compare(old: list[str], new: list[str], tolerance: float) -> list[str]:
    """What moved between two outputs, one line each; empty when nothing did."""
    a, b = rows(old), rows(new)
    moved: list[str] = []
    for label, cells in a.items():
        if label not in b:
            moved.append(f"  row gone: {label}")
            continue
        for k, (x, y) in enumerate(zip(cells, b[label], strict=False)):
            vx, vy = value(x), value(y)
            scale = max(abs(vx), abs(vy), 1e-12)
            if abs(vx - vy) / scale > tolerance:
                moved.append(f"  {label} [column {k + 1}]: {x} -> {y}")
    moved += [f"  new row: {label}" for label in b if label not in a]
    return moved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--match", action="append", default=[], help="only commands containing this (repeatable)")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative change that counts as moved")
    p.add_argument("--list", action="store_true", help="list the recorded commands and stop")
    args = p.parse_args(argv)
    blocks = find_recorded(sorted((ROOT / "docs").rglob("*.md")))
    blocks = [b for b in blocks if all(m in b.command for m in args.match)]
    if args.list or not blocks:
        for b in blocks:
            print(f"{b.where}: {b.command}")
        if not blocks:
            print("no recorded benchmark block matches")
        return 0
    moved_any = False
    for b in blocks:
        cmd = shlex.split(b.command.replace(".venv/bin/python", sys.executable, 1))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):  # the benchmarks exit 1 when a target is missed
            print(f"{b.where}: {b.command}\n  FAILED (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
            moved_any = True
            continue
        moved = compare(b.output, proc.stdout.splitlines(), args.tolerance)
        state = "moved" if moved else "unchanged"
        print(f"{b.where}: {b.command}  ({wall:.0f} s): {state}")
        for line in moved:
            print(line)
        moved_any = moved_any or bool(moved)
    return 1 if moved_any else 0


if __name__ == "__main__":
    sys.exit(main())
