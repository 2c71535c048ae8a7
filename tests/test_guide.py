"""The agent-writing guide's final test runs as written (the guide cannot go stale)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-an-agent.md"


def code_blocks(text: str) -> dict[str, str]:
    files = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0]
        m = re.match(r"# file: (\S+)", first)
        if m:
            files[m.group(1)] = block
    return files


def test_guide_test_file_passes(tmp_path: Path) -> None:
    files = code_blocks(GUIDE.read_text())
    assert "test_example_ewma.py" in files, "the guide must end with its test file"
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", proc.stdout)


def test_guide_snippets_match_the_example_agent() -> None:
    """Every line of agent code the guide shows is in agents/example_ewma.py."""

    def norm(line: str) -> str:
        return re.sub(r"\s+", " ", line.split("#")[0]).strip()

    source = {
        norm(line) for line in (GUIDE.parents[1] / "agents" / "example_ewma.py").read_text().splitlines()
    }
    for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S):
        if block.startswith("# file:"):
            continue
        for line in block.splitlines():
            code = norm(line)
            if code and not code.startswith(("from ", "import ")):
                assert code in source, f"guide line not in agents/example_ewma.py: {line!r}"
