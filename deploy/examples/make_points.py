"""Regenerates points.csv and devices.csv (synthetic, deterministic): `python3 make_points.py`.

Every point is placed near the centre of its (real) old district, in one of the SAMPLE communes of
units-binh-dinh-2024.csv, and carries one version per unit: the old commune until 2025-07-01, the new
commune or ward (its successor in units-gia-lai-2025.csv) from then on. The cameras of old Quy Nhơn
(district 540) report through the city's video management system, gateway `vms-quy-nhon`.
"""

import csv
import random
from pathlib import Path

HERE = Path(__file__).parent
REFORM = "2025-07-01"
SINCE = "2024-01-01"
# Approximate centres of the old districts (rounded; good enough for synthetic points).
CENTRES = {"540": (13.77, 109.22), "542": (14.60, 108.90), "543": (14.45, 109.03), "544": (14.35, 108.90),
           "545": (14.18, 109.05), "546": (14.10, 108.75), "547": (13.95, 108.90), "548": (14.00, 109.06),
           "549": (13.88, 109.10), "550": (13.82, 109.15), "551": (13.62, 108.98)}
CATEGORIES = [("security_point", "SEC", "Nút giao", 90), ("public_place", "PUB", "Công viên", 60),
              ("transit_stop", "BUS", "Trạm dừng xe buýt", 60), ("water_source", "WAT", "Điểm quan trắc nước", 30),
              ("air_hotspot", "AIR", "Điểm quan trắc không khí", 30),
              ("wastewater_facility", "WWT", "Trạm xử lý nước thải", 30)]
KIND = {"security_point": ("cctv", 60), "public_place": ("wifi_ap", 300), "transit_stop": ("bus_display", 60),
        "water_source": ("water_monitor", 300), "air_hotspot": ("air_monitor", 300),
        "wastewater_facility": ("wastewater_station", 300)}
GATEWAYS = {("540", "cctv"): "vms-quy-nhon"}  # (old district, kind) → the gateway reporting for those devices


def main() -> None:
    rng = random.Random(2268)
    units = list(csv.DictReader((HERE / "units-gia-lai-2025.csv").open(encoding="utf-8")))
    communes = [u for u in units if u["level"] == "commune" and not u["valid_from"]]
    points, devices = [], []
    for category, prefix, label, count in CATEGORIES:
        for n in range(1, count + 1):
            commune = rng.choice(communes)
            lat, lon = CENTRES[commune["parent_code"]]
            point_id = f"{prefix}-{n:03d}"
            categories = category
            if category == "security_point" and n % 5 == 0:
                categories = "security_point;public_place"  # a square: both a security point and a public place
            common = [point_id, f"{label} giả lập số {n:03d}", categories]
            where = [round(lat + rng.uniform(-0.04, 0.04), 5), round(lon + rng.uniform(-0.04, 0.04), 5)]
            fate = rng.random()
            if fate < 0.04:  # removed before the reform: one version only
                points.append([*common, commune["code"], *where, SINCE, "2025-03-01"])
            elif fate < 0.08:  # built after the reform: in the new unit only
                points.append([*common, commune["successor_codes"], *where, "2025-09-01", ""])
            else:
                points.append([*common, commune["code"], *where, SINCE, REFORM])
                points.append([*common, commune["successor_codes"], *where, REFORM, ""])
            if rng.random() < 0.1:
                continue  # no device yet: in the denominator, never covered
            first = points[-1][6] if fate < 0.08 else SINCE
            last = points[-1][7]
            for served in categories.split(";"):
                kind, interval = KIND[served]
                gateway = GATEWAYS.get((commune["parent_code"], kind), "")
                devices.append([f"{kind}-{point_id}", kind, point_id, first, last, interval, gateway])
    with (HERE / "points.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["point_id", "name", "categories", "admin_unit", "lat", "lon", "valid_from", "valid_to"])
        writer.writerows(points)
    with (HERE / "devices.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["device_id", "kind", "point_id", "valid_from", "valid_to", "heartbeat_interval_s",
                         "gateway_id"])
        writer.writerows(devices)


if __name__ == "__main__":
    main()
