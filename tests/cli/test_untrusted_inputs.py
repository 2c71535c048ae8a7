"""What an operator names on the command line may be anything: a symlink to /dev/zero, a FIFO,
a file far larger than any config or trace. ``sol`` must refuse it at once with a message
naming the path, never read it for ever or until the OOM killer comes.

Each command runs in a subprocess under a timeout and an address-space limit, so a regression
fails this test instead of hanging CI or exhausting the machine.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: seconds a refusal may take: an interpreter start and an import of the simulator, with room
TIMEOUT_S = 60
#: what the command may map: far more than a refusal needs, far less than reading /dev/zero
ADDRESS_SPACE = 4 << 30


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


#: ``sol restore`` with an unreadable config falls back to the default journal,
#: /var/lib/sol/undo.journal: as root, the command runs where /var/lib is an empty tmpfs of
#: its own mount namespace, so the test can never restore the real host's records
PRIVATE_VAR_LIB = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount -t tmpfs tmpfs /var/lib && exec "$@"',
    "sh",
]


def sol(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SOL_CONFIG": ""}
    prefix: list[str] = []
    if argv[0] == "restore" and os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip(
                "as root, sol restore would act on the host's default journal (no unshare to hide it)"
            )
        prefix = PRIVATE_VAR_LIB
    return subprocess.run(
        [*prefix, sys.executable, "-m", "sol", *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        env=env,
        preexec_fn=_limit,
    )


def zero_link(d: Path) -> Path:
    link = d / "evil.csv"
    link.symlink_to("/dev/zero")
    return link


def fifo(d: Path) -> Path:
    path = d / "evil.csv"
    os.mkfifo(path)
    return path


def sparse(d: Path, size: int) -> Path:
    path = d / "evil.csv"
    with path.open("wb") as fh:
        fh.truncate(size)  # a size without the writes: the test costs no disk
    return path


MAKERS: dict[str, Callable[[Path], Path]] = {"dev-zero-symlink": zero_link, "fifo": fifo}


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize(
    ("argv", "what"),
    [
        pytest.param(("check-config", "{}"), "config", id="check-config"),
        pytest.param(("sim", "--trace", "{}", "--duration", "1m", "--quiet"), "trace", id="sim-trace"),
        pytest.param(("restore", "--config", "{}"), "config", id="restore-config"),
    ],
)
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, kind: str, argv: tuple[str, ...], what: str
) -> None:
    path = MAKERS[kind](tmp_path)
    proc = sol(*(a.format(path) for a in argv), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    if argv[0] == "restore":
        # as root it may refuse the path before reading it (a world-writable /dev/zero), and
        # it goes on with the default journal, as ExecStopPost= must: refused is what counts
        assert f"config {path}" in out and "refusing" in out, out
    else:
        assert f"{what} {path} is not a regular file" in out, out
        assert proc.returncode == 1, out


def test_a_trace_larger_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from sol.sim.traces import TRACE_MAX_BYTES

    path = sparse(tmp_path, TRACE_MAX_BYTES + 1)
    proc = sol("sim", "--trace", str(path), "--duration", "1m", "--quiet", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"trace {path} is {TRACE_MAX_BYTES + 1} bytes, more than the {TRACE_MAX_BYTES}" in out, out


def test_a_config_larger_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    from sol.files import CONFIG_MAX_BYTES

    path = sparse(tmp_path, 64 << 30)  # 64 GiB of NULs, none of them on disk
    proc = sol("check-config", str(path), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"more than the {CONFIG_MAX_BYTES} a config may be" in out, out
