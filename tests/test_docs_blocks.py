"""Every ```python block in README.md and docs/*.md runs, so no guide shows code that fails.

The blocks of one document run in order, as one program, in a fresh interpreter whose working
directory is a temporary folder: a later block may use what an earlier one defined, and a block
that starts indented continues the class of the block before it (docs/writing-an-agent.md builds
its agent that way). Each block sits at its own line numbers in the program, so a traceback
names the document's line.

Two kinds of block are not run here: a block whose first line is ``# file: NAME`` is a file the
guide tells the reader to save (tests/test_guide.py runs those with pytest), and a block right
after a ``<!-- not-run: REASON -->`` line, for code that cannot run anywhere (keep them rare).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    doc: Path
    line: int  # 1-based line of the block's first code line
    code: str
    skip: str | None  # why it is not run here, or None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def python_blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{doc.relative_to(ROOT)}:{i + 1}: a code block is never closed"
        if m.group("lang") in ("python", "py"):
            code = "\n".join(lines[i + 1 : end])
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = NOT_RUN.search(before)
            skip = None
            if code.startswith("# file:"):
                skip = "a file for the reader (tests/test_guide.py)"
            elif marker is not None:
                skip = marker.group("reason")
            blocks.append(Block(doc, i + 2, code, skip))
        i = end + 1
    return blocks


def program(blocks: list[Block]) -> str:
    """The runnable blocks, each at its own line numbers (the rest of the lines are blank)."""
    out: list[str] = []
    for block in blocks:
        if block.skip is not None:
            continue
        out.extend([""] * (block.line - 1 - len(out)))
        out.extend(block.code.splitlines())
    return "\n".join(out) + "\n"


ALL_BLOCKS = [b for doc in DOCUMENTS for b in python_blocks(doc)]
RUNNABLE = sorted({b.doc for b in ALL_BLOCKS if b.skip is None})


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda d: str(d.relative_to(ROOT)))
def test_the_python_blocks_of_a_document_run(doc: Path, tmp_path: Path) -> None:
    source = tmp_path / doc.name
    source.write_text(program(python_blocks(doc)), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    # the traceback names <tmp>/<doc>.md:LINE: point at the document instead
    err = proc.stderr.replace(str(source), str(doc.relative_to(ROOT)))
    assert proc.returncode == 0, f"{doc.relative_to(ROOT)}: a python block failed\n{err[-4000:]}"


def test_the_guides_have_python_blocks_to_run() -> None:
    # a guide whose blocks stopped being found (a renamed fence, a moved file) is not tested
    names = {d.name for d in RUNNABLE}
    assert {"writing-an-agent.md", "design.md", "linux-backend.md", "simulator.md"} <= names


def test_a_block_left_out_says_why_and_such_blocks_stay_rare() -> None:
    marked = [b for b in ALL_BLOCKS if b.skip is not None and not b.code.startswith("# file:")]
    for b in marked:
        assert b.skip, f"{b.where}: <!-- not-run: ... --> needs a reason"
    assert len(marked) <= 3, f"too many blocks left out: {[b.where for b in marked]}"


def test_program_keeps_each_block_at_its_line(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "# T\n\n```python\nclass A:\n    x = 1\n```\n\ntext\n\n```python\n    y = 2\n```\n\n"
        "<!-- not-run: needs a GPU -->\n```python\nraise SystemExit(1)\n```\n"
        "```python\n# file: t.py\nraise SystemExit(1)\n```\n"
    )
    blocks = python_blocks(doc)
    assert [(b.line, b.skip) for b in blocks] == [
        (4, None),
        (11, None),
        (16, "needs a GPU"),
        (19, "a file for the reader (tests/test_guide.py)"),
    ]
    text = program(blocks)
    assert text.splitlines()[3:5] == ["class A:", "    x = 1"] and text.splitlines()[10] == "    y = 2"
    namespace: dict[str, object] = {}
    exec(compile(text, str(doc), "exec"), namespace)
    assert namespace["A"].y == 2  # type: ignore[attr-defined]
