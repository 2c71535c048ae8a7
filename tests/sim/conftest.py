from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data() -> Path:
    env = os.environ.get("SOL_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    d = shared_data()
    if not d.is_dir():
        pytest.skip(f"public trace samples not found at {d} (set SOL_SHARED_DATA)")
    return d
