"""Logging setup: structlog JSON lines by default, readable console output on a terminal.

Library code only ever calls ``structlog.get_logger()``; the CLI configures once. A simulation
passes its clock: events are then stamped with simulated time, which is when they happened
on the simulated node (the wall clock says only how fast the simulation ran).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

Format = Literal["auto", "json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(
    fmt: Format = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> None:
    """``clock``: stamp events with its seconds (a simulation's virtual time, see
    :func:`sim_timestamp`) instead of the wall clock's UTC time."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    stamper: structlog.types.Processor = (
        structlog.processors.TimeStamper(fmt="iso", utc=True) if clock is None else _SimTimeStamper(clock)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def sim_timestamp(seconds: float) -> str:
    """Simulated time since the start of a run, as an event's ``timestamp``.

    >>> sim_timestamp(312.3), sim_timestamp(90061.5)
    ('sim+00:05:12.300', 'sim+1d01:01:01.500')
    """
    ms = round(max(0.0, seconds) * 1000)
    days, ms = divmod(ms, 86_400_000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"sim+{f'{days}d' if days else ''}{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


class _SimTimeStamper:
    """A structlog processor: ``timestamp`` from a simulation's clock, not the wall's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["timestamp"] = sim_timestamp(self.clock())
        return event_dict


def get_logger(**bind: object) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger("sol").bind(**bind)  # type: ignore[no-any-return]
