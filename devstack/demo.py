"""`citykpi demo`: a synthetic province through the real path — registry import, MQTT, ingest, KPIs —
on a throwaway PostgreSQL and MQTT broker that it starts and removes itself. `--serve` adds months of history
(devstack/demo_history.py) and keeps it all up with the HTTP app (devstack/demo_serve.py)."""

import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from base.db import connect
from base.migrations import Schema, migrate
from base.periods import Period, parse_period
from base.settings import Settings
from base.terminal import Progress, StagedProgress
from catalog import load_catalog
from devstack.demo_fleet import LiveDevices, device_profiles
from devstack.demo_history import (
    MONTHLY_GROWTH,
    months_ending,
    submit_examples,
    submit_monthly_examples,
    write_heartbeat_history,
)
from devstack.demo_serve import DemoStack, StartWeb, StopSignals, serve_until_stopped
from devstack.mqtt_broker import LocalMqttBroker
from devstack.postgres import LocalPostgres
from ingest.service import MqttIngest
from kpi.indicators import all_sensor_values
from kpi.point_rollups import REFRESH_STAGE_LABELS, refresh
from registry.devices import parse_devices_csv
from registry.devices_import import import_devices
from registry.points import parse_points
from registry.points_import import import_points
from registry.units import import_units, parse_units_csv
from report.build import build_report
from simulators.fleet import heartbeats
from simulators.mqtt_publisher import MqttPublisher
from simulators.province import generate_province, write_registry_files

DEMO_INTERVAL_S = 900
# A quarter of the cameras report through a VMS (gateways vms-1 … vms-3), as the registry files say.
DEMO_GATEWAY_SHARE = 0.25


def _messages(payloads: list[dict], gateway_of: dict[str, str]) -> list[tuple[str, bytes, int]]:
    """(topic, body, heartbeats in it): a device's heartbeat on its own topic, except for the cameras a gateway
    reports, whose heartbeats of one interval go out together as one JSON array per gateway."""
    own, reports = [], {}
    for hb in payloads:
        gateway = gateway_of.get(hb["device_id"])
        if gateway is None:
            own.append((f"devices/{hb['device_id']}/heartbeat", json.dumps(hb, ensure_ascii=False).encode(), 1))
        else:
            slot = int(datetime.fromisoformat(hb["ts"]).timestamp()) // DEMO_INTERVAL_S
            reports.setdefault((gateway, slot), []).append(hb)
    return own + [(f"gateways/{gateway}/heartbeats", json.dumps(hbs, ensure_ascii=False).encode(), len(hbs))
                  for (gateway, _slot), hbs in sorted(reports.items())]


def _misbehaving_messages(now: datetime, camera: str) -> list[tuple[str, bytes]]:
    """What the field also sends: garbage, a device speaking for another, a heartbeat from an unregistered one,
    a gateway reporting for a registered `camera` that is not bound to it."""
    ts = now.isoformat(timespec="seconds")
    return [
        ("devices/cctv-SEC-001-1/heartbeat", b"{not json"),
        ("devices/cctv-SEC-001-1/heartbeat", f'{{"device_id":"cctv-SEC-002-1","kind":"cctv","ts":"{ts}"}}'.encode()),
        ("devices/cam-unregistered-7/heartbeat", f'{{"device_id":"cam-unregistered-7","kind":"cctv","ts":"{ts}"}}'
         .encode()),
        ("gateways/vms-9/heartbeats", f'[{{"device_id":"{camera}","kind":"cctv","ts":"{ts}"}}]'.encode()),
    ]


def run_demo(*, schemas: Sequence[Schema], points_per_category: int, days: int, seed: int,
             serve: StartWeb | None = None) -> int:
    """The demo on a throwaway database migrated with `schemas` (the service's, citykpi/schema.py): the table of
    the last `days`. With `serve`, months of history first (the report page's trends), and after the table the
    stack stays up with the HTTP app until SIGINT or SIGTERM (devstack/demo_serve.py)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    signals = StopSignals()
    with ExitStack() as cleanup:
        # Left last: a signal while serving stays caught until the broker and the database have stopped.
        cleanup.callback(signals.release)
        signals.interrupt()
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="citykpi-demo-")))
        print("Khởi động PostgreSQL và MQTT broker tạm thời …", file=sys.stderr)
        pg = cleanup.enter_context(LocalPostgres())
        broker = cleanup.enter_context(LocalMqttBroker())
        settings = Settings(database_url=pg.url, mqtt_url=broker.url,
                            mqtt_protocol="5" if broker.supports_mqtt5 else "3.1.1",
                            mqtt_client_id="citykpi-demo-ingest")
        zone = settings.zone
        today = now.astimezone(zone).date()
        period_from, period_to = today - timedelta(days=days), today
        start = datetime.combine(period_from, datetime.min.time(), tzinfo=zone)
        months = months_ending(today) if serve else []
        print(f"  PostgreSQL ({pg.bindir}), {broker.implementation} at {broker.url}", file=sys.stderr)

        points, devices = _registry(pg.url, schemas, settings, tmp, points_per_category, seed, effective=start,
                                    valid_from=months[0].start if months else period_from - timedelta(days=30))
        gateway_of = {d.device_id: d.gateway_id for d in devices if d.gateway_id}
        if months:
            _write_history(pg.url, devices, months, start, seed=seed, settings=settings)

        profiles = device_profiles(devices, start, (now - start).total_seconds() / 3600, rng,
                                   interval_s=DEMO_INTERVAL_S)
        payloads = [hb for p in profiles for hb in heartbeats(p, start, now, rng)]
        messages = _messages(payloads, gateway_of)
        extras = _misbehaving_messages(now, camera=next((d.device_id for d in devices if d.kind == "cctv"),
                                                           "cctv-SEC-001-1"))
        expected = len(messages) + len(extras)

        ingest_bar = Progress("Ghi vào cơ sở dữ liệu", expected)
        ingest = MqttIngest(settings, pg.url, on_batch=lambda r: ingest_bar.advance(r.messages))
        ingest.start()
        cleanup.callback(ingest.stop)  # when something fails on the way; stopping twice is harmless
        if not ingest.source.connected.wait(30):
            print("the ingest worker could not connect to the broker", file=sys.stderr)
            return 1
        publisher = MqttPublisher(broker.url)
        publish_bar = Progress(f"Gửi {days} ngày heartbeat qua MQTT", len(payloads))
        for topic, body, heartbeats_in_it in messages:
            publisher.publish_raw(topic, body)
            publish_bar.advance(heartbeats_in_it)
        for topic, body in extras:
            publisher.publish_raw(topic, body)
        publisher.close()
        publish_bar.finish()

        deadline = time.monotonic() + 600
        while ingest.worker.totals.messages < expected and ingest.worker.alive:
            if time.monotonic() > deadline:
                print(f"ingest did not finish: {ingest.worker.totals.messages}/{expected}", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if serve:
            ingest.worker.on_batch = None  # it goes on ingesting the live devices; the bar is done
        else:
            ingest.stop()
        ingest_bar.finish()
        if ingest.worker.failure is not None:
            print(f"ingest failed: {ingest.worker.failure}", file=sys.stderr)
            return 1
        totals = ingest.worker.totals
        print(f"  {totals.stored} heartbeats stored, {totals.duplicates} duplicates, "
              f"{totals.dead_lettered} dead-lettered {dict(sorted(totals.by_reason.items()))}, "
              f"{totals.unknown_device} from unregistered devices", file=sys.stderr)

        with connect(pg.url) as conn:
            values = all_sensor_values(conn, period_from, period_to, settings=settings, now=datetime.now(UTC))
            report = _submit_examples_and_report(conn, settings, today.year, months)
        _print_table(values)
        if report:
            print(report)
        if not serve:
            return 0
        devices_live = LiveDevices(profiles, gateway_of, broker.url, now, seed=seed)
        return serve_until_stopped(DemoStack(settings, pg.url), serve, ingest, devices_live, signals,
                                   period=months[-1].label, evidence_code="17")


def _registry(database_url: str, schemas: Sequence[Schema], settings: Settings, folder: Path,
              points_per_category: int, seed: int, *, effective: datetime, valid_from: date) -> tuple[list, list]:
    """The schema migrated, and a synthetic province's units, points and devices imported, in force from
    `valid_from`."""
    zone = settings.zone
    with connect(database_url) as conn:
        migrate(conn, schemas, timezone=settings.timezone)
        points, devices = generate_province(points_per_category, seed=seed, heartbeat_interval_s=DEMO_INTERVAL_S,
                                            gateway_share=DEMO_GATEWAY_SHARE)
        points_csv, devices_csv = write_registry_files(folder, points, devices, valid_from=valid_from)
        conn.autocommit = False
        units_csv = points_csv.with_name("units.csv")  # written beside the points
        import_units(conn, parse_units_csv(units_csv, zone), effective=effective, zone=zone)
        imported_points = import_points(conn, parse_points(points_csv, zone), effective=effective, zone=zone)
        imported_devices = import_devices(conn, parse_devices_csv(devices_csv, zone), effective=effective, zone=zone)
    gateways = sorted({d.gateway_id for d in devices if d.gateway_id})
    reported = sum(1 for d in devices if d.gateway_id)
    through = f", {reported} of them reported by gateways {', '.join(gateways)}" if gateways else ""
    print(f"  registry: {len(points)} key points, {len(devices)} devices{through} "
          f"({imported_points.total + imported_devices.total} rows added)", file=sys.stderr)
    return points, devices


def _write_history(database_url: str, devices: list, months: list[Period], end: datetime, *, seed: int,
                   settings: Settings) -> None:
    """Months of hourly heartbeats before `end` straight into the database, then the point rollups built from
    them (as `citykpi kpi refresh` does after a bulk load), so that the page's first read is quick."""
    start = datetime.combine(months[0].start, datetime.min.time(), tzinfo=end.tzinfo)
    hours = max(int((end - start).total_seconds() // 3600), 0)
    print(f"  lịch sử cho xu hướng trên trang báo cáo: {start:%Y-%m-%d} đến trước {end:%Y-%m-%d}, mỗi thiết bị "
          "một heartbeat mỗi giờ, ghi thẳng vào cơ sở dữ liệu qua bộ ghi của ingest (không qua MQTT, "
          "để bản demo chạy nhanh)", file=sys.stderr)
    bar = Progress("Ghi lịch sử vào cơ sở dữ liệu", len(devices) * hours)
    totals = write_heartbeat_history(database_url, devices, months, start, end,
                                     rng=random.Random(f"{seed}:history"), advance=bar.advance)
    bar.finish()
    print(f"  {totals.stored} heartbeat lịch sử đã lưu ({len(devices) * hours - totals.stored} giờ thiết bị "
          "im lặng vì sự cố)", file=sys.stderr)
    catalog = load_catalog()
    progress = StagedProgress(REFRESH_STAGE_LABELS)
    with connect(database_url, autocommit=True) as conn:
        refresh(conn, catalog, lateness_window=settings.lateness_window, progress=progress)
    progress.finish()


def _submit_examples_and_report(conn, settings: Settings, year: int, months: list[Period]) -> str:
    """The shipped example submissions, relabelled to this year and to each of `months` (the page's trends), then
    the year's report's summary line."""
    catalog = load_catalog()
    stored, problems = submit_examples(conn, catalog, parse_period(str(year)))
    if problems:
        return f"example submissions do not fit {year}: {problems[0]}"
    if not stored:
        return ""  # installed without the source tree: nothing to submit
    if months:
        monthly, unfit = submit_monthly_examples(conn, catalog, months)
        print(f"  biểu mẫu ví dụ nộp cho từng tháng {months[0].label} … {months[-1].label}: {monthly} tệp, tử số "
              f"thấp hơn {MONTHLY_GROWTH:.0%} cho mỗi tháng lùi về trước"
              + (f"; {len(unfit)} tệp không hợp với tháng của nó ({unfit[0]})" if unfit else ""), file=sys.stderr)
    rows = build_report(conn, catalog, parse_period(str(year)), settings=settings)
    complete = sum(1 for r in rows if r.status != "insufficient_data")
    return (f"\nBáo cáo năm {year}: {complete}/{len(rows)} chỉ số có giá trị "
            f"({stored} biểu mẫu ví dụ của các sở, ngành đã nộp); xem: citykpi report --period {year}")


def _print_table(values: list) -> None:
    first = values[0]
    print(f"\nChỉ số KPI đô thị thông minh (cảm biến) — kỳ {first.period_from} đến trước {first.period_to}, "
          f"θ = {first.theta}")
    print(f"{'#':>3}  {'Tên chỉ số':<72} {'Đạt/Tổng':>9} {'Giá trị':>8}  Trạng thái")
    for v in values:
        shown = "—" if v.value is None else f"{v.value}%"
        name = v.name_vi if len(v.name_vi) <= 72 else v.name_vi[:71] + "…"
        print(f"{v.code:>3}  {name:<72} {f'{v.numerator}/{v.denominator}':>9} {shown:>8}  {v.status}")
