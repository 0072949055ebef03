"""How fast the registry imports a large province, against a bare COPY of the same file in the same run.

    .venv/bin/python bench/registry_import.py [--points 100000] [--devices 200000]

Uses CITYKPI_DATABASE_URL (a database it may fill: it creates and drops its own scratch database) or
starts a throwaway PostgreSQL. Prints a Markdown table for bench/README.md.
"""

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from base.db import connect
from base.vocabulary import CATEGORIES, CATEGORY_SERVED_BY
from citykpi.schema import migrate
from devstack.databases import scratch_database
from registry.devices import read_devices
from registry.devices_import import import_devices
from registry.points import read_points
from registry.points_import import import_points
from registry.units import import_units, read_units
from registry.validation import Problems

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
EFFECTIVE = datetime(2026, 1, 1, tzinfo=UTC)
KIND_FOR = {category: kind for kind, category in CATEGORY_SERVED_BY.items()}


def write_files(folder: Path, n_points: int, n_devices: int, n_communes: int = 1000) -> tuple[Path, Path, Path]:
    rng = random.Random(1)
    units, points, devices = folder / "units.csv", folder / "points.csv", folder / "devices.csv"
    with units.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["code", "name", "parent_code", "level"])
        w.writerow(["P", "Tỉnh Thử", "", "province"])
        w.writerows([f"C{i:04d}", f"Xã Thử {i}", "P", "commune"] for i in range(n_communes))
    categories_of = []
    with points.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["point_id", "name", "categories", "admin_unit", "lat", "lon", "valid_from", "valid_to"])
        for i in range(n_points):
            categories = rng.sample(CATEGORIES, 2 if i % 4 == 0 else 1)
            categories_of.append(categories)
            w.writerow([f"PT-{i:06d}", f"Điểm giả lập {i}", ";".join(categories), f"C{i % n_communes:04d}",
                        round(rng.uniform(13.6, 14.6), 5), round(rng.uniform(108.7, 109.3), 5), "2025-01-01", ""])
    with devices.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["device_id", "kind", "point_id", "valid_from", "valid_to", "heartbeat_interval_s"])
        for i in range(n_devices):
            point = i % n_points
            kind = KIND_FOR[categories_of[point][(i // n_points) % len(categories_of[point])]]
            w.writerow([f"DEV-{i:07d}", kind, f"PT-{point:06d}", "2025-01-01", "", 60])
    return units, points, devices


def timed(what: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = what()
    return time.perf_counter() - start, result


def bare_copy(conn: psycopg.Connection, path: Path, columns: int) -> float:
    """The floor: the same bytes into a table of text columns, no parsing or checks in Python."""
    cols = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}")) for i in range(columns))
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TEMP TABLE bare ({}) ON COMMIT DROP").format(cols))
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bare FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            copy.write(path.read_bytes())
        elapsed = time.perf_counter() - start
    return elapsed


def load(conn: psycopg.Connection, path: Path, read, apply) -> tuple[float, float, object]:
    problems = Problems(str(path))
    parse_s, rows = timed(lambda: read(path, ZONE, problems))
    assert not problems, problems.items[:5]
    import_s, count = timed(lambda: apply(conn, rows, effective=EFFECTIVE, problems=problems, zone=ZONE))
    return parse_s, import_s, count


def run(url: str, n_points: int, n_devices: int) -> list[str]:
    with scratch_database(url, "citykpi_bench") as scratch, tempfile.TemporaryDirectory() as tmp:
        with connect(scratch) as conn:
            migrate(conn)
            conn.autocommit = False
            units, points, devices = write_files(Path(tmp), n_points, n_devices)
            import_units(conn, read_units(units, ZONE, Problems("units")), effective=EFFECTIVE, zone=ZONE)
            lines = ["| file | rows | bare COPY | parse (Python) | import: stage + check + apply | rows/s (parse + "
                     "import) | rows/s bare COPY | re-import (0 changed) |", "|---|---|---|---|---|---|---|---|"]
            for label, path, n, read, apply, columns in (
                    ("points", points, n_points, read_points, import_points, 8),
                    ("devices", devices, n_devices, read_devices, import_devices, 6)):
                copy_s = bare_copy(conn, path, columns)
                parse_s, import_s, count = load(conn, path, read, apply)
                again_parse, again_import, again = load(conn, path, read, apply)
                assert count.total >= n and again.total == 0, (count, again)
                lines.append(f"| {label} | {n:,} | {copy_s:.2f} s | {parse_s:.2f} s | {import_s:.2f} s | "
                             f"{n / (parse_s + import_s):,.0f} | {n / copy_s:,.0f} | "
                             f"{again_parse + again_import:.2f} s |")
            return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=200_000)
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("CITYKPI_DATABASE_URL")
        if not url:
            from devstack.postgres import LocalPostgres

            url = stack.enter_context(LocalPostgres()).url
        lines = run(url, args.points, args.devices)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
