"""``sol install``: put the systemd unit, the tmpfiles snippet and an example config in place.

The package itself is installed by pip (``make install`` makes a virtual environment in
``/opt/sol`` and runs this from it). What this adds:

=====================================  ======  ==============================================
file                                   mode    notes
=====================================  ======  ==============================================
/etc/systemd/system/sol.service        0644    ``ExecStart=`` etc. point at this ``sol``
/etc/tmpfiles.d/sol.conf               0644    /var/lib/sol (0700), /run/sol (0755)
/etc/sol/sol.toml.example              0644    always refreshed
/etc/sol/sol.toml                      0600    only if absent: an operator's file is never touched
=====================================  ======  ==============================================

With ``--root DIR`` everything goes under DIR (packaging, tests) and nothing is run; on a live
system (``/``) it then runs ``systemd-tmpfiles --create`` and ``systemctl daemon-reload``
where systemd is running. It never enables or starts the service: read the config first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

__all__ = ["PLACEHOLDER_BIN", "find_units", "install_command", "render_unit"]

#: The executable path written in systemd/sol.service; replaced by the installed one.
PLACEHOLDER_BIN = "/opt/sol/bin/sol"
#: Directories ProtectHome= hides from the service: an executable there cannot start.
_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))


def find_units(explicit: Path | None = None) -> Path | None:
    """The ``systemd/`` folder of the source tree this ``sol`` was installed from."""
    if explicit is not None:
        return explicit
    here = Path(__file__).resolve().parent.parent / "systemd"
    return here if (here / "sol.service").is_file() else None


def default_bin() -> Path:
    """The ``sol`` console script next to this interpreter (a venv's ``bin/``)."""
    return Path(sys.executable).parent / "sol"


def render_unit(text: str, sol_bin: Path) -> str:
    return text.replace(PLACEHOLDER_BIN, str(sol_bin))


def _write(path: Path, data: str, mode: int, *, dry_run: bool, out: TextIO, what: str) -> None:
    print(f"{'would write' if dry_run else 'write'}  {path}  ({mode:04o}, {what})", file=out)
    if dry_run:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    # temp file + rename: a reader (systemd) never sees half a unit
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_command(
    *,
    root: Path,
    units: Path | None,
    sol_bin: Path | None,
    dry_run: bool,
    force: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    source = find_units(units)
    if source is None:
        print(
            "sol install: cannot find the systemd/ folder of the source tree; "
            "run it from a checkout (`make install`) or pass --units DIR",
            file=err,
        )
        return 1
    missing = [
        n for n in ("sol.service", "sol.tmpfiles.conf", "sol.toml.example") if not (source / n).is_file()
    ]
    if missing:
        print(f"sol install: {source} lacks {', '.join(missing)}", file=err)
        return 1
    exe = Path(sol_bin) if sol_bin is not None else default_bin()
    if not exe.is_absolute():
        print(f"sol install: --bin must be an absolute path, got {exe}", file=err)
        return 1
    problems = []
    if not (root / exe.relative_to("/")).exists() and not exe.exists():
        problems.append(f"{exe} does not exist")
    hidden = [d for d in _HIDDEN if exe.is_relative_to(d)]
    if hidden:
        problems.append(f"{exe} is under {hidden[0]}, which the unit hides (ProtectHome=yes)")
    if problems and not force:
        for p in problems:
            print(f"sol install: the unit could not start: {p}", file=err)
        print(
            "sol install: install the package with `make install` (into /opt/sol), or pass --force", file=err
        )
        return 1
    if os.geteuid() != 0 and root == Path("/") and not dry_run:
        print("sol install: writing /etc needs root (or use --root DIR / --dry-run)", file=err)
        return 1

    etc = root / "etc"
    unit = render_unit((source / "sol.service").read_text(encoding="utf-8"), exe)
    _write(etc / "systemd/system/sol.service", unit, 0o644, dry_run=dry_run, out=out, what="systemd unit")
    tmpfiles = (source / "sol.tmpfiles.conf").read_text(encoding="utf-8")
    _write(etc / "tmpfiles.d/sol.conf", tmpfiles, 0o644, dry_run=dry_run, out=out, what="tmpfiles.d")
    example = (source / "sol.toml.example").read_text(encoding="utf-8")
    _write(etc / "sol/sol.toml.example", example, 0o644, dry_run=dry_run, out=out, what="example config")
    config = etc / "sol/sol.toml"
    if config.exists():
        print(f"keep   {config}  (exists; compare with sol.toml.example)", file=out)
    else:
        _write(config, example, 0o600, dry_run=dry_run, out=out, what="config, from the example")

    if root == Path("/") and not dry_run and Path("/run/systemd/system").is_dir():
        for cmd in (
            ["systemd-tmpfiles", "--create", str(etc / "tmpfiles.d/sol.conf")],
            ["systemctl", "daemon-reload"],
        ):
            if shutil.which(cmd[0]) is None:
                continue
            print(f"run    {' '.join(cmd)}", file=out)
            done = subprocess.run(cmd, check=False)
            if done.returncode != 0:
                print(f"sol install: {' '.join(cmd)} exited {done.returncode}", file=err)
                return 1
    print(
        "next: edit /etc/sol/sol.toml (agents start in dry-run), `sol check-config /etc/sol/sol.toml`, "
        "then `systemctl enable --now sol`; docs/operating.md has the rest",
        file=out,
    )
    return 0
