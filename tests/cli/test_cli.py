"""`sol` as an operator runs it: real subprocesses, real files, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
from sol import Agent, Schedule


class _Base(Agent):
    schedule = Schedule(collect_every=0.1, act_every=0.1, prediction_ttl=0.5, assess_every=1.0)

    def collect(self):
        return 1

    def predict(self):
        return 1

    def default_predict(self):
        return 0

    def act(self, prediction):
        pass


class BadSetup(_Base):
    """Its setup always raises."""

    name = "bad_setup"

    def setup(self, ctx):
        raise RuntimeError("cgroup /sys/fs/cgroup/cpu/nope does not exist")


class Steady(_Base):
    """A healthy third-party agent."""

    name = "steady"
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A third-party distribution on sys.path, registering agents via the entry point."""
    root = tmp_path / "site"
    (root / "solplug").mkdir(parents=True)
    (root / "solplug" / "__init__.py").write_text(PLUGIN)
    (root / "solplug" / "broken.py").write_text("import does_not_exist_anywhere\n")
    dist = root / "solplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: solplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[sol.agents]\nbad_setup = solplug:BadSetup\nsteady = solplug:Steady\nbroken = solplug.broken:Agent\n"
    )
    return root


def sol(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SOL_CONFIG"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sol", *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )


def write_config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "sol.toml"
    # the body first: top-level keys must come before any table
    cfg.write_text(textwrap.dedent(body) + f'\n[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    return cfg


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "args",
    [[], ["bogus"], ["run", "--duration", "soon"], ["sim", "--duration", "-1"], ["run", "--frobnicate"]],
    ids=["no-command", "unknown-command", "bad-duration", "negative-duration", "unknown-flag"],
)
def test_wrong_arguments_print_usage_and_exit_2(args: list[str]) -> None:
    proc = sol(*args)
    assert proc.returncode == 2
    assert "usage: sol" in proc.stderr


def test_agents_lists_builtins_and_plugins_and_reports_broken_plugins(plugin_path: Path) -> None:
    proc = sol("agents", env={"PYTHONPATH": str(plugin_path)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "noop" in out and "example_ewma" in out and "steady" in out and "plugin solplug" in out
    assert "broken" in out and "UNAVAILABLE" in out and "does_not_exist_anywhere" in out


def test_check_config_names_key_and_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '\nrollback = "sometimes"\n[agents.noop.schedule]\ncolect_every = 1\n')
    proc = sol("check-config", str(cfg))
    assert proc.returncode == 1
    assert f"{cfg}:2: rollback" in proc.stdout
    assert f"{cfg}:4: agents.noop.schedule.colect_every" in proc.stdout
    assert "colect_every" in proc.stdout and "unknown key" in proc.stdout


def test_run_with_broken_config_exits_1_and_names_the_problem(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.noop]\nenabled = 'yes'\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1s")
    assert proc.returncode == 1
    assert "agents.noop.enabled" in proc.stderr and "check-config" in proc.stderr


def test_run_with_unknown_agent_lists_the_known_names(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.no_such_agent]\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1s")
    assert proc.returncode == 1
    assert "no_such_agent" in proc.stderr and "noop" in proc.stderr


def test_run_ends_by_itself_and_logs_json_what_agents_do(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.noop]\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1.5s")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    names = [e["event"] for e in evs]
    for expected in ("daemon.starting", "agent.started", "runtime.started", "agent.final", "daemon.stopped"):
        assert expected in names
    final = next(e for e in evs if e["event"] == "agent.final")
    assert final["agent"] == "noop" and final["state"] == "stopped"


def test_run_keeps_other_agents_when_one_fails_setup(tmp_path: Path, plugin_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.bad_setup]\n[agents.steady]\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1s", env={"PYTHONPATH": str(plugin_path)})
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    failed = [e for e in evs if e["event"] == "agent.setup_failed"]
    assert failed and failed[0]["agent"] == "bad_setup" and "nope does not exist" in str(failed[0]["error"])
    finals = {e["agent"]: e for e in evs if e["event"] == "agent.final"}
    assert finals["steady"]["state"] == "stopped" and finals["bad_setup"]["state"] == "failed"
    applied = finals["steady"]["applied"]
    assert isinstance(applied, dict) and applied.get("model", 0) > 3


def test_run_restores_leftovers_of_a_crashed_run_and_reports_a_corrupt_journal(tmp_path: Path) -> None:
    from sol.safety.journal import UndoJournal

    group = tmp_path / "cgroup" / "cpu" / "batch"  # a fake cgroup tree: the config's root
    group.mkdir(parents=True)
    knob = group / "cpu.shares"
    knob.write_text("4096\n")
    journal_path = tmp_path / "state" / "undo.journal"
    with UndoJournal.open(journal_path) as j:
        j.record("crashed_agent", "file", str(knob), "1024")
    with journal_path.open("a") as f:
        f.write("deadbeef {not json\n")  # a torn, corrupt tail
    cfg = write_config(tmp_path, f'[linux]\ncgroup_root = "{tmp_path / "cgroup"}"\n[agents.noop]\n')
    proc = sol("run", "--config", str(cfg), "--duration", "0.5s")
    assert proc.returncode == 0, proc.stderr
    names = [e["event"] for e in events(proc.stdout)]
    assert "journal.leftovers" in names and "journal.restored" in names
    assert any("corrupt" in n or n == "journal.problem" for n in names)
    assert knob.read_text().strip() == "1024"


def test_restore_command_is_idempotent(tmp_path: Path) -> None:
    from sol.safety.journal import UndoJournal

    # a fake cgroup tree, named as the config's cgroup root: restore writes nothing else
    group = tmp_path / "cgroup" / "cpu" / "batch"
    group.mkdir(parents=True)
    knob = group / "cpu.shares"
    knob.write_text("2048\n")
    journal_path = tmp_path / "undo.journal"
    cfg = tmp_path / "sol.toml"
    cfg.write_text(f'[linux]\ncgroup_root = "{tmp_path / "cgroup"}"\n')
    with UndoJournal.open(journal_path) as j:
        j.record("agent", "file", str(knob), "1024")
    first = sol("restore", "--journal", str(journal_path), "--config", str(cfg))
    assert first.returncode == 0, first.stdout + first.stderr
    assert knob.read_text().strip() == "1024"
    second = sol("restore", "--journal", str(journal_path), "--config", str(cfg))
    assert second.returncode == 0
    assert "nothing to restore" in second.stdout.lower() or "0 restored" in second.stdout.lower()


def test_restore_loads_neither_the_simulator_nor_the_fault_harness(tmp_path: Path) -> None:
    # ExecStopPost= runs it after every crash, under the unit's CPUQuota=: what it imports is
    # how long the host stays as the dead daemon left it
    code = textwrap.dedent(
        f"""
        import sys
        from sol.cli import main
        rc = main(["restore", "--journal", {str(tmp_path / "undo.journal")!r}])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "river") or
                       m.startswith(("sol.sim", "sol.fault_injection", "sol.agents")))
        print(rc, heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stdout + proc.stderr


def test_faults_list_names_every_fault_boundary() -> None:
    proc = sol("faults", "list")
    assert proc.returncode == 0, proc.stderr
    for boundary in ("sensor", "predictor", "actuator", "process", "node"):
        assert boundary in proc.stdout


def test_run_ends_with_a_summary_table_on_stderr_and_keeps_json_log_lines_short(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.noop]\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1s")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line.startswith("{") for line in lines)  # stdout stays JSON lines for journald
    assert max(len(line) for line in lines) < 1000  # the node's ground truth is no log line
    assert events(proc.stdout)[-1]["event"] == "daemon.stopped"
    table = proc.stderr.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("agent "))
    assert table[header + 2].split()[:2] == ["noop", "stopped"]
    assert "harvested_core_s" in proc.stderr  # the simulated node's ground truth, as a table
    assert "on the sim backend, exit status 0" in table[-1]


def test_run_with_console_logs_prints_the_summary_after_them(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.noop]\n")
    proc = sol("run", "--config", str(cfg), "--duration", "1s", "--log-format", "console")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("daemon.stopped") < out.index("default reasons") < out.index("exit status 0")


def test_run_on_a_node_without_the_facility_an_agent_needs_says_not_applicable(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[sim]\nscenario = "mem-stress"\n[agents.noop]\n[agents.example_ewma]\n')
    proc = sol("run", "--config", str(cfg), "--duration", "1s")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert not [e for e in evs if e["event"] == "agent.setup_failed"]
    na = [e for e in evs if e["event"] == "agent.not_applicable"]
    assert na and na[0]["agent"] == "example_ewma" and na[0]["facility"] == "cpu"
    finals = {e["agent"]: e["state"] for e in evs if e["event"] == "agent.final"}
    assert finals == {"noop": "stopped", "example_ewma": "not-applicable"}
    assert next(e for e in evs if e["event"] == "daemon.stopped")["failed_agents"] == []
    assert "example_ewma: not-applicable: this node has no cpu sensors" in proc.stderr


AGENTS_CONFIG = """
[agents.noop]
dry_run = true
[agents.example_ewma.schedule]
act_every = 0.5
[agents.cpu_harvest]
enabled = false
"""


def test_agents_says_which_agents_the_config_enables_with_schedule_and_dry_run(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, AGENTS_CONFIG)
    proc = sol("agents", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert "yes, dry-run" in rows["noop"]
    assert " yes " in rows["example_ewma"] and "act 0.5s (config)" in rows["example_ewma"]
    assert "disabled" in rows["cpu_harvest"]
    assert f"config {cfg}: enables noop, example_ewma" in proc.stdout


def test_agents_json_gives_each_agent_with_what_the_config_says(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, AGENTS_CONFIG)
    proc = sol("agents", "--config", str(cfg), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["config"] == str(cfg) and doc["problems"] == []
    agents = {a["name"]: a for a in doc["agents"]}
    assert agents["noop"]["enabled"] and agents["noop"]["dry_run"]
    assert (
        agents["example_ewma"]["schedule"]["act_every"] == 0.5
        and agents["example_ewma"]["schedule_from_config"]
    )
    assert agents["cpu_harvest"]["configured"] and not agents["cpu_harvest"]["enabled"]


def test_agents_with_a_broken_config_still_lists_the_agents_and_exits_1(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[agents.noop]\nenabled = 'yes'\n")
    proc = sol("agents", "--config", str(cfg))
    assert proc.returncode == 1
    assert "agents.noop.enabled" in proc.stderr and "noop" in proc.stdout


def test_check_config_json_lists_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '\nrollback = "sometimes"\n[agents.noop.schedule]\ncolect_every = 1\n')
    proc = sol("check-config", "--json", str(cfg))
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)
    assert [(p["file"], p["line"], p["key"]) for p in problems] == [
        (str(cfg), 2, "rollback"),
        (str(cfg), 4, "agents.noop.schedule.colect_every"),
    ]
    assert all(set(p) == {"file", "line", "key", "message", "severity"} for p in problems)
    assert {p["severity"] for p in problems} == {"error"}
    assert "unknown key" in problems[1]["message"]


def test_check_config_prints_a_deprecated_key_as_a_warning_and_exits_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[linux]\nharvest_cgroup = "h"\n[agents.noop]\n')
    proc = sol("check-config", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == (
        f"warning: {cfg}:2: linux.harvest_cgroup: deprecated: use [linux.cpu] harvest_cgroup"
    )
    assert proc.stdout.splitlines()[-1].endswith("1 warning")
    proc = sol("check-config", "--json", str(cfg))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == [
        {
            "file": str(cfg),
            "line": 2,
            "key": "linux.harvest_cgroup",
            "message": "deprecated: use [linux.cpu] harvest_cgroup",
            "severity": "warning",
        }
    ]


def test_check_config_json_of_a_good_file_is_an_empty_list(tmp_path: Path) -> None:
    proc = sol("check-config", "--json", str(write_config(tmp_path, "[agents.noop]\n")))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
