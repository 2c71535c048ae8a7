"""``systemd/sol.service`` under a real systemd, with ``cpu_harvest`` writing real cgroups.

The other unit tests read the file (``systemd-analyze verify`` / ``security``) or imitate
its privileges (setpriv). This one boots systemd as PID 1 of a throwaway set of namespaces
(tests/daemon/systemd_box.py says exactly what is isolated and how) and runs the unit file
unchanged, its whole sandbox included, and checks what an operator relies on:

- ``Type=notify``: the unit is active only after READY=1, with the daemon's STATUS= line;
- the watchdog: systemd records the daemon's WATCHDOG=1 pings;
- the control socket at /run/sol/sol.sock (0600) answers ``sol status``;
- ``cpu_harvest`` (not dry-run) creates its cgroup and writes it from inside
  ``ProtectSystem=strict``, the capability set and the system-call filter;
- ``systemctl reload`` (``ExecReload=sol ctl reload``) succeeds;
- SIGKILL: ``ExecStopPost=sol restore`` puts the before-images back, then
  ``Restart=on-failure`` starts the daemon again;
- ``systemctl stop``: the host is left as it was (the harvest group parked again, nothing
  left open in the undo journal).

Skips, saying why, where a box cannot boot (not root, no systemd, a cgroup-v2-only host, no
Python the unit's sandbox can see). Takes ~30 s.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd_box
from systemd_box import Box

pytestmark = [pytest.mark.linux, pytest.mark.slow]

WHY_NOT = systemd_box.why_not()
if WHY_NOT is None and (os.cpu_count() or 1) < 2:
    WHY_NOT = "one CPU: cpu_harvest lends nothing, there is no cgroup write to check"

HARVEST = "/sys/fs/cgroup/cpu/sol-harvest"
#: the quota of a parked harvest group (sol.linux.cpu.PARK_QUOTA_US): its state before any lending
PARKED_QUOTA = "1000"

CONFIG = """\
backend = "linux"
[log]
format = "json"
[linux.cpu]
harvest_cgroup = "sol-harvest"
[agents.cpu_harvest]
dry_run = false
[agents.noop]
"""


def host_etc() -> dict[str, list[str]]:
    """What the box must not change on the host: the names in /etc and in /etc/sol (if any)."""
    etc = Path("/etc")
    sol = etc / "sol"
    return {"/etc": sorted(os.listdir(etc)), "/etc/sol": sorted(os.listdir(sol)) if sol.is_dir() else []}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    if WHY_NOT is not None:
        pytest.skip(f"no systemd box here: {WHY_NOT}")
    before = host_etc()
    b = systemd_box.boot(tmp_path / "box", CONFIG)
    try:
        yield b
    finally:
        left = b.close()
        assert not left, f"cgroups of the box left behind: {left}"
        # a first run on a host without /etc/sol once left one behind (the box's systemd made
        # it for ConfigurationDirectory=): the box's /etc is its own copy
        assert host_etc() == before, "the box changed the host's /etc"


def events(box: Box) -> list[dict[str, object]]:
    out = []
    for line in box.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def running(state: dict[str, str]) -> bool:
    return state.get("ActiveState") == "active" and state.get("SubState") == "running"


def explain(box: Box) -> str:
    status = box.systemctl("status", "sol").stdout
    return f"\n--- systemctl status sol\n{status}\n--- daemon log (tail)\n{box.log()[-4000:]}"


def wait_file(box: Box, path: str, want: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    value = ""
    while time.monotonic() < deadline:
        try:
            value = box.read(path).strip()
        except OSError:
            value = "(missing)"
        if value == want:
            break
        time.sleep(0.1)
    return value


def test_the_unit_runs_the_daemon_under_systemd_and_every_stop_restores_the_host(box: Box) -> None:
    # Type=notify: active (running) only after READY=1, with the STATUS= summary
    state = box.wait_for("sol", running, timeout=60)
    assert running(state), f"sol.service did not become active: {state}" + explain(box)
    assert "running" in state["StatusText"] and "backend linux" in state["StatusText"], state
    assert state["NRestarts"] == "0", state

    # cpu_harvest creates its group and lends (unparks) it: real writes inside the sandbox
    quota = wait_file(box, f"{HARVEST}/cpu.cfs_quota_us", "-1", timeout=30)
    assert quota == "-1", f"the harvest group was never lent (quota {quota})" + explain(box)
    evs = events(box)
    writes = [e for e in evs if e.get("event") == "actuation.write" and e.get("owner") == "cpu_harvest"]
    assert writes and writes[0]["before"] == PARKED_QUOTA + "\n", writes[:2]
    denied = [e for e in evs if "Permission denied" in str(e) or "Read-only file system" in str(e)]
    assert not denied, denied

    # SIGKILL while lent: ExecStopPost= restores the before-images, Restart=on-failure starts
    # it again (at once after lending: whether the agent keeps lending here does not matter)
    kill = box.systemctl("kill", "--signal=KILL", "--kill-whom=main", "sol")
    assert kill.returncode == 0, kill.stderr
    t0 = time.monotonic()
    parked = wait_file(box, f"{HARVEST}/cpu.cfs_quota_us", PARKED_QUOTA, timeout=30)
    t_restored = time.monotonic() - t0
    assert parked == PARKED_QUOTA, f"not restored after SIGKILL (quota {parked})" + explain(box)
    state = box.wait_for("sol", lambda s: s["NRestarts"] == "1" and running(s), timeout=60)
    assert state["NRestarts"] == "1" and running(state), f"no restart after SIGKILL: {state}" + explain(box)
    restored = [ln for ln in box.log().splitlines() if ln.startswith("restored ") and "0 failed" in ln]
    assert restored, "ExecStopPost= (sol restore) did not report its restore" + explain(box)
    print(
        f"\nSIGKILL -> host restored in {t_restored:.1f} s, daemon running again in "
        f"{time.monotonic() - t0:.1f} s ({restored[-1]})"
    )

    # on the restarted daemon:
    # the watchdog: systemd sees the pings (WatchdogSec=4s in the test drop-in: every 2 s)
    first = box.show("sol", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    later = box.wait_for(
        "sol",
        lambda s: s["WatchdogTimestampMonotonic"] != first,
        timeout=8,
        props=("WatchdogTimestampMonotonic",),
    )
    assert later["WatchdogTimestampMonotonic"] != first, "no WATCHDOG=1 reached systemd in 8 s" + explain(box)

    # the control socket, 0600, answers
    sock = box.path("/run/sol/sol.sock")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    st = box.run("/opt/sol/bin/sol", "status")
    assert st.returncode == 0 and "cpu_harvest" in st.stdout and "running" in st.stdout, st.stdout + st.stderr
    assert box.show("sol", "StatusText")["StatusText"].endswith("open undo record(s)")

    # systemctl reload: ExecReload= waits for the daemon's answer
    rl = box.systemctl("reload", "sol")
    assert rl.returncode == 0, rl.stderr + explain(box)
    assert any(e.get("event") == "daemon.reloaded" for e in events(box)), explain(box)

    # stop: clean-up and restore leave the group parked and nothing open
    stop = box.systemctl("stop", "sol")
    assert stop.returncode == 0, stop.stderr
    state = box.show("sol", "ActiveState", "Result")
    assert state["ActiveState"] in ("inactive", "failed") and state["Result"] == "success", state
    assert box.read(f"{HARVEST}/cpu.cfs_quota_us").strip() == PARKED_QUOTA
    after = box.run("/opt/sol/bin/sol", "restore", "--config", "/etc/sol/sol.toml")
    assert after.returncode == 0 and "nothing to restore" in after.stdout, after.stdout + after.stderr
