"""`citykpi demo`: a synthetic province through the real path — registry import, MQTT, ingest, KPIs —
on a throwaway PostgreSQL and MQTT broker that it starts and removes itself."""

import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from base.db import connect
from base.migrations import Schema, migrate
from base.settings import Settings
from base.terminal import Progress
from devstack.mqtt_broker import LocalMqttBroker
from devstack.postgres import LocalPostgres
from ingest.service import MqttIngest
from kpi.indicators import all_sensor_values
from registry.devices import parse_devices_csv
from registry.devices_import import import_devices
from registry.points import parse_points
from registry.points_import import import_points
from registry.units import import_units, parse_units_csv
from simulators.fleet import MONITOR_MEASUREMENTS, Behaviour, DeviceProfile, heartbeats
from simulators.mqtt_publisher import MqttPublisher
from simulators.province import generate_province, write_registry_files

DEMO_INTERVAL_S = 900
# A quarter of the cameras report through a VMS (gateways vms-1 … vms-3), as the registry files say.
DEMO_GATEWAY_SHARE = 0.25


def _profiles(devices: list, start: datetime, hours: float, rng: random.Random) -> list[DeviceProfile]:
    """Most devices healthy; the rest fail in the ways field devices do."""
    profiles = []
    for d in devices:
        roll = rng.random()
        behaviour = Behaviour.HEALTHY
        if roll < 0.10:
            behaviour = Behaviour.OUTAGE
        elif roll < 0.18:
            behaviour = Behaviour.FAULTY
        elif roll < 0.24:
            behaviour = Behaviour.FLAPPING
        elif roll < 0.30 and d.kind in MONITOR_MEASUREMENTS:
            behaviour = Behaviour.NOT_COLLECTING
        trouble_start = start + timedelta(hours=rng.uniform(0, hours * 0.7))
        profiles.append(DeviceProfile(d.device_id, d.kind, DEMO_INTERVAL_S, behaviour, trouble_start,
                                      rng.uniform(4, 30)))
    return profiles


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


def run_demo(*, schemas: Sequence[Schema], points_per_category: int, days: int, seed: int) -> int:
    """The demo on a throwaway database migrated with `schemas` (the service's, citykpi/schema.py)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="citykpi-demo-") as tmp:
        print("Khởi động PostgreSQL và MQTT broker tạm thời …", file=sys.stderr)
        with LocalPostgres() as pg, LocalMqttBroker() as broker:
            settings = Settings(database_url=pg.url, mqtt_url=broker.url,
                                mqtt_protocol="5" if broker.supports_mqtt5 else "3.1.1",
                                mqtt_client_id="citykpi-demo-ingest")
            zone = settings.zone
            today = now.astimezone(zone).date()
            period_from, period_to = today - timedelta(days=days), today
            start = datetime.combine(period_from, datetime.min.time(), tzinfo=zone)
            print(f"  PostgreSQL ({pg.bindir}), {broker.implementation} at {broker.url}", file=sys.stderr)

            with connect(pg.url) as conn:
                migrate(conn, schemas, timezone=settings.timezone)
                points, devices = generate_province(points_per_category, seed=seed,
                                                    heartbeat_interval_s=DEMO_INTERVAL_S,
                                                    gateway_share=DEMO_GATEWAY_SHARE)
                points_csv, devices_csv = write_registry_files(Path(tmp), points, devices,
                                                               valid_from=period_from - timedelta(days=30))
                conn.autocommit = False
                units_csv = points_csv.with_name("units.csv")  # written beside the points
                import_units(conn, parse_units_csv(units_csv, zone), effective=start, zone=zone)
                imported_points = import_points(conn, parse_points(points_csv, zone), effective=start, zone=zone)
                imported_devices = import_devices(conn, parse_devices_csv(devices_csv, zone), effective=start,
                                                  zone=zone)
            gateway_of = {d.device_id: d.gateway_id for d in devices if d.gateway_id}
            gateways = ", ".join(sorted(set(gateway_of.values())))
            through = f", {len(gateway_of)} of them reported by gateways {gateways}" if gateway_of else ""
            print(f"  registry: {len(points)} key points, {len(devices)} devices{through} "
                  f"({imported_points.total + imported_devices.total} rows added)", file=sys.stderr)

            profiles = _profiles(devices, start, (now - start).total_seconds() / 3600, rng)
            payloads = [hb for p in profiles for hb in heartbeats(p, start, now, rng)]
            messages = _messages(payloads, gateway_of)
            extras = _misbehaving_messages(now, camera=next((d.device_id for d in devices if d.kind == "cctv"),
                                                               "cctv-SEC-001-1"))
            expected = len(messages) + len(extras)

            ingest_bar = Progress("Ghi vào cơ sở dữ liệu", expected)
            ingest = MqttIngest(settings, pg.url, on_batch=lambda r: ingest_bar.advance(r.messages))
            ingest.start()
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
                report = _submit_examples_and_report(conn, settings, today.year)
    _print_table(values)
    if report:
        print(report)
    return 0


def _submit_examples_and_report(conn, settings: Settings, year: int) -> str:
    """The shipped example submissions, relabelled to this year, then the full report's summary line."""
    from base.periods import parse_period
    from catalog import load_catalog
    from forms.store import store_submission
    from forms.submission import SubmissionError, parse_submission
    from report.build import build_report

    examples = sorted((Path(__file__).resolve().parents[1] / "deploy" / "examples" / "forms").glob("*.json"))
    if not examples:
        return ""  # installed without the source tree: nothing to submit
    catalog = load_catalog()
    with tempfile.TemporaryDirectory(prefix="citykpi-forms-") as folder:
        for example in examples:
            document = json.loads(example.read_text(encoding="utf-8"))
            document["period"] = str(year)
            relabelled = Path(folder) / example.name
            relabelled.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
            try:
                submission = parse_submission(relabelled, catalog)
            except SubmissionError as exc:
                return f"example submissions do not fit {year}: {exc.problems[0]}"
            store_submission(conn, submission, catalog_id=catalog.id, file_name=example.name,
                             content=relabelled.read_bytes(), submitted_by="citykpi demo", channel="cli",
                             now=datetime.now(UTC))
    rows = build_report(conn, catalog, parse_period(str(year)), settings=settings)
    complete = sum(1 for r in rows if r.status != "insufficient_data")
    return (f"\nBáo cáo năm {year}: {complete}/{len(rows)} chỉ số có giá trị "
            f"({len(examples)} biểu mẫu ví dụ của các sở, ngành đã nộp); xem: citykpi report --period {year}")


def _print_table(values: list) -> None:
    first = values[0]
    print(f"\nChỉ số KPI đô thị thông minh (cảm biến) — kỳ {first.period_from} đến trước {first.period_to}, "
          f"θ = {first.theta}")
    print(f"{'#':>3}  {'Tên chỉ số':<72} {'Đạt/Tổng':>9} {'Giá trị':>8}  Trạng thái")
    for v in values:
        shown = "—" if v.value is None else f"{v.value}%"
        name = v.name_vi if len(v.name_vi) <= 72 else v.name_vi[:71] + "…"
        print(f"{v.code:>3}  {name:<72} {f'{v.numerator}/{v.denominator}':>9} {shown:>8}  {v.status}")
