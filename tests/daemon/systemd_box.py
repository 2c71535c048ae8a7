"""A throwaway systemd to run ``systemd/sol.service`` for real (tests/daemon/test_daemon_systemd_live.py).

The daemon's unit is only proven by a systemd that starts it: ``Type=notify``, the watchdog,
``ExecStopPost=sol restore`` after a SIGKILL, ``ExecReload=``, and above all the sandbox
(``ProtectSystem=strict``, the capability set, the system-call filter) around real cgroup
writes. ``systemd-analyze`` only reads the file. This boots ``/lib/systemd/systemd`` as PID 1
of its own PID, mount, cgroup, UTS, IPC and network namespaces, the way a container manager
would, with nothing of the host's boot in it:

- cgroups: a fresh group ``sol-systemd-test-*`` under the test's own group in every hierarchy
  is the namespace's cgroup root; the hierarchies are mounted again inside a private tmpfs at
  ``/sys/fs/cgroup`` (systemd remounts that tmpfs read-only: it must not be the host's).
  Controllers the host binds to no v1 hierarchy get placeholders, so systemd binds none.
  Everything systemd and the daemon create (``system.slice/``, the harvest group) lies under
  the test's group and is removed with it.
- files: tmpfs over ``/run``, ``/var/lib``, ``/opt`` and the unit folders (the host's units
  are hidden; empty ``sysinit``/``basic``/... targets stand in), ``/proc/sys`` read-only (PID 1
  would otherwise raise host-wide sysctls), ``/dev/console`` is a file. ``/etc`` is a copy on
  the box's ``/run`` with a tmpfs at ``/etc/sol``: a mount point needs a directory, and a
  missing ``/etc/sol`` made on the host's ``/etc`` (or by systemd for the unit's
  ``ConfigurationDirectory=``) would outlive the box there. ``/opt`` and ``/var/lib`` must
  exist (``why_not``) for the same reason.
- the package: copied to ``/opt/sol/lib`` as a wheel would lay it out, run by a Python outside
  the folders the unit hides (``ProtectHome=``, ``PrivateTmp=``), with the test's own
  site-packages bind-mounted read-only at ``/opt/sol/deps`` for the dependencies.

The unit file itself is used unchanged; one drop-in only shortens ``WatchdogSec=`` and sends
the daemon's output to a file (there is no journal in the box).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The top-level folders the wheel maps into ``sol.*`` (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "sol": "sol",
    "agents": "sol/agents",
    "actuators": "sol/actuators",
    "safety": "sol/safety",
    "predictors": "sol/predictors",
    "fault_injection": "sol/fault_injection",
}
#: Folders the unit hides from the service: a Python under them cannot run the daemon.
HIDDEN = ("/root", "/home", "/run/user", "/tmp", "/var/tmp")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: v1 controllers systemd mounts when the host has not: placeholders keep it from binding them.
PLACEHOLDERS = ("cpu,cpuacct", "net_cls,net_prio", "hugetlb", "perf_event", "rdma", "misc")
EMPTY_TARGETS = (
    "sysinit",
    "basic",
    "shutdown",
    "local-fs",
    "local-fs-pre",
    "sockets",
    "timers",
    "paths",
    "slices",
    "swap",
    "network",
    "network-online",
    "network-pre",
    "umount",
    "final",
    "emergency",
    "rescue",
)


def systemd_binary() -> Path | None:
    for p in (Path("/lib/systemd/systemd"), Path("/usr/lib/systemd/systemd")):
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def visible_python() -> Path | None:
    """A Python of this minor version that the unit's sandbox does not hide."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for d in ("/usr/bin", "/usr/local/bin", "/opt/python/bin"):
        p = Path(d) / name
        if p.is_file() and not str(p.resolve()).startswith(HIDDEN):
            return p
    return None


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, super options) of every cgroup hierarchy under /sys/fs/cgroup."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        mp = fields[4]
        if tail[0] in ("cgroup", "cgroup2") and (mp == str(CGROUP_ROOT) or mp.startswith(f"{CGROUP_ROOT}/")):
            out.append((mp, tail[0], tail[2]))
    return out


def why_not() -> str | None:
    """Why a box cannot be booted here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (namespaces, cgroups, mounts)"
    if systemd_binary() is None:
        return "no /lib/systemd/systemd (Debian package `systemd`; .ci/run installs it)"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"no `{tool}` (util-linux)"
    if visible_python() is None:
        return (
            f"no python{sys.version_info.major}.{sys.version_info.minor} outside the folders the unit "
            f"hides ({', '.join(HIDDEN)}) to run the daemon with"
        )
    mounts = cgroup_mounts()
    if not mounts:
        return "no cgroup hierarchy mounted under /sys/fs/cgroup"
    if any(mp == str(CGROUP_ROOT) for mp, _, _ in mounts):
        return "a cgroup-v2-only host: this harness boots systemd on v1/hybrid hierarchies only"
    if not Path(sysconfig.get_paths()["purelib"]).is_dir():
        return "cannot find this interpreter's site-packages"
    for d in ("/opt", "/var/lib"):
        if not Path(d).is_dir():
            return f"no {d}: the box mounts a tmpfs there and would have to create it on the host's root"
    return None


def _own_cgroup(mount: str, fstype: str, opts: str) -> str:
    """This process's group in the hierarchy mounted at ``mount``."""
    names = set(opts.split(","))
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, ctrls, path = line.split(":", 2)
        if fstype == "cgroup2" and hid == "0":
            return path
        if fstype == "cgroup" and ctrls and set(ctrls.split(",")) <= names:
            return path
    raise RuntimeError(f"this process is in no group of the hierarchy at {mount}")


INNER = r"""#!/bin/bash
# PID 1 of the new namespaces until it execs systemd (see tests/daemon/systemd_box.py)
set -eu
STAGE="$1"
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
while read -r mp fstype opts; do
  mkdir -p "$mp"
  if [ "$fstype" = cgroup2 ]; then mount -t cgroup2 cgroup2 "$mp"
  else mount -t cgroup -o "$opts" cgroup "$mp"; fi
done < "$STAGE/cgroups"
for c in PLACEHOLDERS; do
  [ -e "/sys/fs/cgroup/$c" ] && continue
  mkdir -p "/sys/fs/cgroup/$c" && mount -t tmpfs -o mode=755,size=64k tmpfs "/sys/fs/cgroup/$c"
done
mount -o bind,ro /proc/sys /proc/sys
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system /run/soltest
touch /run/soltest/console && mount --bind /run/soltest/console /dev/console
# /etc is a copy on this tmpfs: whatever the box makes there (/etc/sol when the host has none,
# systemd's ConfigurationDirectory=) stays in the box
mkdir /run/soltest/etc
cp -a /etc/. /run/soltest/etc/
mount --bind /run/soltest/etc /etc
mkdir -p /etc/sol
for d in /usr/lib/systemd/system /lib/systemd/system /etc/systemd/system /usr/lib/systemd/system-generators \
         /lib/systemd/system-generators /etc/systemd/system-generators /usr/lib/systemd/system-preset \
         /opt /var/lib /etc/sol; do
  if [ -d "$d" ] && ! mountpoint -q "$d"; then mount -t tmpfs -o mode=755 tmpfs "$d"; fi
done
cp "$STAGE/sol.toml" /etc/sol/sol.toml
chmod 600 /etc/sol/sol.toml
mkdir -p /opt/sol/bin /opt/sol/deps
cp -r "$STAGE/lib" /opt/sol/lib
mount --bind -o ro "$(cat "$STAGE/deps")" /opt/sol/deps
install -m 755 "$STAGE/sol" /opt/sol/bin/sol
cp -r "$STAGE/units/." /run/systemd/system/
exec env container=sol-test "$(cat "$STAGE/systemd")" --system --unit=soltest.target \
  --log-target=console --log-level=info
""".replace("PLACEHOLDERS", " ".join(f'"{c}"' for c in PLACEHOLDERS))

SHIM = """#!{python} -I
# sol as installed in the box: the package in /opt/sol/lib, its dependencies in /opt/sol/deps
import site
import sys

sys.path.insert(0, "/opt/sol/lib")
site.addsitedir("/opt/sol/deps")
from sol.cli import main

sys.exit(main())
"""

DROPIN = """[Service]
WatchdogSec={watchdog}
StandardOutput=append:/run/soltest/sol.log
StandardError=inherit
"""


@dataclass
class Box:
    stage: Path
    proc: subprocess.Popen[bytes]
    pid1: int
    groups: list[Path] = field(default_factory=list)

    # -- inside ----------------------------------------------------------------------
    def run(self, *argv: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", "-t", str(self.pid1), "-m", "-p", "-n", "-u", "-i", "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)

    def systemctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(
        self,
        unit: str,
        pred: Callable[[dict[str, str]], bool],
        timeout: float = 60.0,
        props: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Poll ``systemctl show`` until ``pred(properties)`` holds; the last properties."""
        wanted = ("ActiveState", "SubState", "Result", "NRestarts", "StatusText", *props)
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, *wanted)
            if pred(state) or time.monotonic() > deadline:
                return state
            time.sleep(0.2)

    def path(self, inside: str) -> Path:
        """A path of the box's mount namespace, seen from the host."""
        return Path(f"/proc/{self.pid1}/root") / inside.lstrip("/")

    def log(self) -> str:
        try:
            return self.path("/run/soltest/sol.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no daemon log: {exc})"

    def read(self, inside: str) -> str:
        """A file of the box (its own mounts: /run, /sys/fs/cgroup), read from the host."""
        return self.path(inside).read_text()

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> list[str]:
        """Kill the box (its PID 1 takes every process of it along) and remove its cgroups;
        what could not be removed (empty: all)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid1, signal.SIGKILL)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return remove_groups(self.groups)


def remove_groups(groups: list[Path], timeout: float = 20.0) -> list[str]:
    left: list[str] = []
    for top in groups:
        if not top.exists():
            continue
        deadline = time.monotonic() + timeout
        while True:
            dirs = [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top]
            errors = []
            for d in dirs:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:  # tasks still exiting (EBUSY)
                    errors.append(f"{d}: {exc}")
            if not errors:
                break
            if time.monotonic() > deadline:
                left += errors
                break
            time.sleep(0.2)
    return left


def stage_package(lib: Path) -> None:
    """Lay the package out as its wheel would (pyproject.toml's package-dir)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for src, dest in PACKAGE_DIRS.items():
        shutil.copytree(REPO / src, lib / dest, ignore=ignore, dirs_exist_ok=True)


def boot(stage: Path, config: str, *, watchdog: str = "4s", timeout: float = 60.0) -> Box:
    """Boot the box with ``config`` as /etc/sol/sol.toml; returns once systemd answers."""
    stage.mkdir(parents=True, exist_ok=True)
    mounts = cgroup_mounts()
    (stage / "cgroups").write_text(
        "".join(
            f"{mp} {fstype} {','.join(o for o in opts.split(',') if o not in ('rw', 'ro'))}\n"
            for mp, fstype, opts in mounts
        )
    )
    (stage / "sol.toml").write_text(config)
    (stage / "deps").write_text(sysconfig.get_paths()["purelib"])
    (stage / "systemd").write_text(str(systemd_binary()))
    (stage / "sol").write_text(SHIM.format(python=visible_python()))
    (stage / "inner.sh").write_text(INNER)
    stage_package(stage / "lib")
    units = stage / "units"
    (units / "sol.service.d").mkdir(parents=True)
    shutil.copy(REPO / "systemd" / "sol.service", units / "sol.service")
    (units / "sol.service.d" / "test.conf").write_text(DROPIN.format(watchdog=watchdog))
    for t in EMPTY_TARGETS:
        (units / f"{t}.target").write_text(f"[Unit]\nDescription={t} (empty: sol systemd test box)\n")
    (units / "soltest.target").write_text("[Unit]\nDescription=sol systemd test box\nWants=sol.service\n")

    name = f"sol-systemd-test-{uuid.uuid4().hex[:8]}"
    groups: list[Path] = []
    procs: list[str] = []
    try:
        for mp, fstype, opts in mounts:
            parent = Path(mp + _own_cgroup(mp, fstype, opts).rstrip("/"))
            g = parent / name
            g.mkdir()
            groups.append(g)
            if (g / "cpuset.cpus").exists() and not (g / "cpuset.cpus").read_text().strip():
                (g / "cpuset.cpus").write_text((parent / "cpuset.cpus").read_text())
                (g / "cpuset.mems").write_text((parent / "cpuset.mems").read_text())
            procs.append(str(g / "cgroup.procs"))
        log = open(stage / "box.log", "wb")  # noqa: SIM115 - handed to the child
        enter = (
            'for f in "${@:2}"; do echo $$ > "$f"; done; exec unshare --cgroup --pid --fork --mount '
            '--mount-proc --uts --ipc --net --propagation private bash "$1/inner.sh" "$1"'
        )
        proc = subprocess.Popen(
            ["bash", "-c", enter, "box", str(stage), *procs],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
    except BaseException:
        remove_groups(groups)
        raise
    deadline = time.monotonic() + timeout
    pid1 = 0
    while not pid1:
        if proc.poll() is not None or time.monotonic() > deadline:
            remove_groups(groups)
            raise RuntimeError(f"the box did not start: {_tail(stage / 'box.log')}")
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            pid1 = int(children[0])
        else:
            time.sleep(0.05)
    box = Box(stage, proc, pid1, groups)
    while True:  # the manager answers on its private socket once it is up
        r = box.run("systemctl", "is-system-running", timeout=10)
        if re.match(r"(running|degraded|starting)", r.stdout.strip()):
            return box
        if proc.poll() is not None or time.monotonic() > deadline:
            left = box.close()
            raise RuntimeError(
                f"systemd did not come up in the box ({r.stdout.strip()} {r.stderr.strip()}): "
                f"{_tail(stage / 'box.log')} {left}"
            )
        time.sleep(0.2)


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError as exc:
        return f"({exc})"
