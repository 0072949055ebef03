"""Coverage engine benchmark: one indicator over a year, all six over a month, at three sizes.

    python -m bench.coverage                       # small, medium, large on a throwaway PostgreSQL
    python -m bench.coverage --size small --size medium
    CITYKPI_BENCH_DATABASE_URL=postgresql://… python -m bench.coverage   # an existing server (superuser)

The registry (points in six categories, two devices per point of the category's kind, a unit tree) and
the rollups are generated directly in SQL, not through ingest: a year of heartbeats for 100 000 devices
would take the benchmark days to publish. Generated: heartbeats_daily for every device-day of 2025
(the rows the KPI query reads), heartbeats_hourly for the last day only (what live coverage reads).
Devices are up 22 of 24 hours a day at random hours; one in ten has a two-week outage.

Then the point rollups are built from them (`citykpi kpi refresh`'s work, timed: the point-days, then the
closed months' device hours), and the reads are timed from the rollups, as `citykpi serve` keeps them. The
evidence with each device's hours is timed from the monthly device rollups and, for comparison in the same
run, per device-day as before them (the months' done marks set aside for that read).
"""

import argparse
import os
import signal
import sys
import time
from datetime import UTC, date, datetime

import psycopg

from base.db import connect
from base.settings import Settings
from catalog import load_catalog
from citykpi.schema import migrate
from devstack.databases import scratch_database
from kpi.indicators import all_sensor_values, period_report, sensor_value
from kpi.point_rollups import refresh

SIZES = {"small": (1_000, 500), "medium": (10_000, 5_000), "large": (100_000, 50_000)}
NOW = datetime(2026, 3, 1, tzinfo=UTC)  # every period below is final
DECEMBER_31 = datetime(2025, 12, 31, 5, tzinfo=UTC)  # noon local: December is provisional, its days read per day

_UNITS = """
INSERT INTO admin_units (code, name, parent_code, level)
SELECT 'P', 'Tỉnh', NULL, 'province'
UNION ALL SELECT 'D' || d, 'Huyện ' || d, 'P', 'district' FROM generate_series(1, 10) d
UNION ALL SELECT 'C' || c, 'Xã ' || c, 'D' || (c % 10 + 1), 'commune' FROM generate_series(1, 150) c
"""
_POINTS = """
INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)
SELECT 'KP-' || p, 'Điểm ' || p,
       ARRAY[(ARRAY['transit_stop','security_point','water_source','air_hotspot','wastewater_facility',
                    'public_place'])[p %% 6 + 1]],
       'C' || (p %% 150 + 1), 13.7, 109.2, '2024-01-01 00:00+07'
FROM generate_series(1, %(points)s) p
"""
_DEVICES = """
INSERT INTO devices (device_id, kind)
SELECT 'DEV-' || d, (ARRAY['bus_display','cctv','water_monitor','air_monitor','wastewater_station','wifi_ap'])
                    [((d - 1) %% %(points)s + 1) %% 6 + 1]
FROM generate_series(1, %(devices)s) d
"""
_BINDINGS = """
INSERT INTO bindings (device_id, point_id, valid_from)
SELECT 'DEV-' || d, 'KP-' || ((d - 1) %% %(points)s + 1), '2024-01-01 00:00+07'
FROM generate_series(1, %(devices)s) d
"""
# 22 of 24 hours up (two random hours cleared); one device in ten down for 14 days from a random day.
_DAILY = """
INSERT INTO heartbeats_daily (device_id, day, healthy_count, total_count, first_seen, last_seen, last_healthy,
                              up_hours, up_mask)
SELECT dev.device_id, day, 44, 48, day, day + interval '23 hours 59 minutes', day + interval '23 hours 59 minutes',
       bit_count(mask::bit(64)), mask
FROM devices dev
CROSS JOIN LATERAL (SELECT (hashtext(dev.device_id) & 2147483647) % 10 = 0 AS flaky,
                           (hashtext(dev.device_id) & 2147483647) % 350 AS outage_day) f
CROSS JOIN generate_series(timestamptz '2025-01-01 00:00+07', '2025-12-31 00:00+07', interval '1 day') AS day
CROSS JOIN LATERAL (
    SELECT CASE WHEN f.flaky AND day >= timestamptz '2025-01-01 00:00+07' + f.outage_day * interval '1 day'
                     AND day < timestamptz '2025-01-15 00:00+07' + f.outage_day * interval '1 day' THEN 0::bigint
                ELSE 16777215::bigint & ~(1::bigint << (random() * 23)::int) & ~(1::bigint << (random() * 23)::int)
           END AS mask) m
"""
_HOURLY_LAST_DAY = """
INSERT INTO heartbeats_hourly (device_id, bucket, healthy_count, total_count, first_seen, last_seen, last_healthy)
SELECT device_id, bucket, 2, 2, bucket, bucket + interval '59 minutes', bucket + interval '59 minutes'
FROM devices CROSS JOIN generate_series(timestamptz '2025-12-31 00:00+07', '2025-12-31 23:00+07',
                                        interval '1 hour') AS bucket
"""


def _timed(label: str, action) -> float:
    started = time.perf_counter()
    action()
    seconds = time.perf_counter() - started
    print(f"    {label:<44} {seconds:8.2f} s", file=sys.stderr)
    return seconds


def run_size(server_url: str, size: str) -> dict[str, object]:
    devices, points = SIZES[size]
    print(f"  {size}: {devices} devices, {points} key points", file=sys.stderr)
    with scratch_database(server_url, f"citykpi_bench_{size}") as url:
        with connect(url) as conn:
            migrate(conn)
            conn.autocommit = False
            params = {"devices": devices, "points": points}
            load = _timed("generate registry + a year of daily rollups", lambda: (
                conn.execute(_UNITS), conn.execute(_POINTS, params), conn.execute(_DEVICES, params),
                conn.execute(_BINDINGS, params), conn.execute(_DAILY), conn.execute(_HOURLY_LAST_DAY),
                conn.commit()))
            conn.autocommit = True
            # Written directly, the daily rows bypassed the trigger that marks their days stale.
            conn.execute("SELECT kpi_mark_stale_days(ARRAY(SELECT DISTINCT day FROM heartbeats_daily))")
            conn.execute("VACUUM ANALYZE")
            daily_rows = conn.execute("SELECT count(*) AS n FROM heartbeats_daily").fetchone()["n"]
            # First the days alone (no month is closed yet at that `now`), then the months' device hours.
            build = _timed("build the point rollups (365 days)", lambda: refresh(
                conn, load_catalog(), now=datetime(2025, 1, 1, tzinfo=UTC)))
            device_months = _timed("device hours of the 12 closed months", lambda: refresh(
                conn, load_catalog(), now=NOW))
            conn.execute("VACUUM ANALYZE")
            point_days = conn.execute("SELECT count(*) AS n FROM point_daily").fetchone()["n"]
            settings = Settings()
            year = (date(2025, 1, 1), date(2026, 1, 1))
            month = (date(2025, 12, 1), date(2026, 1, 1))
            results: dict[str, object] = {"size": size, "devices": devices, "points": points,
                                          "daily_rows": daily_rows, "load_s": load, "build_s": build,
                                          "device_months_s": device_months, "point_days": point_days}
            for attempt in ("cold", "warm"):
                results[f"one_year_{attempt}_s"] = _timed(f"#17 over 2025 ({attempt})", lambda: sensor_value(
                    conn, "17", *year, settings=settings, now=NOW))
            for attempt in ("cold", "warm"):
                results[f"six_month_{attempt}_s"] = _timed(f"all six over Dec 2025 ({attempt})", lambda: (
                    all_sensor_values(conn, *month, settings=settings, now=NOW)))
            results["report_month_s"] = _timed("period report, Dec 2025, 161 units", lambda: period_report(
                conn, *month, settings=settings, now=NOW))
            results["evidence_year_s"] = _timed("#17 over 2025 with every device's hours", lambda: sensor_value(
                conn, "17", *year, settings=settings, now=NOW, devices=True))
            results["evidence_month_s"] = _timed("#17 over Dec 2025 with every device's hours", lambda: sensor_value(
                conn, "17", *month, settings=settings, now=NOW, devices=True))
            results["evidence_month_so_far_s"] = _timed("#17 Dec 2025 so far (on the 31st), devices' hours",
                                                        lambda: sensor_value(conn, "17", *month, settings=settings,
                                                                             now=DECEMBER_31, devices=True))
            done = [r["month"] for r in conn.execute("DELETE FROM point_device_month_done RETURNING month")]
            results["evidence_year_per_day_s"] = _timed("#17 over 2025, devices' hours per device-day",
                                                        lambda: sensor_value(conn, "17", *year, settings=settings,
                                                                             now=NOW, devices=True))
            conn.execute("INSERT INTO point_device_month_done (month) SELECT unnest(%s::timestamptz[])", (done,))
            value = sensor_value(conn, "17", *year, settings=settings, now=NOW)
            results["check"] = f"#17 2025: {value.numerator}/{value.denominator} = {value.value}"
            print(f"    {results['check']}", file=sys.stderr)
            return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", choices=list(SIZES), help="repeatable; default: all three")
    args = parser.parse_args(argv)
    # A terminated benchmark still drops its databases and stops the server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = args.size or list(SIZES)
    if url := os.environ.get("CITYKPI_BENCH_DATABASE_URL"):
        rows = [run_size(url, s) for s in sizes]
    else:
        from devstack.postgres import LocalPostgres

        with LocalPostgres() as pg:
            # The embedded server's 128 MB of shared buffers would measure the disk, not the query.
            with psycopg.connect(pg.url, autocommit=True) as admin:
                admin.execute("ALTER SYSTEM SET shared_buffers = '4GB'")
                admin.execute("ALTER SYSTEM SET work_mem = '256MB'")
                admin.execute("ALTER SYSTEM SET maintenance_work_mem = '1GB'")
            pg.stop()
            pg.start()
            rows = [run_size(pg.url, s) for s in sizes]
    print("| size | devices | key points | device-days | point-days | build point rollups (s) "
          "| device hours of 12 months (s) | #17 one year cold / warm (s) "
          "| six indicators one month cold / warm (s) | month report, all units (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['devices']:,} | {r['points']:,} | {r['daily_rows']:,} | {r['point_days']:,} "
              f"| {r['build_s']:.1f} | {r['device_months_s']:.1f} "
              f"| {r['one_year_cold_s']:.2f} / {r['one_year_warm_s']:.2f} "
              f"| {r['six_month_cold_s']:.2f} / {r['six_month_warm_s']:.2f} | {r['report_month_s']:.2f} |")
    print()
    print("| size | #17 evidence with devices' hours: one year | one closed month | a month so far "
          "| one year per device-day (before the monthly device rollups) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['evidence_year_s']:.2f} | {r['evidence_month_s']:.2f} "
              f"| {r['evidence_month_so_far_s']:.2f} | {r['evidence_year_per_day_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
