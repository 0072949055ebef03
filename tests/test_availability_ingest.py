"""Availability mappings (ingest/mapping/): a retained online topic and a Last Will, read from the broker into
availability_events, with the same guarantees as heartbeats — refusals dead-lettered naming the mapping,
redeliveries absorbed — and into the KPI numbers of a Tasmota-powered display."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from base.settings import Settings
from citykpi.cli import main
from ingest.decode import Limits, decode_availability
from ingest.mapping.spec import MappingError, load_mappings
from simulators.mqtt_publisher import MqttPublisher
from tests.helpers import BACKENDS, wait_for
from tests.test_mqtt_ingest import started_ingest

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "mappings"
NOW = datetime.now(UTC).replace(microsecond=0)
LWT = 'name = "lwt"\nmqtt = "tele/+/LWT"\ndevice_id = "topic[1]"\n'


def _file(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "m.toml"
    file.write_text("[[mapping]]\n" + text)
    return file


@pytest.mark.parametrize(("text", "expected"), [
    (LWT + "availability = { online = ['Online'], offline = ['Online'] }", "'Online' is both online and offline"),
    (LWT + "availability = { online = ['Online'] }", "availability.offline: a list of 1 to"),
    (LWT + "availability = { online = [1], offline = [0] }", "a text payload is compared with strings"),
    (LWT + "availability = { online = ['a'], offline = ['b'], colour = 1 }", "availability: unknown key 'colour'"),
    (LWT + "checks.ok = 'x'\navailability = { online = ['a'], offline = ['b'] }", "'checks' belongs to heartbeat"),
    ('name = "lwt"\nmqtt = "tele/+/LWT"\ndevice_id = "id"\navailability = { online = ["a"], offline = ["b"] }',
     "device_id: a text payload holds no field"),
    (LWT + "ts = 'time'\navailability = { online = ['a'], offline = ['b'] }", "ts: a text payload holds no time"),
])
def test_a_mistake_in_an_availability_mapping_is_named(text: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mappings(_file(tmp_path, text))
    assert str(caught.value).startswith(f"{tmp_path / 'm.toml'}: mapping 'lwt': ")
    assert expected in str(caught.value)


def _decode(mapping, payload: bytes, topic: str = "tele/disp-4/LWT", retained: bool = False):
    return decode_availability(payload, mapping, topic_levels=tuple(topic.split("/")), received_at=NOW,
                               retained=retained, limits=Limits(), zone=Settings().zone)


def test_text_and_json_availability_payloads_become_state_changes(tmp_path: Path) -> None:
    tasmota = load_mappings(EXAMPLES / "tasmota.toml")[1]
    assert [(c.device_id, c.ts, c.online, c.retained) for c in _decode(tasmota, b"Online\n", retained=True)
            .availability] == [("disp-4", NOW, True, True)]
    assert _decode(tasmota, b"Offline").availability[0].online is False
    # Zigbee2MQTT's availability payload: a JSON object with the state, and here the time it was noticed.
    z2m = load_mappings(_file(tmp_path, 'name = "z2m"\nmqtt = "zigbee2mqtt/+/availability"\ndevice_id = "topic[1]"\n'
                                        'ts = { path = "at", format = "epoch_s" }\n'
                                        'availability = { path = "state", online = ["online"], offline = ["offline"] }'
                                        ))[0]
    at = NOW - timedelta(minutes=5)
    change, = _decode(z2m, json.dumps({"state": "offline", "at": at.timestamp()}).encode(),
                      "zigbee2mqtt/wifi-9/availability").availability
    assert (change.device_id, change.ts, change.online) == ("wifi-9", at, False)


@pytest.mark.parametrize(("payload", "topic", "reason", "detail"), [
    (b"Sleeping", "tele/disp-4/LWT", "mapping",
     "mapping 'tasmota-lwt': availability: 'Sleeping' is neither online ['Online'] nor offline ['Offline']"),
    (b"online", "tele/disp-4/LWT", "mapping", "mapping 'tasmota-lwt': availability: 'online' is neither"),
    (b"Online", "tele/bad id!/LWT", "mapping", "mapping 'tasmota-lwt': device_id: 'bad id!' is not a device id"),
    (b"\xff\xfe", "tele/disp-4/LWT", "not_utf8", "mapping 'tasmota-lwt': byte 0 is not UTF-8"),
    (b"O" * 70_000, "tele/disp-4/LWT", "too_large", "mapping 'tasmota-lwt': 70000 bytes > 65536"),
])
def test_hostile_availability_messages_are_refused_naming_the_mapping(payload: bytes, topic: str, reason: str,
                                                                       detail: str) -> None:
    decoded = _decode(load_mappings(EXAMPLES / "tasmota.toml")[1], payload, topic)
    assert decoded.availability == []
    assert (decoded.rejected[0].reason, decoded.rejected[0].detail[:len(detail)]) == (reason, detail)


@pytest.mark.parametrize(("payload", "reason", "detail"), [
    (b"[" * 30_000 + b"]" * 30_000, "not_json", "mapping 'z2m': "),
    (b'{"state": true}', "mapping", "mapping 'z2m': availability: True is neither online"),
    (b'{"status": "online"}', "mapping", "mapping 'z2m': availability: nothing at 'state'"),
    (json.dumps({"state": "online", "at": (NOW - timedelta(days=8)).timestamp()}).encode(), "ts_too_old",
     "mapping 'z2m': ts "),
    (json.dumps({"state": "online", "at": (NOW + timedelta(hours=1)).timestamp()}).encode(), "ts_future",
     "mapping 'z2m': ts "),
])
def test_hostile_json_availability_messages_are_refused_naming_the_mapping(payload: bytes, reason: str, detail: str,
                                                                            tmp_path: Path) -> None:
    z2m = load_mappings(_file(tmp_path, 'name = "z2m"\nmqtt = "z/+/availability"\ndevice_id = "topic[1]"\n'
                                        'ts = { path = "at", format = "epoch_s" }\n'
                                        'availability = { path = "state", online = ["online"], offline = ["offline"] }'
                                        ))[0]
    decoded = _decode(z2m, payload, "z/wifi-9/availability")
    assert decoded.availability == []
    assert (decoded.rejected[0].reason, decoded.rejected[0].detail[:len(detail)]) == (reason, detail)


def test_mappings_check_shows_the_state_change_of_a_sample(capsys: pytest.CaptureFixture) -> None:
    code = main(["mappings", "check", str(EXAMPLES / "tasmota.toml"), "--sample",
                 str(EXAMPLES / "samples" / "tasmota-lwt.txt"), "--topic", "tele/disp-4/LWT"])
    out, err = capsys.readouterr()
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["device_id"], shown["state"]) == ("disp-4", "online")
    assert "availability mapping 'tasmota-lwt': 1 state change(s), 0 problem(s)" in err


def _publish(broker, messages: list[tuple[str, bytes, bool]]) -> None:
    publisher = MqttPublisher(broker.url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    for topic, body, retain in messages:
        publisher.publish_raw(topic, body, retain=retain)
    publisher.close()


def _events(db: psycopg.Connection) -> list[tuple]:
    db.commit()
    return [(r["device_id"], r["online"], r["retained"], r["origin"]) for r in db.execute(
        "SELECT device_id, online, retained, origin FROM availability_events ORDER BY ts")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tasmota_plugs_retained_online_and_last_will_through_the_broker(database_url: str, mqtt_broker,
                                                                        db: psycopg.Connection) -> None:
    device = f"disp-{uuid.uuid4().hex[:6]}"  # retained messages outlive the test on a shared broker
    lwt = f"tele/{device}/LWT"
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'bus_display')", (device,))
    db.commit()
    mappings = EXAMPLES / "tasmota.toml"
    # The plug connected before ingest did: its retained `Online` waits at the broker.
    _publish(mqtt_broker, [(lwt, b"Online", True)])
    ingest = started_ingest(database_url, mqtt_broker, mappings=mappings)
    wait_for(lambda: ingest.worker.totals.messages >= 1, what="the retained Online")
    assert _events(db) == [(device, True, True, lwt)]
    # The broker publishes the Last Will when the plug drops; a QoS 1 redelivery or a repeat changes nothing.
    _publish(mqtt_broker, [(lwt, b"Offline", False), (lwt, b"Offline", False), (lwt, b"Bogus", False)])
    wait_for(lambda: ingest.worker.totals.messages >= 4, what="three more messages")
    ingest.stop()
    assert ingest.worker.failure is None
    assert _events(db) == [(device, True, True, lwt), (device, False, False, lwt)]
    letter, = db.execute("SELECT origin, reason, detail FROM dead_letters").fetchall()
    assert (letter["origin"], letter["reason"]) == (lwt, "mapping")
    assert "'Bogus' is neither online" in letter["detail"]
    # Ingest restarted: the broker hands it the retained message again (still `Online`: the Last Will was not
    # retained here); the plug's state in the database is offline, so that is a change, stored once.
    again = started_ingest(database_url, mqtt_broker, mappings=mappings)
    wait_for(lambda: again.worker.totals.messages >= 1, what="the retained Online, again")
    again.stop()
    assert [e[:3] for e in _events(db)] == [(device, True, True), (device, False, False), (device, True, True)]
    _publish(mqtt_broker, [(lwt, b"", True)])  # clear the retained message


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_display_online_without_heartbeats_counts_through_its_availability(database_url: str, mqtt_broker,
                                                                            db: psycopg.Connection) -> None:
    """The newcomer's path: a Tasmota plug powering a bus-stop display, its availability topic mapped, and the
    bus-stop indicator moves with no heartbeat at all."""
    from kpi.indicators import sensor_value

    device = f"disp-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)"
               " VALUES ('BUS-1', 'Trạm xe buýt 1', '{transit_stop}', '540', 13.77, 109.22, %s)",
               (NOW - timedelta(days=2),))
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'bus_display')", (device,))
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from) VALUES (%s, 'BUS-1', %s)",
               (device, NOW - timedelta(days=2)))
    db.commit()
    ingest = started_ingest(database_url, mqtt_broker, mappings=EXAMPLES / "tasmota.toml")
    _publish(mqtt_broker, [(f"tele/{device}/LWT", b"Online", False)])
    wait_for(lambda: ingest.worker.totals.messages >= 1, what="the Online")
    ingest.stop()
    today = NOW.astimezone(Settings().zone).date()
    value = sensor_value(db, "9", today, today + timedelta(days=1), settings=Settings(), now=NOW + timedelta(hours=2),
                         devices=True)
    [evidence] = value.evidence
    assert evidence.buckets_up >= 1
    assert evidence.device_online_only_hours == {device: evidence.buckets_up}
