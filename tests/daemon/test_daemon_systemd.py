"""The systemd unit, the tmpfiles snippet, `sol install`, and the Kubernetes DaemonSet.

`systemd-analyze` checks the unit as systemd itself would (`.ci/run` installs Debian's
systemd package where it is missing; elsewhere these tests skip, saying so). The exposure
score `systemd-analyze security` gives must be the one docs/operating.md states.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sold_helpers import rmtree, short_tmp

from sol.config import loads_config
from sol.registry import Registry

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
SOL_BIN = Path(sys.executable).parent / "sol"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is missing (Debian package `systemd`; .ci/run installs it)",
)


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp()
    yield path
    rmtree(path)


def install(root: Path, *args: str, bin_: Path = SOL_BIN) -> subprocess.CompletedProcess[str]:
    """`sol install --root ROOT --bin BIN ARGS`, in process (it is plain file writing)."""
    from sol.cli import main

    out, err = io.StringIO(), io.StringIO()
    rc = main(["install", "--root", str(root), "--bin", str(bin_), *args], out=out, err=err)
    return subprocess.CompletedProcess(["sol", "install"], rc, out.getvalue(), err.getvalue())


def test_install_puts_unit_tmpfiles_and_config_in_place_with_their_modes(root: Path) -> None:
    proc = install(root)
    assert proc.returncode == 0, proc.stderr
    unit = root / "etc/systemd/system/sol.service"
    expected = {
        unit: 0o644,
        root / "etc/tmpfiles.d/sol.conf": 0o644,
        root / "etc/sol/sol.toml": 0o600,
        root / "etc/sol/sol.toml.example": 0o644,
    }
    for path, mode in expected.items():
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    text = unit.read_text()
    assert f"ExecStart={SOL_BIN} run" in text and f"ExecStopPost={SOL_BIN} restore" in text
    assert "/opt/sol/bin/sol" not in text


def test_install_never_overwrites_an_operators_config(root: Path) -> None:
    config = root / "etc/sol/sol.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# mine\n")
    proc = install(root)
    assert proc.returncode == 0 and "keep" in proc.stdout
    assert config.read_text() == "# mine\n"


def test_install_dry_run_changes_nothing_and_a_hidden_executable_is_refused(root: Path) -> None:
    proc = install(root, "--dry-run")
    assert proc.returncode == 0 and "would write" in proc.stdout
    assert not (root / "etc").exists()
    hidden = install(root, bin_=Path("/home/me/venv/bin/sol"))
    assert hidden.returncode == 1 and "ProtectHome" in hidden.stderr


def test_the_example_config_is_valid() -> None:
    registry = Registry()
    text = (UNITS / "sol.toml.example").read_text()
    config = loads_config(text, source="sol.toml.example", agents=registry.classes())
    assert config.backend == "linux" and config.daemon.metrics_address == "127.0.0.1"
    # every agent stanza it shows commented out is one an operator can uncomment as it is
    agents = text.index("\n# [agents.")
    stanzas = re.sub(r"(?m)^# (\[agents\..*|[a-z_]+ = .*)$", r"\1", text[agents:])
    assert "[agents.cpu_harvest]" in stanzas
    loads_config(text[:agents] + stanzas, source="sol.toml.example, uncommented", agents=registry.classes())


@needs_analyze
def test_unit_verifies_cleanly(root: Path) -> None:
    assert install(root).returncode == 0
    unit = root / "etc/systemd/system/sol.service"
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "sol.service" in line]
    assert proc.returncode == 0 and complaints == [], proc.stdout + proc.stderr


@needs_analyze
def test_exposure_score_is_ok_or_better_and_the_one_documented(root: Path) -> None:
    assert install(root).returncode == 0
    unit = root / "etc/systemd/system/sol.service"
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = proc.stdout + proc.stderr
    if "--offline" in out and "unrecognized" in out:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", out)
    assert m, out
    score, level = float(m.group(1)), m.group(2)
    assert level in ("PERFECT", "SAFE", "OK"), out
    doc = (REPO / "docs/operating.md").read_text()
    documented = re.search(r"exposure level \*\*(\d+\.\d+) (\w+)\*\*", doc)
    assert documented, "docs/operating.md must state the exposure score"
    assert (float(documented.group(1)), documented.group(2)) == (score, level), (
        f"the unit now scores {score} {level}: update docs/operating.md"
    )


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles is missing")
def test_tmpfiles_snippet_creates_the_state_and_runtime_directories(root: Path) -> None:
    proc = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={root}", str(UNITS / "sol.tmpfiles.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE((root / "var/lib/sol").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "run/sol").stat().st_mode) == 0o755


def test_unit_runs_restore_after_every_stop_and_is_watched() -> None:
    text = (UNITS / "sol.service").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify" and settings["Restart"] == "on-failure"
    assert settings["WatchdogSec"] and "restore" in settings["ExecStopPost"]
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    assert settings["MemoryMax"] and settings["CPUQuota"]
    caps = set(settings["CapabilityBoundingSet"].split())
    assert caps == {"CAP_DAC_OVERRIDE", "CAP_SYS_NICE", "CAP_SYS_PTRACE"}
    # every capability is explained in the unit and in the docs
    doc = (REPO / "docs/operating.md").read_text()
    for cap in caps:
        assert text.count(cap) >= 2 and cap in doc, cap


def test_kubernetes_daemonset_has_what_the_agents_need_and_a_valid_config() -> None:
    text = (REPO / "deploy/kubernetes/daemonset.yaml").read_text()
    for needed in (
        "kind: DaemonSet",
        "privileged: true",
        "hostPID: true",
        "path: /sys/fs/cgroup",
        "mountPath: /var/lib/sol",
        "containerPort: 9477",
        "limits:",
        "path: /healthz",
        "terminationGracePeriodSeconds:",
        "subPath: sol.toml",  # not under the ConfigMap volume's world-writable directory
    ):
        assert needed in text, needed
    block = re.search(r"  sol\.toml: \|\n((?:    .*\n|\n)+)", text)
    assert block, "the ConfigMap's sol.toml"
    config_text = "\n".join(line[4:] for line in block.group(1).splitlines())
    config = loads_config(config_text, source="daemonset.yaml", agents=Registry().classes())
    assert config.backend == "linux" and config.daemon.metrics_port == 9477
    assert os.fspath(config.journal_path) == "/var/lib/sol/undo.journal"


# -- the unit's privileges, for real --------------------------------------------------

SETPRIV = shutil.which("setpriv")
needs_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv (util-linux) to drop capabilities"
)


def unit_caps() -> list[str]:
    for line in (UNITS / "sol.service").read_text().splitlines():
        if line.startswith("CapabilityBoundingSet="):
            return line.split("=", 1)[1].split()
    raise AssertionError("no CapabilityBoundingSet= in the unit")


def sandboxed(caps: list[str], *argv: str) -> list[str]:
    """``argv`` with only ``caps`` in the bounding set and no_new_privs, as the unit runs it."""
    bounding = ",".join(["-all"] + ["+" + c.removeprefix("CAP_").lower() for c in caps])
    assert SETPRIV is not None
    return [SETPRIV, f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs", "--", *argv]


def cgroup_parent() -> Path | None:
    """A cgroup hierarchy's root directory (mode 0555) where we may create a child."""
    for candidate in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"), Path("/sys/fs/cgroup")):
        if (candidate / "cgroup.procs").exists() and os.access(candidate, os.W_OK):
            return candidate
    return None


MKDIR_AND_WRITE = """
import os, sys, pathlib
d = pathlib.Path(sys.argv[1]) / f"sol-captest-{os.getpid()}"
try:
    d.mkdir()
except PermissionError as exc:
    print("mkdir:", exc.strerror); sys.exit(3)
try:
    knob = d / ("cpu.cfs_quota_us" if (d / "cpu.cfs_quota_us").exists() else "cgroup.procs")
    if knob.name == "cpu.cfs_quota_us":
        knob.write_text("50000")
        assert knob.read_text().strip() == "50000"
    print("ok", knob.name)
finally:
    d.rmdir()
"""


@needs_setpriv
def test_the_units_capabilities_create_and_write_a_cgroup_and_dac_override_is_needed() -> None:
    parent = cgroup_parent()
    if parent is None:
        pytest.skip("no writable cgroup hierarchy here")
    caps = unit_caps()
    ok = subprocess.run(
        sandboxed(caps, sys.executable, "-c", MKDIR_AND_WRITE, str(parent)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok"), ok.stdout + ok.stderr
    without = [c for c in caps if c != "CAP_DAC_OVERRIDE"]
    denied = subprocess.run(
        sandboxed(without, sys.executable, "-c", MKDIR_AND_WRITE, str(parent)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert denied.returncode == 3 and "Permission denied" in denied.stdout, denied.stdout + denied.stderr


MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
applied = libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0
print("mdwe" if applied else "no-mdwe", flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


@needs_setpriv
def test_the_daemon_runs_on_the_linux_backend_inside_the_units_privileges(root: Path) -> None:
    try:
        import sol.linux  # noqa: F401
    except ImportError:
        pytest.skip("the Linux backend is not in this build")
    cfg = root / "sol.toml"
    cfg.write_text(
        'backend = "linux"\n[paths]\n'
        f'state_dir = "{root / "state"}"\n[log]\nformat = "json"\n[daemon]\n'
        f'control_socket = "{root / "sol.sock"}"\nmetrics_port = 0\nreport_every = 0.5\n'
        "[agents.noop]\n[agents.example_ewma]\ndry_run = true\n"
    )
    os.chmod(cfg, 0o600)
    argv = sandboxed(
        unit_caps(), sys.executable, "-m", "sol", "run", "--config", str(cfg), "--duration", "2s"
    )
    proc = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, *argv], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    names = {e["event"] for e in evs}
    assert {"linux.backend_ready", "daemon.ready", "daemon.stopped"} <= names
    assert not [e for e in evs if e.get("level") == "error"], [e for e in evs if e.get("level") == "error"]
