"""The undo journal under random damage: is every loss detected and reported?

Each case: a fake cgroup tree of ``--knobs`` knobs, a journal written by a real ``HostWriter``
(some records then restored or released, so the file holds open and closed records), then one
random damage to the journal, its state file, or both: emptied, deleted, truncated at a random
byte, a random bit flipped, a random line dropped, duplicated or swapped with another. Then
``sol restore`` (``restore_command``) runs and every knob is compared with what it must hold.

Outcomes (the target is 0 silent losses and 0 false alarms):

- ``clean``: exit 0, every knob right (the damage hit nothing that mattered, e.g. a torn tail);
- ``recovered``: exit 1 with the damage reported, every knob right (the other file kept it);
- ``lost, reported``: exit 1, some knob wrong (both files lost it), said loudly;
- ``silent loss``: exit 0 with some knob wrong;
- ``false alarm``: exit 1 with no damage done (only counted in the undamaged control cases).

    .venv/bin/python benchmarks/journal_damage.py [--cases 2000] [--seed 1] [--knobs 6]
"""

from __future__ import annotations

import argparse
import collections
import io
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sol.actuators.base import HostWriter
from sol.actuators.file import FileKnob
from sol.actuators.restorers import TargetScope
from sol.safety.journal import UndoJournal, restore_command

Damage = Callable[[random.Random, Path], None]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


def empty(rng: random.Random, path: Path) -> None:
    path.write_bytes(b"")


def delete(rng: random.Random, path: Path) -> None:
    path.unlink()


def truncate(rng: random.Random, path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: rng.randrange(len(data))])


def flip(rng: random.Random, path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def drop_line(rng: random.Random, path: Path) -> None:
    lines = _lines(path)
    if len(lines) > 2:
        del lines[rng.randrange(1, len(lines) - 1)]
    path.write_bytes(b"\n".join(lines))


def duplicate_line(rng: random.Random, path: Path) -> None:
    lines = _lines(path)
    if len(lines) > 2:
        i = rng.randrange(1, len(lines) - 1)
        lines.insert(i, lines[i])
    path.write_bytes(b"\n".join(lines))


def swap_lines(rng: random.Random, path: Path) -> None:
    lines = _lines(path)
    if len(lines) > 3:
        i, j = rng.sample(range(1, len(lines) - 1), 2)
        lines[i], lines[j] = lines[j], lines[i]
    path.write_bytes(b"\n".join(lines))


DAMAGES: dict[str, Damage] = {
    "empty": empty,
    "delete": delete,
    "truncate": truncate,
    "flip": flip,
    "drop-line": drop_line,
    "duplicate-line": duplicate_line,
    "swap-lines": swap_lines,
}


def one_case(rng: random.Random, tmp: Path, knobs: int, where: str, damage: str | None) -> str:
    root = tmp / "cgroup"
    paths = []
    for i in range(knobs):
        group = root / "cpu" / f"g{i}"
        group.mkdir(parents=True)
        paths.append(group / "cpu.shares")
        paths[-1].write_text(f"{100 + i}\n")
    jpath = tmp / "state" / "undo.journal"
    expected: dict[Path, str] = {}
    with UndoJournal.open(jpath, fsync=False) as j:
        writers = [HostWriter(journal=j, owner=f"agent{a}") for a in range(3)]
        for i, path in enumerate(paths):
            writers[i % 3].write(FileKnob(path), str(5000 + i))
            expected[path] = f"{100 + i}"
        # one agent restores (records closed as restored), one releases (host keeps its value)
        writers[0].restore()
        for rec in j.release("agent1"):
            expected[Path(rec.target)] = str(5000 + paths.index(Path(rec.target)))
    targets = {"journal": [jpath], "state": [UndoJournal.state_path(jpath)]}
    targets["both"] = targets["journal"] + targets["state"]
    if damage is not None:
        for path in targets[where]:
            DAMAGES[damage](rng, path)
    out = io.StringIO()
    rc = restore_command(jpath, out=out, scope=TargetScope(cgroup_root=root, sys_root=Path("/sys")))
    right = all(p.read_text().strip() == v for p, v in expected.items())
    reported = rc != 0
    if damage is None:
        return "false alarm" if reported or not right else "clean"
    if right:
        return "recovered" if reported else "clean"
    return "lost, reported" if reported else "silent loss"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--knobs", type=int, default=6)
    args = p.parse_args(argv)
    import structlog

    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # the journal's logs: off
    rng = random.Random(args.seed)
    table: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for n in range(args.cases):
        tmp = Path(tempfile.mkdtemp(prefix="sol-jdamage-"))
        try:
            if n % 20 == 0:
                where, damage = "-", None  # a control: no damage at all
            else:
                where = rng.choice(["journal", "state", "both"])
                damage = rng.choice(sorted(DAMAGES))
            outcome = one_case(rng, tmp, args.knobs, where if damage else "journal", damage)
            table[(where, damage or "none")][outcome] += 1
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    cols = ["clean", "recovered", "lost, reported", "silent loss", "false alarm"]
    print(f"{args.cases} cases, seed {args.seed}, {args.knobs} knobs (3 agents: restored, released, open)")
    print(f"| damaged | damage | cases | {' | '.join(cols)} |")
    print("|---|---|---|" + "---|" * len(cols))
    total: collections.Counter[str] = collections.Counter()
    for (where, damage), counts in sorted(table.items()):
        total.update(counts)
        cells = " | ".join(str(counts[c]) for c in cols)
        print(f"| {where} | {damage} | {sum(counts.values())} | {cells} |")
    print(f"| all | all | {sum(total.values())} | {' | '.join(str(total[c]) for c in cols)} |")
    bad = total["silent loss"] + total["false alarm"]
    print(f"silent losses: {total['silent loss']}, false alarms: {total['false alarm']} (target: 0 and 0)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
