from __future__ import annotations

from typing import Any

from sol.linux.errors import Unsupported


def build_faas(backend: Any) -> None:
    raise Unsupported("faas", "not implemented yet")
