"""A synthetic province: key points across Bình Định's (pre-2025) districts, devices bound to them.

Synthetic data, clearly so: names are made up; the district codes and names are the real ones, so that
breakdowns look like the province's own.
"""

import csv
import random
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from base.vocabulary import KIND_SERVING
from simulators.stream import draw_gateways

# Bình Định's districts, towns and city before the 2025 reform (General Statistics Office codes).
DISTRICTS = (
    ("540", "Thành phố Quy Nhơn"), ("542", "Huyện An Lão"), ("543", "Thị xã Hoài Nhơn"),
    ("544", "Huyện Hoài Ân"), ("545", "Huyện Phù Mỹ"), ("546", "Huyện Vĩnh Thạnh"), ("547", "Huyện Tây Sơn"),
    ("548", "Huyện Phù Cát"), ("549", "Thị xã An Nhơn"), ("550", "Huyện Tuy Phước"), ("551", "Huyện Vân Canh"),
)
PLACE_NAMES = {
    "security_point": "Nút giao", "public_place": "Công viên", "transit_stop": "Trạm dừng xe buýt",
    "water_source": "Điểm quan trắc nước sông", "air_hotspot": "Điểm quan trắc không khí",
    "wastewater_facility": "Trạm xử lý nước thải",
}
# The area around Quy Nhơn and An Nhơn, inside Vietnam's box.
LAT_RANGE, LON_RANGE = (13.70, 14.55), (108.70, 109.25)


@dataclass(frozen=True)
class SyntheticPoint:
    point_id: str
    name: str
    categories: tuple[str, ...]
    admin_unit: str
    position: tuple[float, float]  # latitude, longitude (WGS 84)


@dataclass(frozen=True)
class SyntheticDevice:
    device_id: str
    kind: str
    point_id: str
    heartbeat_interval_s: int
    gateway_id: str | None = None  # the VMS that reports for this camera; None: it reports itself


def generate_province(points_per_category: int, *, seed: int, heartbeat_interval_s: int = 60,
                      uncovered_share: float = 0.1,
                      gateway_share: float = 0.0) -> tuple[list[SyntheticPoint], list[SyntheticDevice]]:
    """Points of every category, some in two (a square is both a security point and a public place), most
    with one device of the serving kind, a few with two, `uncovered_share` with none; `gateway_share` of the
    cameras report through a gateway (`stream.draw_gateways`, so a fleet of the same seed routes them so)."""
    rng = random.Random(seed)
    points: list[SyntheticPoint] = []
    devices: list[SyntheticDevice] = []
    for category in KIND_SERVING:
        for n in range(1, points_per_category + 1):
            code, _district = rng.choice(DISTRICTS)
            categories = (category,)
            if category == "security_point" and n % 4 == 0:
                categories = ("security_point", "public_place")
            position = (round(rng.uniform(*LAT_RANGE), 5), round(rng.uniform(*LON_RANGE), 5))
            point = SyntheticPoint(f"{category[:3].upper()}-{n:03d}", f"{PLACE_NAMES[category]} số {n}",
                                   categories, code, position)
            points.append(point)
            if rng.random() < uncovered_share:
                continue
            for served in categories:
                copies = 2 if rng.random() < 0.1 else 1
                for copy in range(copies):
                    devices.append(SyntheticDevice(f"{KIND_SERVING[served]}-{point.point_id}-{copy + 1}",
                                                   KIND_SERVING[served], point.point_id, heartbeat_interval_s))
    routed = draw_gateways(((d.device_id, d.kind) for d in devices), gateway_share, seed=seed)
    return points, [replace(d, gateway_id=routed.get(d.device_id)) for d in devices]


def write_units_file(folder: Path) -> Path:
    """The synthetic province's units: the province and its districts, in force throughout (the demo does
    not replay the 2025 reform; `deploy/examples/` does)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "units.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["code", "name", "parent_code", "level"])
        writer.writerow(["52", "Tỉnh Bình Định", "", "province"])
        for code, name in DISTRICTS:
            writer.writerow([code, name, "52", "district"])
    return path


def write_registry_files(folder: Path, points: list[SyntheticPoint], devices: list[SyntheticDevice],
                         valid_from: date) -> tuple[Path, Path]:
    """points.csv and devices.csv, and units.csv beside them: the registry refuses points whose unit it
    does not know, so the units are imported first. devices.csv names the gateway of each camera a gateway
    reports for: ingest refuses a gateway's heartbeats for a registered camera not bound to it."""
    write_units_file(folder)
    points_path, devices_path = folder / "points.csv", folder / "devices.csv"
    with points_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["point_id", "name", "categories", "admin_unit", "lat", "lon", "valid_from", "valid_to"])
        for p in points:
            writer.writerow([p.point_id, p.name, ";".join(p.categories), p.admin_unit, *p.position,
                             valid_from.isoformat(), ""])
    with devices_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["device_id", "kind", "point_id", "valid_from", "valid_to", "heartbeat_interval_s",
                         "gateway_id"])
        for d in devices:
            writer.writerow([d.device_id, d.kind, d.point_id, valid_from.isoformat(), "", d.heartbeat_interval_s,
                             d.gateway_id or ""])
    return points_path, devices_path
