"""Page cache on real files: mincore residency, fadvise WILLNEED/DONTNEED, undo by advice."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sol.actuators.base import HostWriter
from sol.actuators.pagecache import PAGE_SIZE, PageCacheKnob, advise, copy_into_cache, residency
from sol.actuators.restorers import default_restorers
from sol.safety.journal import UndoJournal

SIZE = 8 << 20


def clean_file(path: Path, size: int = SIZE) -> Path:
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())  # clean pages: DONTNEED can drop them
    return path


def wait_resident(path: Path, want: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        got = residency(path).resident_bytes
        if got >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def test_dontneed_drops_and_willneed_reads_a_real_file(tmp_path: Path) -> None:
    path = clean_file(tmp_path / "blob")
    advise(path, os.POSIX_FADV_DONTNEED)
    assert residency(path) == residency(path)  # mapping to measure reads nothing in
    cold = residency(path)
    if cold.resident_bytes:
        pytest.skip(f"this filesystem keeps pages after DONTNEED ({cold.resident_bytes} bytes)")
    assert cold.size_bytes == SIZE
    advise(path, os.POSIX_FADV_WILLNEED)
    assert wait_resident(path, SIZE) == SIZE


def test_empty_and_odd_sized_files(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert residency(tmp_path / "empty").size_bytes == 0
    odd = clean_file(tmp_path / "odd", PAGE_SIZE * 3 + 5)
    with open(odd, "rb") as f:
        f.read()
    assert residency(odd).resident_bytes == PAGE_SIZE * 3 + 5  # capped at the size


def test_missing_file_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        residency(tmp_path / "missing")


def test_prewarm_is_journaled_and_restore_drops_it_again(tmp_path: Path) -> None:
    path = clean_file(tmp_path / "pkg.zip")
    advise(path, os.POSIX_FADV_DONTNEED)
    if residency(path).resident_bytes:
        pytest.skip("this filesystem keeps pages after DONTNEED")
    with UndoJournal.open(tmp_path / "undo.journal", fsync=False) as journal:
        result = HostWriter(journal=journal, owner="faas").write(PageCacheKnob(path), "willneed")
        assert result.applied and result.written == "willneed"
        (record,) = journal.open_records()
        assert (record.kind, record.before) == ("pagecache", f"0/{SIZE}")
        assert wait_resident(path, SIZE) == SIZE
        assert journal.restore(default_restorers()).ok
    assert residency(path).resident_bytes == 0


def test_advice_already_true_is_not_written(tmp_path: Path) -> None:
    path = clean_file(tmp_path / "blob")
    advise(path, os.POSIX_FADV_DONTNEED)
    if residency(path).resident_bytes:
        pytest.skip("this filesystem keeps pages after DONTNEED")
    result = HostWriter(journal=None, owner="faas", dry_run=True).write(PageCacheKnob(path), "dontneed")
    assert result.reason == "unchanged"


def test_copy_into_cache_is_atomic_and_skips_equal_copies(tmp_path: Path) -> None:
    origin = clean_file(tmp_path / "origin.bin", 1 << 16)
    local = tmp_path / "cache" / "sub" / "origin.bin"
    assert copy_into_cache(origin, local) and local.read_bytes() == origin.read_bytes()
    assert not copy_into_cache(origin, local)
    assert not list(local.parent.glob(".*sol-tmp*"))
