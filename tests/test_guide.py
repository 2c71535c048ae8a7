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


def agent_blocks(text: str) -> list[str]:
    """The blocks that make up the guide's agent: the one that defines ``ExampleEwmaAgent`` and
    the indented ones after it, which continue its class."""
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    first = next(i for i, b in enumerate(blocks) if "class ExampleEwmaAgent(Agent):" in b)
    out = [blocks[first]]
    for block in blocks[first + 1 :]:
        if not block.startswith("    "):
            break
        out.append(block)
    return out


def test_guide_snippets_match_the_example_agent() -> None:
    """Every line of agent code the guide shows is in agents/example_ewma.py."""

    def norm(line: str) -> str:
        return re.sub(r"\s+", " ", line.split("#")[0]).strip()

    source = {
        norm(line) for line in (GUIDE.parents[1] / "agents" / "example_ewma.py").read_text().splitlines()
    }
    blocks = agent_blocks(GUIDE.read_text())
    assert len(blocks) >= 4, "the guide's agent is shown in its sections 2 to 5"
    for block in blocks:
        for line in block.splitlines():
            code = norm(line)
            if code and not code.startswith(("from ", "import ")):
                assert code in source, f"guide line not in agents/example_ewma.py: {line!r}"


def test_the_guides_agent_decides_as_the_example_agent_does() -> None:
    """The guide's blocks, run as one program, are an agent that makes the same decisions."""
    from sol.agents.example_ewma import ExampleEwmaAgent
    from sol.testing import simulate

    namespace: dict[str, object] = {}
    exec(compile("\n".join(agent_blocks(GUIDE.read_text())), str(GUIDE), "exec"), namespace)
    guides = namespace["ExampleEwmaAgent"]
    assert isinstance(guides, type) and guides is not ExampleEwmaAgent

    def decisions(agent: object) -> list[tuple[float, str, str | None, object]]:
        result = simulate(agent, duration=600.0, seed=1)  # type: ignore[arg-type]
        assert result.state == "stopped" and not result.errors()
        return [(t, p.source, p.reason, p.value) for t, p in result.actions]

    assert decisions(guides()) == decisions(ExampleEwmaAgent())
