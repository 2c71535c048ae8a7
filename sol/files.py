"""Reading the files an operator names (config, undo journal, traces) without trusting them.

A path given on the command line or in a config may be a symlink to ``/dev/zero`` (an endless
read), a FIFO (a read that never returns), a directory, or a file far larger than anything sol
writes. :func:`open_regular` opens it without blocking, refuses anything but a regular file and
checks its size against a cap *before* reading, so a hostile or mistaken path is a clear error
naming the path, never a hang or an OOM kill.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.toml").write_text("x = 1\\n")
>>> read_regular(d / "a.toml", max_bytes=1024, what="config")
b'x = 1\\n'
>>> read_regular(pathlib.Path("/dev/zero"), max_bytes=1024, what="config")
Traceback (most recent call last):
...
sol.files.UntrustedFileError: config /dev/zero is not a regular file (a character device); refusing to read it
>>> read_regular(d / "a.toml", max_bytes=3, what="config")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sol.files.UntrustedFileError: config ... is 6 bytes, more than the 3 a config may be; refusing to read it
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["UntrustedFileError", "open_regular", "ownership_problems", "read_regular"]

#: What a config file may weigh: the embedded default with every key explained is ~10 KB.
CONFIG_MAX_BYTES = 1 << 20


class UntrustedFileError(OSError):
    """The path is not a regular file, or is larger than its cap; the message names both."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path, *, max_bytes: int | None, what: str) -> int:
    """An ``O_RDONLY`` descriptor on ``path`` (symlinks followed) if it is a regular file
    no larger than ``max_bytes``; else :class:`UntrustedFileError`. ``OSError`` as the kernel
    gives it when the path cannot be opened at all (``ENOENT``, ``EACCES``, ...)."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it does nothing to regular files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFileError(
                f"{what} {path} is not a regular file ({_kind(st.st_mode)}); refusing to read it"
            )
        if max_bytes is not None and st.st_size > max_bytes:
            raise UntrustedFileError(
                f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} a {what} may be; "
                "refusing to read it"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, *, max_bytes: int, what: str) -> bytes:
    """The whole of ``path`` after :func:`open_regular`'s checks, never more than ``max_bytes``
    (a file that grows while it is read is cut off with an error, not read without end)."""
    fd = open_regular(path, max_bytes=max_bytes, what=what)
    try:
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise UntrustedFileError(
                    f"{what} {path} grew past {max_bytes} bytes while being read; refusing it"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def ownership_problems(path: Path, *, what: str, euid: int | None = None) -> list[str]:
    """Why a root process must not trust ``path`` (sshd ``StrictModes``); empty when fine.

    Only checked when running as root: the file must be owned by root and writable by no one
    else (no world write; group write only for group root), and so must every directory above
    it (a world-writable directory is fine only with the sticky bit, as /tmp). Otherwise
    whoever can edit it, or swap it by renaming in a directory they can write, can make a root
    process write what they like where they like. A missing path has no problems here: the
    caller reports it.
    """
    euid = os.geteuid() if euid is None else euid
    if euid != 0:
        return []
    problems: list[str] = []
    fix = f"chown root:root {path} && chmod 0600 {path}"
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != 0:
            problems.append(f"{what} {path} is owned by uid {st.st_uid}, not root ({fix})")
        if mode & 0o002:
            problems.append(f"{what} {path} is world-writable (mode {mode:04o}) ({fix})")
        elif mode & 0o020 and st.st_gid != 0:
            problems.append(f"{what} {path} is writable by group {st.st_gid} (mode {mode:04o}) ({fix})")
    chain = set(Path(path).absolute().parents) | set(Path(path).resolve().parents)
    for d in sorted(chain, key=lambda p: len(p.parts)):
        try:
            dst = os.stat(d)
        except OSError:
            continue
        dmode = stat.S_IMODE(dst.st_mode)
        sticky = bool(dmode & stat.S_ISVTX)
        if dst.st_uid != 0:
            problems.append(f"directory {d} (above {path}) is owned by uid {dst.st_uid}, not root")
        elif dmode & 0o002 and not sticky:
            problems.append(f"directory {d} (above {path}) is world-writable (mode {dmode:04o})")
        elif dmode & 0o020 and dst.st_gid != 0 and not sticky:
            problems.append(f"directory {d} (above {path}) is writable by group {dst.st_gid}")
    return problems
