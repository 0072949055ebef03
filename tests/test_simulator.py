"""The fleet simulator: deterministic, faulty in the ways asked for, and every message accounted for."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.decode import Limits, decode_message
from simulators.faults import FaultShares
from simulators.run import backfill, build_fleet
from simulators.stream import fleet_messages
from simulators.transports import KafkaTransport, MqttTransport
from tests.helpers import wait_for

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(hours=6)
DEVICES = [(f"cam-{n}", "cctv", 300) for n in range(10)] + [(f"air-{n}", "air_monitor", 600) for n in range(5)]


def _messages(shares: FaultShares, seed: int = 7) -> list:
    fleet = build_fleet(DEVICES, shares, START, END, seed=seed)
    return list(fleet_messages(fleet, START, END, seed=seed))


def test_the_same_seed_gives_the_same_messages_and_another_does_not() -> None:
    assert _messages(FaultShares(), seed=7) == _messages(FaultShares(), seed=7)
    assert _messages(FaultShares(), seed=7) != _messages(FaultShares(), seed=8)


def test_a_healthy_fleet_sends_one_valid_heartbeat_per_interval() -> None:
    messages = _messages(FaultShares.none())
    outcomes = [decode_message(m.body, received_at=m.send_at, expected_device_id=m.key, allow_array=False,
                               limits=Limits()) for m in messages]
    assert len(messages) == 10 * 6 * 12 + 5 * 6 * 6  # 6 hours at 5 and 10 minutes
    assert all(o.rejected == [] and all(hb.healthy for hb in o.accepted) for o in outcomes)


def test_store_and_forward_devices_deliver_late_and_out_of_order() -> None:
    shares = FaultShares(**{**FaultShares.none().__dict__, "store_and_forward": 1.0})
    two_days = START + timedelta(days=2)  # long enough for link outages (2–30 h) to end and flush
    messages = list(fleet_messages(build_fleet(DEVICES, shares, START, two_days, seed=7), START, two_days, seed=7))
    lags = [m.send_at - datetime.fromisoformat(json.loads(m.body)["ts"]) for m in messages]
    per_device: dict[str, list[datetime]] = {}
    for m in messages:
        per_device.setdefault(m.key, []).append(datetime.fromisoformat(json.loads(m.body)["ts"]))
    assert max(lags) > timedelta(hours=1)
    assert any(times != sorted(times) for times in per_device.values())


def test_malformed_skewed_and_gateway_messages_appear_when_asked_for() -> None:
    shares = FaultShares(**{**FaultShares.none().__dict__, "malformed": 1.0, "clock_skew": 1.0,
                            "gateway_cameras": 1.0})
    messages = _messages(shares)
    reasons = set()
    for m in messages:
        decoded = decode_message(m.body, received_at=m.send_at, expected_device_id=None,
                                 allow_array=m.topic.startswith("gateways/"), limits=Limits())
        reasons |= {r.reason for r in decoded.rejected}
    assert any(m.topic.startswith("gateways/vms-") and m.body.startswith(b"[") for m in messages)
    assert {"not_json", "ts_future"} <= reasons


def _heartbeats_in(messages: list) -> int:
    total = 0
    for m in messages:
        try:
            document = json.loads(m.body)
        except ValueError:
            total += 1
            continue
        total += len(document) if isinstance(document, list) else 1
    return total


def _backfill_through_ingest(database_url: str, mqtt_broker, fleet, start: datetime, end: datetime, seed: int):
    """Send the fleet's messages over MQTT to a running `citykpi ingest`; return its totals once every
    message is written and it has stopped, and the simulator's report."""
    from base.settings import Settings
    from ingest.service import MqttIngest

    settings = Settings(database_url=database_url, mqtt_url=mqtt_broker.url,
                        mqtt_protocol="5" if mqtt_broker.supports_mqtt5 else "3.1.1",
                        mqtt_client_id=f"sim-{uuid.uuid4().hex[:6]}", batch_max_wait_s=0.05)
    ingest = MqttIngest(settings, database_url)
    ingest.start()
    wait_for(ingest.source.connected.is_set, what="ingest connected")
    report = backfill(fleet, MqttTransport(mqtt_broker.url, client_id=f"sim-{uuid.uuid4().hex[:6]}"), start, end,
                      seed=seed)
    wait_for(lambda: ingest.worker.totals.messages >= report.messages, what="every simulated message written")
    ingest.stop()
    return ingest.worker.totals, report


def test_every_simulated_message_is_stored_or_dead_lettered(database_url: str, mqtt_broker,
                                                           db: psycopg.Connection) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(hours=3), now
    fleet = build_fleet(DEVICES, FaultShares(), start, end, seed=3)
    expected = list(fleet_messages(fleet, start, end, seed=3))
    totals, report = _backfill_through_ingest(database_url, mqtt_broker, fleet, start, end, seed=3)
    stored = db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"]
    dead = db.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"]
    assert report.messages == len(expected)
    assert stored + totals.duplicates + dead == _heartbeats_in(expected)


@pytest.mark.kafka
def test_the_simulator_produces_to_kafka_keyed_by_device(kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = f"sim-{uuid.uuid4().hex[:6]}"
    fleet = build_fleet(DEVICES[:3], FaultShares.none(), START, START + timedelta(hours=1), seed=1)
    report = backfill(fleet, KafkaTransport(kafka_bootstrap, topic), START, START + timedelta(hours=1), seed=1)

    async def read_back() -> list[bytes]:
        # No consumer group: reading back needs no group coordinator, only the partitions.
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                    group_id=None)
        await consumer.start()
        keys: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while len(keys) < report.messages:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        keys += [r.key for r in records]
        finally:
            await consumer.stop()
        return keys

    keys = asyncio.run(read_back())
    assert report.messages == 3 * 12
    assert sorted(set(keys)) == [b"cam-0", b"cam-1", b"cam-2"]


def test_the_publisher_outlasts_paho_message_ids(mqtt_broker) -> None:
    """More messages than 16-bit message ids: without a bound on unacknowledged ones, paho refuses them."""
    publisher = MqttTransport(mqtt_broker.url, client_id=f"ids-{uuid.uuid4().hex[:6]}")._publisher
    for _ in range(70_000):
        publisher.publish_raw("devices/nobody-listens/heartbeat", b"{}")
    publisher.close()
    assert publisher._pending == 0


def test_monitors_report_the_measurements_their_kind_collects() -> None:
    stations = [("w-1", "water_monitor", 600), ("ww-1", "wastewater_station", 600), ("a-1", "air_monitor", 600)]
    fleet = build_fleet(stations, FaultShares.none(), START, END, seed=1)
    first = {m.key: set(json.loads(m.body)["measurements"]) for m in fleet_messages(fleet, START, END, seed=1)}
    assert first["a-1"] == {"pm2_5", "pm10", "no2", "so2", "co", "o3"}
    for station in ("w-1", "ww-1"):
        assert first[station] == {"ph", "do", "cod", "bod5", "tss", "nh4", "temperature", "flow"}


def test_a_synthetic_province_s_cameras_report_through_the_gateways_its_registry_names(
        database_url: str, mqtt_broker, db: psycopg.Connection, tmp_path) -> None:
    from registry.devices import parse_devices_csv
    from registry.devices_import import import_devices
    from registry.points import parse_points
    from registry.points_import import import_points
    from registry.units import import_units, parse_units_csv
    from simulators.cli import _devices_from_registry
    from simulators.province import generate_province, write_registry_files
    from tests.registry_files import ZONE

    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(hours=1), now
    points, devices = generate_province(3, seed=5, gateway_share=0.5, heartbeat_interval_s=600)
    points_csv, devices_csv = write_registry_files(tmp_path, points, devices,
                                                   valid_from=(now - timedelta(days=30)).date())
    import_units(db, parse_units_csv(tmp_path / "units.csv", ZONE), effective=start, zone=ZONE)
    import_points(db, parse_points(points_csv, ZONE), effective=start, zone=ZONE)
    import_devices(db, parse_devices_csv(devices_csv, ZONE), effective=start, zone=ZONE)
    listed, gateways = _devices_from_registry(tmp_path)
    fleet = build_fleet(listed, FaultShares.none(), start, end, seed=5, gateways=gateways)
    expected = list(fleet_messages(fleet, start, end, seed=5))
    totals, _report = _backfill_through_ingest(database_url, mqtt_broker, fleet, start, end, seed=5)
    stored = db.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"]
    letters = db.execute("SELECT reason, detail FROM dead_letters").fetchall()
    through_gateways = [m for m in expected if m.topic.startswith("gateways/")]
    assert gateways == {d.device_id: d.gateway_id for d in devices if d.gateway_id} != {}
    assert len(through_gateways) > 0
    assert letters == []
    assert (stored, totals.unknown_device) == (_heartbeats_in(expected), 0)
