"""A knob that is one text file: a sysfs / cgroupfs / procfs attribute, or a plain file.

Kernel attribute semantics, kept for plain files too:

- a write never creates the file: a missing knob is ``ENOENT`` (a cgroup removed, a controller
  not enabled), never a new regular file that silently shadows nothing;
- the value goes out in one ``write(2)``: kernel attribute handlers parse the buffer of a
  single write, so a split write would be misparsed. A short write is an error;
- the file is opened ``O_TRUNC`` (what ``echo v > file`` does): the kernel ignores it on
  attributes, and a plain file then holds exactly the new text.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "cpu.shares"
>>> _ = p.write_text("1024\\n")
>>> knob = FileKnob(p)
>>> knob.read()
'1024\\n'
>>> knob.write("2048")
>>> knob.matches("2048", knob.read())
True
>>> FileKnob(p.with_name("missing")).write("1")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
FileNotFoundError: [Errno 2] No such file or directory: '...missing'
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileKnob", "read_text", "write_existing"]

# Kernel attributes are at most a page; plain files we manage are small state files.
_READ_CHUNK = 1 << 16


def read_text(path: Path | str) -> str:
    """The whole content of ``path`` as text (UTF-8; undecodable bytes kept as surrogates)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, _READ_CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def write_existing(path: Path | str, text: str) -> None:
    """Write ``text`` to the existing file ``path`` in one ``write(2)``; never create it.

    Raises ``OSError`` with the kernel's errno: ``ENOENT`` if the file is missing, ``EINVAL``
    if a kernel attribute refuses the value, ``EIO`` on a short write, ...
    """
    data = text.encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes", str(path))
    finally:
        os.close(fd)


class FileKnob:
    """One text file as a knob: ``read``/``write``/``matches`` for :class:`HostWriter`.

    ``normalise`` maps a value to the form two values are compared in after a write (the
    kernel may reformat: cpuset ``"0,1"`` reads back as ``"0-1"``); default: strip whitespace.
    ``kind`` names the restorer that puts a before-image back (``"file"``: see
    :mod:`sol.actuators.restorers`).
    """

    def __init__(
        self,
        path: Path,
        *,
        kind: str = "file",
        normalise: Callable[[str], str] = str.strip,
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        self.normalise = normalise

    @property
    def target(self) -> str:
        return str(self.path)

    def read(self) -> str:
        return read_text(self.path)

    def write(self, raw: str) -> None:
        write_existing(self.path, raw)

    def matches(self, written: str, readback: str) -> bool:
        return self.normalise(written) == self.normalise(readback)

    def __repr__(self) -> str:
        return f"FileKnob({str(self.path)!r}, kind={self.kind!r})"
