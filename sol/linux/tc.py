"""Network bandwidth classes for agents: HTB classes on an interface, per owner's writer."""

from __future__ import annotations

import json
from collections.abc import Callable

from sol.actuators.base import HostWriter, WriteResult
from sol.actuators.tc import HtbClassKnob, HtbRootKnob, parse_classid
from sol.linux.gate import check_writer

__all__ = ["LinuxTcActuators"]


class LinuxTcActuators:
    """``set_class``/``remove_class`` of HTB classes under root ``1:`` (see :mod:`sol.actuators.tc`)."""

    def __init__(self, writer: HostWriter, now: Callable[[], float]) -> None:
        self.writer = writer
        self.now = now

    def set_class(
        self, ifname: str, classid: str, rate_bps: int, ceil_bps: int | None = None, *, netns: str = ""
    ) -> list[WriteResult]:
        """Guarantee ``rate_bps`` (bits/s) to class ``classid``, borrowing up to ``ceil_bps``."""
        parse_classid(classid)
        ceil = rate_bps if ceil_bps is None else ceil_bps
        for name, value in (("rate_bps", rate_bps), ("ceil_bps", ceil)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive number of bits/s, got {value!r}")
        if ceil < rate_bps:
            raise ValueError(f"ceil_bps {ceil} must be >= rate_bps {rate_bps}")
        knob = HtbClassKnob(ifname, classid, netns)
        check_writer(self.writer, knob.target)
        now = self.now()
        results = [self.writer.write(HtbRootKnob(ifname, netns), "htb", now=now)]
        if self.writer.dry_run and results[0].written is not None:
            return results  # the root is not there: the class cannot be read or written yet
        spec = json.dumps({"rate_bps": rate_bps, "ceil_bps": ceil}, sort_keys=True)
        results.append(self.writer.write(knob, spec, now=now))
        return results

    def remove_class(self, ifname: str, classid: str, *, netns: str = "") -> WriteResult:
        return self.writer.write(HtbClassKnob(ifname, classid, netns), "absent", now=self.now())
