"""``sol data fetch`` from a source that sends without end stops at the expected size."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

#: what the fetch may write: a regression is killed (SIGXFSZ) instead of filling the disk
FILE_SIZE_LIMIT = 64 << 20

FETCH = """
import io, sys
from pathlib import Path
from sol.sim.datasets import DataError, DataFile, fetch_file
f = DataFile("file:///dev/zero", "zeros.csv", size=1000)
try:
    fetch_file(f, f.url, Path(sys.argv[1]), io.StringIO())
except DataError as e:
    print(e)
    sys.exit(1)
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def test_an_endless_download_stops_past_the_published_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FETCH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "zeros.csv: file:///dev/zero sent more than 1000 bytes (its published size); stopped" in proc.stdout
    )
    assert list(tmp_path.iterdir()) == []  # the partial file is removed
