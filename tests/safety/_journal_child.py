"""A process for the parent tests to SIGKILL at a random point (not a test module).

Modes:

- ``loop``: write random values through HostWriter + FileKnob to every knob, forever.
- ``cycle``: like ``loop``, but restore this owner's before-images every few rounds and compact
  the journal often, so kills also land mid-restore and mid-compaction.
- ``record-then-die``: record one before-image and SIGKILL itself the instant record() returns.
- ``restore-then-die``: write every knob once, then restore, SIGKILLing itself right after
  the second restorer call (before its close record).

It prints ``ready`` on stdout once the journal is open (``loop``/``cycle``), so the parent's
random delay measures time inside the write loop, not interpreter start-up.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import structlog

from sol.actuators.base import HostWriter
from sol.actuators.file import FileKnob
from sol.actuators.restorers import Restorer, default_restorers
from sol.safety.guard import ActuationGuard
from sol.safety.journal import UndoJournal

OWNER = "crash_child"


def _random_value(name: str, rng: random.Random) -> str:
    if name == "cpu.shares":
        return str(rng.randint(2, 262144))
    if name == "cpu.cfs_quota_us":
        return "-1" if rng.random() < 0.2 else str(rng.randint(1000, 1_000_000))
    return f"payload-{rng.getrandbits(64):x}\n" * rng.randint(1, 3)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["loop", "cycle", "record-then-die", "restore-then-die"])
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--knob", type=Path, action="append", default=[])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compact-after", type=int, default=1000)
    args = parser.parse_args(argv)
    # Logs would only fill the pipe the parent is not draining.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    rng = random.Random(args.seed)
    journal = UndoJournal.open(args.journal, compact_after=args.compact_after)

    if args.mode == "record-then-die":
        knob = FileKnob(args.knob[0])
        journal.record(OWNER, knob.kind, knob.target, knob.read())
        os.kill(os.getpid(), signal.SIGKILL)

    writer = HostWriter(journal=journal, owner=OWNER)
    knobs = [FileKnob(path) for path in args.knob]
    guards = {
        "cpu.shares": ActuationGuard(lo=2, hi=262144, max_step=None, min_interval=None),
    }

    if args.mode == "restore-then-die":
        for knob in knobs:
            writer.write(knob, _random_value(knob.path.name, rng))
        calls = 0
        file_restorer = default_restorers()["file"]

        def dying_restorer(target: str, before: Any) -> None:
            nonlocal calls
            file_restorer(target, before)
            calls += 1
            if calls == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        restorers: dict[str, Restorer] = {"file": dying_restorer}
        journal.restore(restorers)
        return 1  # not reached

    print("ready", flush=True)
    while True:
        for knob in knobs:
            name = knob.path.name
            writer.write(knob, _random_value(name, rng), guard=guards.get(name))
        if args.mode == "cycle" and rng.random() < 0.3:
            writer.restore()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
