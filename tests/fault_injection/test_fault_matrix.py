"""The matrix CI runs, `sol faults` subcommands, and a third-party agent through the entry point."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sol.fault_injection.cli import add_faults_arguments, faults_command
from sol.fault_injection.faults import FAULTS, REDUCED_FAULTS
from sol.registry import Registry

REPO = Path(__file__).resolve().parents[2]


def faults(*argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="sol faults")
    add_faults_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        rc = faults_command(parser.parse_args(list(argv)), out)
    finally:
        sys.stderr = old
    return rc, out.getvalue(), err.getvalue()


# -- the reduced matrix (what CI runs) ------------------------------------------------------


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, dict[str, Any], Path]:
    d = tmp_path_factory.mktemp("matrix")
    rc, out, _ = faults("matrix", "--reduced", "--json", str(d / "m.json"), "--plot", str(d / "m.png"))
    return rc, out, json.loads((d / "m.json").read_text()), d / "m.png"


def test_the_reduced_matrix_passes_for_every_agent_that_exists(
    reduced: tuple[int, str, dict[str, Any], Path],
) -> None:
    rc, out, data, _ = reduced
    assert rc == 0, out
    assert data["passed"] and data["problems"] == []
    assert set(data["agents"]) == set(Registry().classes())
    rows = {(r["agent"], r["fault"]) for r in data["rows"]}
    assert rows == {(a, f) for a in data["agents"] for f in REDUCED_FAULTS}
    assert out.rstrip().splitlines()[-3].startswith("PASS")


def test_the_matrix_shows_the_harm_safeguards_prevent(reduced: tuple[int, str, dict[str, Any], Path]) -> None:
    _, out, data, _ = reduced
    ewma = {r["fault"]: r for r in data["rows"] if r["agent"] == "example_ewma"}
    prevented = [f for f, r in ewma.items() if r["verdict"] == "prevented"]
    assert len(prevented) >= 10, {f: r["verdict"] for f, r in ewma.items()}
    for f in prevented:
        # a fault that harms the daemon itself is judged on that harm, not the node's
        h = ewma[f]["daemon_damage"] if ewma[f]["daemon_damage"]["metric"] else ewma[f]["harm"]
        assert h["on"] < h["off"], (f, h)
    # a fault that does no harm even without safeguards is called out, not hidden
    weak = [f for f, r in ewma.items() if r["verdict"] == "weak"]
    if weak:
        assert f"weak: {', '.join(weak)}" in out


def test_the_plot_is_a_png(reduced: tuple[int, str, dict[str, Any], Path]) -> None:
    assert reduced[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the other subcommands ---------------------------------------------------------------------


def test_list_names_every_fault() -> None:
    rc, out, _ = faults("list")
    assert rc == 0
    for name in FAULTS:
        assert name in out


def test_run_reports_one_cell(tmp_path: Path) -> None:
    rc, out, _ = faults(
        "run", "example_ewma", "data.nan", "--duration", "120", "--onset", "30", "--length", "60",
        "--json", str(tmp_path / "cell.json"),
    )  # fmt: skip
    assert rc == 0
    assert "verdict: prevented" in out
    assert "DESIGN §4: every guarantee held" in out
    assert json.loads((tmp_path / "cell.json").read_text())["fault"] == "data.nan"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("run", "nobody", "data.nan"), "known agents: "),
        (("run", "example_ewma", "data.nope"), "known faults: "),
        (("run", "example_ewma", "act.eio", "--param", "q=1"), "has no parameter"),
        (("run", "example_ewma", "act.eio", "--param", "p"), "K=V"),
        (("matrix", "--faults", "nope"), "known faults: "),
    ],
    ids=["unknown-agent", "unknown-fault", "unknown-param", "bad-param", "matrix-unknown-fault"],
)
def test_wrong_names_exit_2_and_say_what_exists(argv: tuple[str, ...], message: str) -> None:
    rc, _, err = faults(*argv)
    assert rc == 2
    assert message in err


# -- an agent someone else wrote, registered through the entry point ----------------------------

PLUGIN = '''
from sol import Agent, Prediction, Schedule


class Lender(Agent):
    """Lends every core the primaries did not use in the last second, minus two."""

    name = "tp_lender"
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)
    harm_metric = "cpu.primary_unserved_core_s"

    def setup(self, ctx):
        self.ctx, self.cpu, self.out = ctx, ctx.sensors.cpu, ctx.actuators.cpu

    def collect(self):
        return self.cpu.usage("primary")

    def validate(self, obs):
        return 0.0 <= obs.cores <= self.cpu.total_cores()

    def learn(self, obs):
        self.used = obs.cores

    def predict(self):
        return max(0, self.cpu.total_cores() - int(self.used) - 2)

    def default_predict(self):
        return 0

    def act(self, prediction: Prediction):
        self.out.set_harvest_cores(int(prediction.value))

    def mitigate(self):
        self.out.set_harvest_cores(0)

    def clean_up(self):
        if hasattr(self, "out"):
            self.out.set_harvest_cores(0)


class Quiet(Agent):
    """Declares nothing the fault harness knows about."""

    name = "tp_quiet"
    schedule = Schedule(collect_every=1.0, act_every=1.0, prediction_ttl=3.0, assess_every=5.0)

    def collect(self):
        return 1

    def predict(self):
        return 1

    def default_predict(self):
        return 0

    def act(self, prediction):
        return None
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "tp_sol_agents.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "tp_sol_agents-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tp-sol-agents\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sol.agents]\ntp_lender = tp_sol_agents:Lender\ntp_quiet = tp_sol_agents:Quiet\n"
    )
    monkeypatch.syspath_prepend(str(root))
    return root


def test_a_plugin_agent_appears_in_the_matrix_with_no_change_to_the_harness(plugin: Path) -> None:
    assert {"tp_lender", "tp_quiet"} <= set(Registry().names())
    rc, out, _ = faults(
        "matrix", "--faults", "data.out_of_range", "--duration", "120", "--onset", "30", "--length", "60"
    )
    assert rc == 0, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("tp_")}
    assert "prevented" in lines["tp_lender"]
    assert "n/a" in lines["tp_quiet"]
    assert "tp_quiet: scenario default, harm = none declared (harm n/a)" in out


def test_a_plugin_agent_is_found_by_a_fresh_process(plugin: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "sol.fault_injection", "matrix", "--agents", "tp_lender",
         "--faults", "proc.crash_loop", "--duration", "120", "--onset", "30", "--length", "60"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    [row] = [line.split() for line in proc.stdout.splitlines() if line.startswith("tp_lender ")]
    assert row[1:3] == ["proc.crash_loop", "PASS"]
