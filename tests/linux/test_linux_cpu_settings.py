"""[linux] settings only the host can judge: checked when the CPU facility is set up.

Config loading checks what it can without the host (``reserved_cores`` >= 0, a relative,
normalised ``harvest_cgroup``: tests/test_config.py); whether a reserved core exists is a
question for the host, asked here of a fake 4-core tree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import structlog
from linux_fakes import FakeProc, FakeV1, StepClock

from sol.kernel.cgroupfs import CgroupLayout
from sol.linux.cpu import CpuHost, CpuSettings


@pytest.mark.parametrize(
    ("reserved", "unknown"),
    [pytest.param((99,), "[99]", id="far-past-the-last"), pytest.param((0, 4, 7), "[4, 7]", id="some-past")],
)
def test_reserved_cores_the_host_lacks_are_refused_naming_them(
    v1: FakeV1, proc: FakeProc, fake_sys: Path, clock: StepClock, reserved: tuple[int, ...], unknown: str
) -> None:
    with pytest.raises(
        ValueError, match=rf"linux\.cpu\.reserved_cores {re.escape(unknown)} are not CPUs of this host"
    ):
        CpuHost(
            CgroupLayout.detect(v1.root),
            proc_root=proc.root,
            sys_root=fake_sys,
            clock=clock.now,
            settings=CpuSettings(reserved_cores=reserved),
            log=structlog.get_logger("test"),
        )
