from __future__ import annotations

from typing import Any

from sol.linux.errors import Unsupported


def build_gpu(backend: Any) -> None:
    raise Unsupported("gpu", "not implemented yet")
