"""The words every package shares, defined once: device kinds, key-point categories, ids, the coordinate box.

DESIGN.md, "Heartbeat contract" and "Registry contract". The registry checks files against these, ingest checks
heartbeats, the catalog names them in its sensor indicators, and the simulators draw a province from them.
"""

import re
from dataclasses import dataclass
from enum import StrEnum


class DeviceKind(StrEnum):
    AIR_MONITOR = "air_monitor"
    WATER_MONITOR = "water_monitor"
    WASTEWATER_STATION = "wastewater_station"
    CCTV = "cctv"
    WIFI_AP = "wifi_ap"
    BUS_DISPLAY = "bus_display"


DEVICE_KINDS = tuple(kind.value for kind in DeviceKind)

# DESIGN: "for the three monitor kinds — measurements is non-empty (the station is actually collecting)".
MONITOR_KINDS = frozenset({DeviceKind.AIR_MONITOR, DeviceKind.WATER_MONITOR, DeviceKind.WASTEWATER_STATION})

# The heartbeat interval of a binding that names none (live coverage counts 3 × it; CITYKPI_HEARTBEAT_INTERVAL_S
# overrides any of them).
DEFAULT_HEARTBEAT_INTERVAL_S = {"air_monitor": 300, "water_monitor": 300, "wastewater_station": 300,
                                "cctv": 60, "wifi_ap": 60, "bus_display": 60}

# The six categories, each the denominator of one sensor indicator.
CATEGORIES = ("security_point", "public_place", "transit_stop", "water_source", "air_hotspot",
              "wastewater_facility")

# A device of kind K counts for a point only through the category K serves (#17 cctv, #22 wifi_ap, #9
# bus_display, #18 water_monitor, #19 air_monitor, #21 wastewater_station).
CATEGORY_SERVED_BY = {
    "cctv": "security_point", "wifi_ap": "public_place", "bus_display": "transit_stop",
    "water_monitor": "water_source", "air_monitor": "air_hotspot", "wastewater_station": "wastewater_facility",
}
# The other way round, in the order of CATEGORIES.
KIND_SERVING = {category: kind for kind, category in CATEGORY_SERVED_BY.items()}

# Ids of points, devices, gateways and units (DESIGN.md). A device or gateway id is also a broker account's name,
# so no ':' (Mosquitto's password file separates name and hash with it) and none starting with RESERVED_PREFIX,
# which the service's own accounts use.
ID_CHARACTERS = r"[A-Za-z0-9._-]{1,64}"
ID_PATTERN = re.compile(ID_CHARACTERS)  # use with fullmatch
RESERVED_PREFIX = "citykpi-"


@dataclass(frozen=True)
class Bounds:
    """The box every coordinate must lie in, in degrees (WGS 84)."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    @classmethod
    def parse(cls, text: str) -> "Bounds":
        """`lat_min,lat_max,lon_min,lon_max`, as the setting and the CLI option write it."""
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or not (values[0] < values[1] and values[2] < values[3]):
            raise ValueError(f"{text!r} is not lat_min,lat_max,lon_min,lon_max with min < max")
        return cls(*values)


# Mainland Vietnam with Hoàng Sa (Paracel, to ~112.8 E) and Trường Sa (Spratly, to ~117.8 E, ~6.2 N) included.
VIETNAM_BOX = Bounds(6.0, 24.0, 102.0, 118.0)

# The registry NOTIFYs this channel when an import changed bindings (their probes with them); the prober
# LISTENs, so a change reaches it at once rather than at its next periodic re-read.
REGISTRY_CHANGED_CHANNEL = "citykpi_registry_changed"
