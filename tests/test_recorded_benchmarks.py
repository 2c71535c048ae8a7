"""benchmarks/recorded.py: finds the docs' recorded benchmark blocks and says what moved."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def recorded() -> ModuleType:
    spec = importlib.util.spec_from_file_location("recorded", ROOT / "benchmarks" / "recorded.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["recorded"] = module
    spec.loader.exec_module(module)
    return module


DOC = """# Figures

Some text.

```
.venv/bin/python benchmarks/cpu_harvest.py --nodes 2

policy        core-s/node-h  % oracle   short %
static+3             65,546     94.1%    0.461%
cpu_harvest          65,264     93.6%    0.533%
```

```
just a code block, not a recorded one
```
"""


def test_a_fenced_block_that_starts_with_a_benchmark_command_is_a_recorded_figure(tmp_path: Path) -> None:
    r = recorded()
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    [block] = r.find_recorded([doc])
    assert block.command == ".venv/bin/python benchmarks/cpu_harvest.py --nodes 2" and block.line == 5
    assert r.rows(block.output) == {
        "static+3": ["65,546", "94.1%", "0.461%"],
        "cpu_harvest": ["65,264", "93.6%", "0.533%"],
    }


def test_what_moved_beyond_the_tolerance_is_named_with_both_values(tmp_path: Path) -> None:
    r = recorded()
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    old = r.find_recorded([doc])[0].output
    new = [
        "policy        core-s/node-h  % oracle   short %",
        "static+3             65,546     94.1%    0.461%",
        "cpu_harvest          61,000     87.5%    2.050%",
        "oracle               69,690    100.0%    0.000%",
    ]
    assert r.compare(old, old, 0.01) == []
    moved = r.compare(old, new, 0.01)
    assert "  cpu_harvest [column 1]: 65,264 -> 61,000" in moved
    assert "  cpu_harvest [column 3]: 0.533% -> 2.050%" in moved
    assert "  new row: oracle" in moved and len(moved) == 4
    assert r.compare(old, new[:2], 0.01) == ["  row gone: cpu_harvest"]


def test_the_docs_record_the_cpu_harvest_tables_with_their_commands() -> None:
    r = recorded()
    commands = [b.command for b in r.find_recorded(sorted((ROOT / "docs").rglob("*.md")))]
    assert any("cpu_harvest.py" in c and "--overcommit 3" in c for c in commands)
    assert any("cpu_harvest.py" in c and "--ablations" in c for c in commands)
