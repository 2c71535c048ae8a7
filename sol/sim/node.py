"""``SimNode``: the simulated node backend (``sol.backend.Backend``)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sol.backend import BackendBase, Feature
from sol.facilities import FACILITY_NAMES
from sol.sim._common import FacilityBase, FloatArray
from sol.sim.cpu import CpuFacility
from sol.sim.faas import FaasFacility
from sol.sim.gpu import GpuFacility
from sol.sim.memory import MemoryFacility, MultiMemoryFacility

__all__ = ["FACILITY_NAMES", "SimNode"]


class SimNode(BackendBase):
    """A simulated node: up to four facilities behind the backend interface.

    ``advance(now)`` only records the time and, every ``flush_every`` simulated seconds,
    brings the facilities up to it; a sensor read or actuator write brings its facility up to
    the node's time first. The models integrate exactly over any gap, so how often the node is
    advanced changes the cost, not the result. All state is guarded by one lock: the live
    executor advances from a ticker thread while agents read and write.
    """

    name = "sim"

    def __init__(
        self,
        *,
        clock_start: float = 0.0,
        label: str = "sim",
        flush_every: float = 60.0,
    ) -> None:
        super().__init__()
        self.label = label
        self.clock_start = float(clock_start)
        self.flush_every = float(flush_every)
        self.lock = threading.RLock()
        self._now = self.clock_start
        self._flushed = self.clock_start
        self._closed = False
        self._facilities: dict[str, FacilityBase] = {}
        self.features = [
            Feature(n, False, f"this simulated node ({label}) has no {n} facility") for n in FACILITY_NAMES
        ]

    # -- assembly (scenarios call these before handing the node out) -------------------
    def now(self) -> float:
        return self._now

    def attach(
        self, facility: CpuFacility | MemoryFacility | MultiMemoryFacility | GpuFacility | FaasFacility
    ) -> None:
        name = facility.name
        if name not in FACILITY_NAMES:
            raise ValueError(f"unknown facility {name!r}; known: {', '.join(FACILITY_NAMES)}")
        if name in self._facilities:
            raise ValueError(f"the node already has a {name} facility")
        self._facilities[name] = facility
        setattr(self.sensors, name, facility.sensors)
        setattr(self.actuators, name, facility.actuators)
        self.features = [f for f in self.features if f.name != name]
        self.features.append(Feature(name, True, f"simulated {type(facility).__name__}"))

    @property
    def facilities(self) -> Mapping[str, Any]:
        return dict(self._facilities)

    # -- Backend -----------------------------------------------------------------------
    def advance(self, now: float) -> None:
        with self.lock:
            if self._closed:
                raise RuntimeError("advance() on a closed SimNode")
            if now <= self._now:
                return
            self._now = float(now)
            if self._now - self._flushed >= self.flush_every:
                for f in self._facilities.values():
                    f.sync(self._now)
                self._flushed = self._now

    def sync(self) -> None:
        """Bring every facility up to the node's time."""
        with self.lock:
            for f in self._facilities.values():
                f.sync(self._now)
            self._flushed = self._now

    def ground_truth(self) -> Mapping[str, float]:
        with self.lock:
            self.sync()
            out: dict[str, float] = {"sim.duration_s": self._now - self.clock_start}
            for name in FACILITY_NAMES:
                f = self._facilities.get(name)
                if f is not None:
                    out.update(f.ground_truth())
            return out

    def series(self) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Time series for plots: ``name -> (t, mean over each period)``, clock seconds."""
        with self.lock:
            self.sync()
            out: dict[str, tuple[FloatArray, FloatArray]] = {}
            for name in FACILITY_NAMES:
                f = self._facilities.get(name)
                if f is not None:
                    out.update(f.series())
            return out

    def close(self) -> None:
        with self.lock:
            self._closed = True

    def __repr__(self) -> str:
        return f"<SimNode {self.label!r} t={self._now:.3f} facilities={list(self._facilities)}>"
