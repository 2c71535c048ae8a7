"""Page-cache residency of files: ``mincore(2)`` to measure, ``posix_fadvise(2)`` to act.

``mincore`` (man 2 mincore) reports, for a mapping, which pages are resident in memory; on a
``MAP_SHARED`` mapping of a file that is the file's page-cache residency, and mapping it
reads nothing. ``POSIX_FADV_WILLNEED`` starts asynchronous read-ahead of the range;
``POSIX_FADV_DONTNEED`` drops its clean, unmapped pages (dirty or mapped pages stay). Both
are advisory: the residency sensor, not the call, says what is in memory.

Undo: residency is performance-only state. The knob kind ``pagecache`` records whether the
file was cold or warm before sol's first advice, and the restorer gives the opposite advice
back (a file sol pre-warmed is dropped again on restore), best effort.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sol.actuators.restorers import HostRoots, Restorer
from sol.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")  # only residency scans use it: not imported at every daemon start

__all__ = ["PageCacheKnob", "Residency", "advise", "copy_into_cache", "residency", "restore_advice"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: bytes mapped per mincore call: bounds the address space and the status vector we hold
WINDOW = 1 << 30
_PROT_READ, _MAP_SHARED = 1, 1
_MAP_FAILED = ctypes.c_void_p(-1).value


@dataclass(frozen=True, slots=True)
class Residency:
    resident_bytes: int
    size_bytes: int


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.mincore = libc.mincore
        self.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]


_LIBC: _Libc | None = None


def _libc() -> _Libc:
    global _LIBC
    if _LIBC is None:
        _LIBC = _Libc()
    return _LIBC


def residency(path: Path | str) -> Residency:
    """Bytes of ``path`` in the page cache now (``OSError`` if it cannot be opened/mapped)."""
    lib = _libc()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        resident_pages = 0
        for offset in range(0, size, WINDOW):
            length = min(WINDOW, size - offset)
            addr = lib.mmap(None, length, _PROT_READ, _MAP_SHARED, fd, offset)
            if addr is None or addr == _MAP_FAILED:
                err = ctypes.get_errno()
                raise OSError(err, f"mmap {path}: {os.strerror(err)}", str(path))
            try:
                pages = (length + PAGE_SIZE - 1) // PAGE_SIZE
                vec = np.zeros(pages, dtype=np.uint8)
                if lib.mincore(addr, length, vec.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte))) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"mincore {path}: {os.strerror(err)}", str(path))
                resident_pages += int(np.count_nonzero(vec & 1))
            finally:
                lib.munmap(addr, length)
    finally:
        os.close(fd)
    return Residency(min(size, resident_pages * PAGE_SIZE), size)


def advise(path: Path | str, advice: int) -> None:
    """``posix_fadvise(fd, 0, 0, advice)``: the whole file."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, advice)
    finally:
        os.close(fd)


def copy_into_cache(origin: Path, local: Path) -> bool:
    """Copy ``origin`` to ``local`` unless an equal-sized copy is there; atomic (temp + rename).

    Returns whether a copy was made. The cache directory is sol's own: no undo is kept for
    it (the objects are copies; deleting the directory loses nothing).
    """
    try:
        if local.stat().st_size == origin.stat().st_size:
            return False
    except FileNotFoundError:
        pass
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.sol-tmp-{os.getpid()}")
    try:
        shutil.copyfile(origin, tmp)
        # fsync: the copy must be whole after a crash, and only clean pages can be evicted
        # (DONTNEED starts writeback of dirty ones but cannot drop them yet).
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, local)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


class PageCacheKnob:
    """A file's residency as a knob (kind ``pagecache``): ``read`` -> ``"RESIDENT/SIZE"``,
    ``write("willneed" | "dontneed")`` -> ``posix_fadvise``.

    Before a write, ``matches`` says whether the advice is moot (already all warm / all cold),
    so the writer skips it. After it, read-ahead is still running (it is asynchronous), so
    the read-back is recorded, not required to match: the residency sensor verifies later.
    """

    kind = "pagecache"

    def __init__(self, path: Path, origin: Path | None = None) -> None:
        self.path = Path(path)
        self.origin = origin
        self.copied = False
        self.written = False

    @property
    def target(self) -> str:
        return str(self.path)

    def read(self) -> str:
        try:
            r = residency(self.path)
        except FileNotFoundError:
            if self.origin is None:
                raise
            return f"0/{self.origin.stat().st_size}"  # not in the local cache yet
        return f"{r.resident_bytes}/{r.size_bytes}"

    def write(self, raw: str) -> None:
        if raw == "willneed":
            if self.origin is not None:
                self.copied = copy_into_cache(self.origin, self.path)
            advise(self.path, os.POSIX_FADV_WILLNEED)
        elif raw == "dontneed":
            if self.path.exists():
                advise(self.path, os.POSIX_FADV_DONTNEED)
        else:
            raise OSError(errno.EINVAL, f"page-cache advice must be willneed or dontneed, got {raw!r}")
        self.written = True

    def matches(self, written: str, readback: str) -> bool:
        if self.written:
            return True
        resident, _, size = readback.partition("/")
        if written == "willneed":
            return int(size) > 0 and int(resident) >= int(size)
        return int(resident) == 0


def restore_advice(target: str, before: Any) -> None:
    """Give back the opposite advice: a file that was cold is dropped, one that was warm is read."""
    resident, _, size = str(before).partition("/")
    path = Path(target)
    if not path.exists():
        return
    if int(resident) == 0:
        advise(path, os.POSIX_FADV_DONTNEED)
    elif int(resident) >= int(size):
        advise(path, os.POSIX_FADV_WILLNEED)


def restorers(roots: HostRoots) -> dict[str, Restorer]:
    """The knob kinds this module defines, with their restorers."""
    return {"pagecache": restore_advice}
