"""`sol hint` and `sol notices` against a running daemon, and hints across a restart."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sold_helpers import rmtree, running_daemon, short_tmp

pytestmark = pytest.mark.live


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp()
    yield path
    rmtree(path)


def sol(*args: str) -> subprocess.CompletedProcess[str]:
    from sol.cli import main

    out, err = io.StringIO(), io.StringIO()
    rc = main(list(args), out=out, err=err)
    return subprocess.CompletedProcess(["sol", *args], rc, out.getvalue(), err.getvalue())


def test_hints_set_shown_refused_and_kept_over_a_restart_and_notices_listed(root: Path) -> None:
    (root / "hints.d").mkdir()
    (root / "hints.d" / "batch.toml").write_text('[[hint]]\ncgroup = "batch.slice"\nharvestable = true\n')
    extra = f"""
    [hints]
    dir = "{root / "hints.d"}"
    notices_dir = "{root / "notices"}"
    """
    cfg = str(root / "sol.toml")
    with running_daemon(root, "", extra=extra) as d:
        got = sol(
            "hint",
            "set",
            "--config",
            cfg,
            "--cgroup",
            "machine.slice/vm-a",
            "priority=low",
            "far_memory_ok=true",
        )
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["hints"] == {"priority": "low", "far_memory_ok": True}
        bad = sol("hint", "set", "--config", cfg, "--cgroup", "machine.slice/vm-a", "colour=red")
        assert bad.returncode == 1 and "unknown hint key(s) ['colour']; known:" in bad.stderr
        assert sol("hint", "set", "--config", cfg, "--pid", "1", "nonsense").returncode == 2
        shown = json.loads(sol("hint", "show", "--config", cfg).stdout)["targets"]
        assert {t["cgroup"] for t in shown} == {"batch.slice", "machine.slice/vm-a"}
        d.daemon.hint_service.board.publish("cpu_harvest", "lend-cores", "machine.slice/vm-a", lead_s=1.0)
        d.daemon.hint_service.board.publish("gpu_power", "power-cap", "gpu:0")
        lines = sol("notices", "--config", cfg, "--cgroup", "machine.slice/vm-a").stdout.splitlines()
        assert [json.loads(line)["action"] for line in lines] == ["lend-cores"]
        assert len(sol("notices", "--config", cfg, "--after", "1").stdout.splitlines()) == 1
        assert (root / "notices" / "machine.slice" / "vm-a.json").is_file()
        assert d.ok(cmd="status")["daemon"]["hint_targets"] == 2
    # a new daemon (a restart) has the socket-set hints back, and the file's
    with running_daemon(root, "", extra=extra):
        shown = json.loads(sol("hint", "show", "--config", cfg, "--cgroup", "machine.slice/vm-a").stdout)
        assert shown["targets"] == [
            {"cgroup": "machine.slice/vm-a", "hints": {"priority": "low", "far_memory_ok": True}}
        ]
        cleared = sol("hint", "clear", "--config", cfg, "--cgroup", "machine.slice/vm-a", "priority")
        assert json.loads(cleared.stdout)["hints"] == {"far_memory_ok": True}
    assert sol("hint", "show", "--config", cfg).returncode == 1  # no daemon: says so
