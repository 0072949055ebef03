"""A gateway (a VMS) may report only for the cameras the registry binds to it, at the heartbeat's time."""

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import REGISTRY

from ingest.service import KafkaIngest
from tests.helpers import wait_for
from tests.test_kafka_ingest import _count, _names
from tests.test_kafka_ingest import _settings as _kafka_settings
from tests.test_mqtt_ingest import _run_ingest

NOW = datetime.now(UTC).replace(microsecond=0)
MOVED_AT = NOW - timedelta(hours=1)  # well inside the lateness window


def _register(db: psycopg.Connection, device_id: str, *bindings: tuple[datetime, datetime | None, str | None]) -> None:
    """`device_id`, a cctv, bound to SEC-1 over each (valid_from, valid_to, gateway_id)."""
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'cctv')", (device_id,))
    for valid_from, valid_to, gateway in bindings:
        db.execute("INSERT INTO bindings (device_id, point_id, valid_from, valid_to, gateway_id)"
                   " VALUES (%s, 'SEC-1', %s, %s, %s)", (device_id, valid_from, valid_to, gateway))
    db.commit()


def _hb(device_id: str, ts: datetime = NOW - timedelta(minutes=1)) -> dict:
    return {"device_id": device_id, "kind": "cctv", "ts": ts.isoformat(), "checks": {"stream_ok": True}}


def _report(gateway: str, *heartbeats: dict) -> tuple[str, bytes]:
    return f"gateways/{gateway}/heartbeats", json.dumps(list(heartbeats)).encode()


def _stored(db: psycopg.Connection) -> list[tuple[str, datetime]]:
    rows = db.execute("SELECT device_id, ts FROM heartbeats ORDER BY device_id, ts")
    return [(r["device_id"], r["ts"]) for r in rows]


def _letters(db: psycopg.Connection) -> list[dict]:
    return db.execute("SELECT origin, reason, detail, raw FROM dead_letters ORDER BY id").fetchall()


def _refused_so_far() -> float:
    return REGISTRY.get_sample_value("citykpi_ingest_dead_letters_total",
                                     {"source": "mqtt", "reason": "gateway_not_bound"}) or 0.0


def test_a_gateway_reporting_a_camera_bound_to_it_is_stored(database_url: str, mqtt_broker,
                                                            db: psycopg.Connection) -> None:
    _register(db, "cam-1", (NOW - timedelta(days=30), None, "vms-1"))
    _run_ingest(database_url, mqtt_broker, [_report("vms-1", _hb("cam-1"))])
    assert _stored(db) == [("cam-1", NOW - timedelta(minutes=1))]
    assert _letters(db) == []


def test_a_camera_bound_to_another_gateway_or_to_none_is_dead_lettered_alone(database_url: str, mqtt_broker,
                                                                             db: psycopg.Connection) -> None:
    since = NOW - timedelta(days=30)
    _register(db, "cam-1", (since, None, "vms-1"))
    _register(db, "cam-2", (since, None, "vms-2"))
    _register(db, "cam-3", (since, None, None))
    before = _refused_so_far()
    report = [_hb("cam-1"), _hb("cam-2"), _hb("cam-3")]
    _run_ingest(database_url, mqtt_broker, [_report("vms-1", *report)])
    letters = _letters(db)
    ts = (NOW - timedelta(minutes=1)).isoformat()
    assert [device for device, _ in _stored(db)] == ["cam-1"]
    assert [(r["origin"], r["reason"], r["detail"]) for r in letters] == [
        ("gateways/vms-1/heartbeats", "gateway_not_bound",
         f"gateway 'vms-1' reported device cam-2 at ts {ts}, which is bound to SEC-1 then, through gateway 'vms-2'"),
        ("gateways/vms-1/heartbeats", "gateway_not_bound",
         f"gateway 'vms-1' reported device cam-3 at ts {ts}, which is bound to SEC-1 then, reporting for itself"),
    ]
    assert [bytes(r["raw"]) for r in letters] == [json.dumps(report[1]).encode(), json.dumps(report[2]).encode()]
    assert _refused_so_far() - before == 2


def test_a_registered_camera_without_a_binding_then_is_refused_through_any_gateway(
        database_url: str, mqtt_broker, db: psycopg.Connection) -> None:
    _register(db, "cam-1", (NOW - timedelta(days=30), NOW - timedelta(days=2), "vms-1"))
    _run_ingest(database_url, mqtt_broker, [_report("vms-1", _hb("cam-1"))])
    assert _stored(db) == []
    assert [r["detail"].rsplit(", which ", 1)[1] for r in _letters(db)] == ["has no binding in force then"]


def test_an_unregistered_camera_through_a_gateway_is_stored_as_unknown(database_url: str, mqtt_broker,
                                                                       db: psycopg.Connection) -> None:
    ingest = _run_ingest(database_url, mqtt_broker, [_report("vms-1", _hb("cam-new"))])
    assert _stored(db) == [("cam-new", NOW - timedelta(minutes=1))]
    assert (ingest.worker.totals.unknown_device, _letters(db)) == (1, [])


def test_a_camera_bound_to_a_gateway_may_still_publish_on_its_own_topic(database_url: str, mqtt_broker,
                                                                        db: psycopg.Connection) -> None:
    _register(db, "cam-1", (NOW - timedelta(days=30), None, "vms-1"))
    _run_ingest(database_url, mqtt_broker, [("devices/cam-1/heartbeat", json.dumps(_hb("cam-1")).encode())])
    assert _stored(db) == [("cam-1", NOW - timedelta(minutes=1))]


def test_the_gateway_in_force_at_the_heartbeats_ts_decides(database_url: str, mqtt_broker,
                                                           db: psycopg.Connection) -> None:
    """cam-1 moved from vms-1 to vms-2 at MOVED_AT; late reports arrive through both."""
    _register(db, "cam-1", (NOW - timedelta(days=30), MOVED_AT, "vms-1"), (MOVED_AT, None, "vms-2"))
    before, after = MOVED_AT - timedelta(minutes=10), MOVED_AT + timedelta(minutes=10)
    _run_ingest(database_url, mqtt_broker, [
        _report("vms-1", _hb("cam-1", before), _hb("cam-1", after)),
        _report("vms-2", _hb("cam-1", before - timedelta(minutes=1)), _hb("cam-1", after + timedelta(minutes=1))),
    ])
    refused = [json.loads(bytes(r["raw"]))["ts"] for r in _letters(db)]
    assert _stored(db) == [("cam-1", before), ("cam-1", after + timedelta(minutes=1))]
    assert sorted(refused) == sorted([after.isoformat(), (before - timedelta(minutes=1)).isoformat()])


@pytest.mark.kafka
def test_a_kafka_array_is_checked_against_the_gateway_its_key_names(database_url: str, kafka_bootstrap: str,
                                                                    db: psycopg.Connection) -> None:
    from tests.kafka_helpers import produce

    _register(db, "cam-1", (NOW - timedelta(days=30), None, "vms-1"))
    topic, group = _names()
    body = json.dumps([_hb("cam-1")]).encode()
    placed = produce(kafka_bootstrap, topic, [(b"vms-1", body), (b"vms-9", body), (None, body)])
    ingest = KafkaIngest(_kafka_settings(database_url, kafka_bootstrap, topic, group), database_url)
    ingest.start()
    wait_for(lambda: _count(db, "heartbeats") + _count(db, "dead_letters") == 3, timeout_s=60,
             what="the three reports written")
    ingest.stop()
    refused = {r["origin"]: (r["reason"], r["detail"].split(" reported ")[0]) for r in _letters(db)}
    assert _stored(db) == [("cam-1", NOW - timedelta(minutes=1))]
    assert refused == {f"{topic}/{p}/{o}": ("gateway_not_bound", who) for (p, o), who
                       in zip(placed[1:], ["gateway 'vms-9'", "a gateway without an id"], strict=True)}
