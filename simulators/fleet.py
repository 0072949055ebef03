"""Heartbeats of a simulated fleet: each device has a behaviour, deterministic for a given seed."""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MONITOR_MEASUREMENTS = {
    "air_monitor": {"pm2_5": (5, 80), "pm10": (10, 150), "no2": (5, 80), "so2": (2, 40), "co": (200, 3000),
                    "o3": (10, 120)},
    # Rivers and lakes: DO in mg/L, COD/BOD5/TSS/NH4+ in mg/L, flow in m³/s.
    "water_monitor": {"ph": (6.0, 8.5), "do": (3.0, 9.0), "cod": (5, 40), "bod5": (2, 20), "tss": (5, 80),
                      "nh4": (0.05, 1.5), "temperature": (22, 33), "flow": (0.5, 120)},
    # Treatment plant outlets: lower DO, higher loads, flow in m³/h.
    "wastewater_station": {"ph": (5.5, 9.0), "do": (0.5, 6.0), "cod": (20, 150), "bod5": (10, 60),
                           "tss": (10, 120), "nh4": (1, 15), "temperature": (25, 38), "flow": (50, 900)},
}
CHECK_FOR_KIND = {"cctv": "stream_ok", "bus_display": "realtime_ok", "wifi_ap": "uplink_ok"}


class Behaviour(StrEnum):
    HEALTHY = "healthy"          # every heartbeat on time and healthy
    OUTAGE = "outage"            # silent during one long stretch
    FAULTY = "faulty"            # keeps talking, but reports status=fault for a stretch
    NOT_COLLECTING = "not_collecting"  # a monitor that is on but sends no measurements
    FLAPPING = "flapping"        # misses about one hour in five


@dataclass(frozen=True)
class DeviceProfile:
    device_id: str
    kind: str
    interval_s: int
    behaviour: Behaviour = Behaviour.HEALTHY
    trouble_start: datetime | None = None
    trouble_hours: float = 0.0


def _in_trouble(profile: DeviceProfile, ts: datetime) -> bool:
    if profile.trouble_start is None:
        return False
    return profile.trouble_start <= ts < profile.trouble_start + timedelta(hours=profile.trouble_hours)


def heartbeats(profile: DeviceProfile, start: datetime, end: datetime, rng: random.Random, *,
               jitter: float = 0.05) -> Iterator[dict]:
    """Payloads (DESIGN heartbeat contract) for [start, end), RFC 3339 timestamps in the device's local offset.
    Each interval varies by up to ± `jitter` of itself; with 0, a device whose interval is an hour and whose
    `start` is on the hour beats once in every hour (jitter drifting across an hour's edge would skip one)."""
    seq = 0
    ts = start + timedelta(seconds=rng.uniform(0, profile.interval_s))
    while ts < end:
        seq += 1
        troubled = _in_trouble(profile, ts)
        hour_dropped = profile.behaviour is Behaviour.FLAPPING and (ts.hour * 7 + ts.day) % 5 == 0
        if not ((profile.behaviour is Behaviour.OUTAGE and troubled) or hour_dropped):
            yield _payload(profile, ts, seq, troubled, rng)
        ts += timedelta(seconds=profile.interval_s + rng.uniform(-jitter, jitter) * profile.interval_s)


def _payload(profile: DeviceProfile, ts: datetime, seq: int, troubled: bool, rng: random.Random) -> dict:
    body: dict = {"device_id": profile.device_id, "kind": profile.kind,
                  "ts": ts.isoformat(timespec="milliseconds"), "seq": seq, "status": "ok"}
    if profile.behaviour is Behaviour.FAULTY and troubled:
        body["status"] = "fault"
    if profile.kind in MONITOR_MEASUREMENTS:
        if profile.behaviour is not Behaviour.NOT_COLLECTING:
            body["measurements"] = {name: round(rng.uniform(low, high), 2)
                                    for name, (low, high) in MONITOR_MEASUREMENTS[profile.kind].items()}
    else:
        body["checks"] = {CHECK_FOR_KIND[profile.kind]: True}
    if profile.kind == "wifi_ap":
        body["metrics"] = {"clients": rng.randint(0, 120)}  # a count, never client addresses
    return body
