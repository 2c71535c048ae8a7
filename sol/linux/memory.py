from __future__ import annotations

from typing import Any

from sol.linux.errors import Unsupported


def build_memory(backend: Any) -> None:
    raise Unsupported("memory", "not implemented yet")
