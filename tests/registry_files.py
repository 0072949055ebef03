"""Small registry files for tests: the headers, a writer, and the one-district tree most tests stand on."""

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from registry.units import AdminUnit, import_units

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
POINTS_HEADER = "point_id,name,categories,admin_unit,lat,lon,valid_from,valid_to\n"
DEVICES_HEADER = "device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s\n"
UNITS_HEADER = "code,name,parent_code,level,valid_from,valid_to,successor_codes\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def seed_units(db: psycopg.Connection) -> None:
    """Bình Định (52) with Quy Nhơn (540) and An Nhơn (549), in force since before the registry."""
    import_units(db, [AdminUnit("52", "Tỉnh Bình Định", None, "province", None, None),
                      AdminUnit("540", "Thành phố Quy Nhơn", "52", "district", None, None),
                      AdminUnit("549", "Thị xã An Nhơn", "52", "district", None, None)], effective=LONG_AGO)
