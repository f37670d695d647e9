"""Device drivers: one module per serial device protocol, bytes to samples.

``DRIVERS`` maps the protocol name used in a feed's config (``protocol =
"masimo_ascii"``) to its driver class. Adding a device is adding one module
and one line here. Every driver is built the same way::

    driver = DRIVERS[name](room=..., feed=..., origin=DataOrigin.LIVE, clock=clock)
    samples = driver.feed(data)      # never raises; see driver.counters
"""

from __future__ import annotations

from typing import Final

from roommon.drivers.base import Driver, DriverCounters, DriverSample, LineDriver
from roommon.drivers.masimo import MasimoAsciiDriver
from roommon.drivers.nonin import NoninFormat2Driver
from roommon.drivers.roommon_line import RoommonLineDriver

DRIVERS: Final[dict[str, type[Driver]]] = {
    "masimo_ascii": MasimoAsciiDriver,
    "nonin_fmt2": NoninFormat2Driver,
    "roommon_line": RoommonLineDriver,
}

__all__ = [
    "DRIVERS",
    "Driver",
    "DriverCounters",
    "DriverSample",
    "LineDriver",
    "MasimoAsciiDriver",
    "NoninFormat2Driver",
    "RoommonLineDriver",
]
