"""Device identity on the broker: accounts and ACL exported from the registry, enforced by a real Mosquitto."""

import csv
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devstack.mqtt_broker import LocalMqttBroker, find_mosquitto
from registry.broker_accounts import ACL, INGEST_ACCOUNT, export_mosquitto, mosquitto_hash
from tests.helpers import missing, wait_for

AT = datetime(2026, 11, 1, tzinfo=UTC)


def _bind(db: psycopg.Connection, device_id: str, point_id: str = "SEC-1", until: datetime | None = None,
          gateway: str | None = None) -> None:
    db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, 'cctv') ON CONFLICT DO NOTHING", (device_id,))
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from, valid_to, gateway_id)"
               " VALUES (%s, %s, '2026-01-01', %s, %s)", (device_id, point_id, until, gateway))
    db.commit()


def _credentials(result) -> list[dict[str, str]]:
    with result.credentials.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _secrets(result) -> dict[str, str]:
    return {row["id"]: row["mqtt_password"] for row in _credentials(result)}


def test_bound_devices_get_accounts_and_keep_them_across_exports(db: psycopg.Connection, tmp_path: Path) -> None:
    _bind(db, "cam-1")
    _bind(db, "cam-2")
    _bind(db, "cam-old", until=datetime(2026, 6, 1, tzinfo=UTC))
    first = export_mosquitto(db, tmp_path, at=AT)
    passwd_after_first = (tmp_path / "passwd").read_text()
    again = export_mosquitto(db, tmp_path, at=AT)
    passwd_after_again = (tmp_path / "passwd").read_text()
    rotated = export_mosquitto(db, tmp_path, at=AT, rotate={"cam-2"})
    assert (first.created, first.kept) == (["cam-1", "cam-2"], [])
    assert (again.created, again.kept, again.credentials) == ([], ["cam-1", "cam-2"], None)
    assert passwd_after_again == passwd_after_first
    assert (rotated.created, rotated.kept) == (["cam-2"], ["cam-1"])
    assert set(_secrets(first)) == {"cam-1", "cam-2"} and set(_secrets(rotated)) == {"cam-2"}
    assert oct((tmp_path / "passwd").stat().st_mode & 0o777) == "0o600"
    assert oct(first.credentials.stat().st_mode & 0o777) == "0o600"


def test_a_device_no_longer_bound_loses_its_account(db: psycopg.Connection, tmp_path: Path) -> None:
    _bind(db, "cam-1")
    _bind(db, "cam-2", until=datetime(2026, 12, 1, tzinfo=UTC))
    export_mosquitto(db, tmp_path, at=AT)
    later = export_mosquitto(db, tmp_path, at=datetime(2027, 1, 1, tzinfo=UTC))
    assert later.removed == ["cam-2"]
    assert [line.split(":")[0] for line in (tmp_path / "passwd").read_text().splitlines()] == ["cam-1"]


def test_every_gateway_named_by_a_binding_in_force_gets_an_account(db: psycopg.Connection, tmp_path: Path) -> None:
    _bind(db, "cam-1", gateway="vms-1")
    _bind(db, "cam-2", gateway="vms-1")
    _bind(db, "cam-3", until=datetime(2026, 6, 1, tzinfo=UTC), gateway="vms-old")
    _bind(db, "cam-4")
    first = export_mosquitto(db, tmp_path, at=AT)
    again = export_mosquitto(db, tmp_path, at=AT)
    assert first.created == ["cam-1", "cam-2", "cam-4", "vms-1"]
    assert [r for r in _credentials(first) if r["id"] == "vms-1"] == [
        {"id": "vms-1", "role": "gateway", "mqtt_username": "vms-1", "mqtt_password": _secrets(first)["vms-1"],
         "topic": "gateways/vms-1/heartbeats"}]
    assert (again.created, again.kept) == ([], ["cam-1", "cam-2", "cam-4", "vms-1"])


def test_a_gateway_no_binding_in_force_names_loses_its_account(db: psycopg.Connection, tmp_path: Path) -> None:
    _bind(db, "cam-1", until=datetime(2026, 12, 1, tzinfo=UTC), gateway="vms-1")
    export_mosquitto(db, tmp_path, at=AT)
    later = export_mosquitto(db, tmp_path, at=datetime(2027, 1, 1, tzinfo=UTC))
    assert sorted(later.removed) == ["cam-1", "vms-1"]


def test_an_id_that_is_both_a_device_and_a_gateway_is_refused_and_nothing_written(db: psycopg.Connection,
                                                                                  tmp_path: Path) -> None:
    _bind(db, "cam-1", gateway="cam-2")
    _bind(db, "cam-2")
    with pytest.raises(ValueError, match="cam-2: both a device and a gateway"):
        export_mosquitto(db, tmp_path, at=AT)
    assert not (tmp_path / "passwd").exists()


def test_the_deployed_first_acl_grants_ingest_what_every_export_does() -> None:
    deployed = (Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "acl").read_text()
    rules = [line for line in ACL.splitlines() if line and not line.startswith("#")]
    assert rules and all(rule in deployed.splitlines() for rule in rules)
    assert "pattern" not in deployed


def test_the_acl_names_every_account_with_its_own_topic_and_no_pattern(db: psycopg.Connection,
                                                                        tmp_path: Path) -> None:
    _bind(db, "cam-1", gateway="vms-1")
    _bind(db, "cam-2")
    export_mosquitto(db, tmp_path, at=AT, ingest_accounts=("citykpi-ingest", "citykpi-ingest-2"))
    rules = [line for line in (tmp_path / "acl").read_text().splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user citykpi-ingest", "topic read devices/+/heartbeat", "topic read gateways/+/heartbeats",
        "user citykpi-ingest-2", "topic read devices/+/heartbeat", "topic read gateways/+/heartbeats",
        "user cam-1", "topic write devices/cam-1/heartbeat",
        "user cam-2", "topic write devices/cam-2/heartbeat",
        "user vms-1", "topic write gateways/vms-1/heartbeats"]


def test_the_services_own_accounts_are_kept_and_a_device_cannot_take_their_names(db: psycopg.Connection,
                                                                              tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text(f"citykpi-ingest:{mosquitto_hash('a')}\ncitykpi-ingest-2:{mosquitto_hash('b')}\n")
    _bind(db, "cam-1")
    result = export_mosquitto(db, tmp_path, at=AT)
    _bind(db, "citykpi-simulator")                          # a database edited by hand: the import refuses it
    with pytest.raises(ValueError, match="citykpi-simulator: not usable as broker account names"):
        export_mosquitto(db, tmp_path, at=AT)
    with pytest.raises(ValueError, match="an ingest account's name starts with 'citykpi-'"):
        export_mosquitto(db, tmp_path, at=AT, ingest_accounts=("cam-1",))
    assert result.removed == []
    assert [line.split(":")[0] for line in (tmp_path / "passwd").read_text().splitlines()] == [
        "cam-1", "citykpi-ingest", "citykpi-ingest-2"]


@pytest.fixture
def secured_broker(tmp_path: Path):
    if find_mosquitto() is None:
        missing("mosquitto is not installed (apt-get install mosquitto); amqtt cannot enforce Mosquitto ACLs")
    accounts = tmp_path / "accounts"
    # As deploy/mosquitto/mosquitto.conf: a client's id is its user name.
    yield accounts, lambda: LocalMqttBroker(
        implementation="mosquitto", security=f"password_file {accounts / 'passwd'}\nacl_file {accounts / 'acl'}\n"
        "use_username_as_clientid true\n").start()


def _client(broker: LocalMqttBroker, user: str, password: str, client_id: str | None = None
            ) -> tuple[mqtt.Client, int]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-test", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    outcome: list[int] = []
    client.on_connect = lambda c, u, f, reason, p: outcome.append(reason.value)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    wait_for(lambda: bool(outcome), what=f"{user}'s CONNACK")
    return client, outcome[0]


@contextmanager
def _listening_ingest(accounts: Path, start_broker, topics: list[str]) -> Iterator[tuple[Callable, int, list[str]]]:
    """The exported accounts plus ingest's own (which the registry export does not write), the broker, and
    ingest's account subscribed to `topics` (QoS 1). Yields a `connect(user, password)` for more clients,
    ingest's CONNACK code and the topics it receives; every client and the broker are closed on the way out."""
    with (accounts / "passwd").open("a", encoding="utf-8") as f:
        f.write(f"{INGEST_ACCOUNT}:{mosquitto_hash('ingest-secret')}\n")
    broker = start_broker()
    clients: list[mqtt.Client] = []

    def connect(user: str, password: str, client_id: str | None = None) -> tuple[mqtt.Client, int]:
        client, code = _client(broker, user, password, client_id)
        clients.append(client)
        return client, code

    try:
        ingest, code = connect(INGEST_ACCOUNT, "ingest-secret", INGEST_ACCOUNT)
        received: list[str] = []
        subscribed = threading.Event()
        lost: list[object] = []
        ingest.on_disconnect = lambda c, u, flags, reason, p: lost.append(reason)
        ingest.on_message = lambda c, u, m: received.append(m.topic)
        ingest.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        ingest.subscribe([(topic, 1) for topic in topics])
        assert subscribed.wait(10)
        yield connect, code, received
        assert lost == [], "ingest's connection was taken over"
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        broker.close()


def test_mosquitto_refuses_a_device_speaking_for_another(db: psycopg.Connection, secured_broker) -> None:
    accounts, start_broker = secured_broker
    _bind(db, "cam-1")
    _bind(db, "cam-2")
    secrets = _secrets(export_mosquitto(db, accounts, at=AT))
    with _listening_ingest(accounts, start_broker, ["devices/+/heartbeat"]) as (connect, ingest_code, received):
        device, device_code = connect("cam-1", secrets["cam-1"])
        acks: dict[int, int] = {}
        device.on_publish = lambda c, u, mid, reason, p: acks.__setitem__(mid, reason.value)
        body = json.dumps({"device_id": "cam-2", "kind": "cctv", "ts": AT.isoformat()})
        spoofed = device.publish("devices/cam-2/heartbeat", body, qos=1)
        own = device.publish("devices/cam-1/heartbeat", body.replace("cam-2", "cam-1"), qos=1)
        wait_for(lambda: own.mid in acks and spoofed.mid in acks, what="both PUBACKs")
        wait_for(lambda: "devices/cam-1/heartbeat" in received, what="the device's own heartbeat")

        _, wrong_password_code = connect("cam-2", "not-its-secret")
        assert (ingest_code, device_code) == (0, 0)
        assert acks[own.mid] == 0
        assert acks[spoofed.mid] == 135  # MQTT 5 "Not authorized"
        assert received == ["devices/cam-1/heartbeat"]
        assert wrong_password_code in (134, 135)  # "Bad user name or password" / "Not authorized"


def test_mosquitto_lets_a_gateway_publish_on_its_topic_only(db: psycopg.Connection, secured_broker) -> None:
    accounts, start_broker = secured_broker
    _bind(db, "cam-1", gateway="vms-1")
    _bind(db, "cam-2", gateway="vms-2")
    secrets = _secrets(export_mosquitto(db, accounts, at=AT))
    with _listening_ingest(accounts, start_broker, ["devices/+/heartbeat", "gateways/+/heartbeats"]) as (
            connect, _, received):
        gateway, gateway_code = connect("vms-1", secrets["vms-1"])
        acks: dict[int, int] = {}
        gateway.on_publish = lambda c, u, mid, reason, p: acks.__setitem__(mid, reason.value)
        body = json.dumps([{"device_id": "cam-1", "kind": "cctv", "ts": AT.isoformat()}])
        own = gateway.publish("gateways/vms-1/heartbeats", body, qos=1)
        other = gateway.publish("gateways/vms-2/heartbeats", body, qos=1)
        as_camera = gateway.publish("devices/cam-1/heartbeat", body, qos=1)
        wait_for(lambda: {own.mid, other.mid, as_camera.mid} <= set(acks), what="three PUBACKs")
        wait_for(lambda: "gateways/vms-1/heartbeats" in received, what="the gateway's own report")

        assert gateway_code == 0
        assert (acks[own.mid], acks[other.mid], acks[as_camera.mid]) == (0, 135, 135)  # 135: "Not authorized"
        assert received == ["gateways/vms-1/heartbeats"]


def test_a_device_cannot_report_as_a_gateway_under_its_own_name(db: psycopg.Connection, secured_broker) -> None:
    accounts, start_broker = secured_broker
    _bind(db, "cam-1")
    secrets = _secrets(export_mosquitto(db, accounts, at=AT))
    with _listening_ingest(accounts, start_broker, ["devices/+/heartbeat", "gateways/+/heartbeats"]) as (
            connect, _, received):
        device, _ = connect("cam-1", secrets["cam-1"])
        acks: dict[int, int] = {}
        device.on_publish = lambda c, u, mid, reason, p: acks.__setitem__(mid, reason.value)
        body = json.dumps([{"device_id": "cam-9", "kind": "cctv", "ts": AT.isoformat()}])
        as_gateway = device.publish("gateways/cam-1/heartbeats", body, qos=1)
        own = device.publish("devices/cam-1/heartbeat", body, qos=1)
        wait_for(lambda: {as_gateway.mid, own.mid} <= set(acks), what="both PUBACKs")
        wait_for(lambda: "devices/cam-1/heartbeat" in received, what="the device's own heartbeat")
        assert (acks[as_gateway.mid], acks[own.mid]) == (135, 0)
        assert received == ["devices/cam-1/heartbeat"]


def test_a_device_using_ingests_client_id_does_not_take_its_session(db: psycopg.Connection, secured_broker) -> None:
    accounts, start_broker = secured_broker
    _bind(db, "cam-1")
    secrets = _secrets(export_mosquitto(db, accounts, at=AT))
    with _listening_ingest(accounts, start_broker, ["devices/+/heartbeat"]) as (connect, _, received):
        device, code = connect("cam-1", secrets["cam-1"], INGEST_ACCOUNT)    # ingest's well-known client id
        device.publish("devices/cam-1/heartbeat", "{}", qos=1)
        # Delivered to ingest's session: it is still connected (the fixture checks it never lost its connection).
        wait_for(lambda: received == ["devices/cam-1/heartbeat"], what="the heartbeat reaching ingest")
        assert code == 0


def test_vendor_topics_of_a_mapping_file_are_each_accounts_own_and_ingest_reads_them(
        db: psycopg.Connection, tmp_path: Path) -> None:
    _bind(db, "cam-1", gateway="vms-1")
    _bind(db, "disp-4")
    export_mosquitto(db, tmp_path, at=AT, device_topics=("tele/{id}/#",), gateway_topics=("vms/{id}/cameras",))
    rules = [line for line in (tmp_path / "acl").read_text().splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user citykpi-ingest", "topic read devices/+/heartbeat", "topic read gateways/+/heartbeats",
        "topic read tele/+/#", "topic read vms/+/cameras",
        "user cam-1", "topic write devices/cam-1/heartbeat", "topic write tele/cam-1/#",
        "user disp-4", "topic write devices/disp-4/heartbeat", "topic write tele/disp-4/#",
        "user vms-1", "topic write gateways/vms-1/heartbeats", "topic write vms/vms-1/cameras"]


@pytest.mark.parametrize(("template", "problem"), [
    ("tele/+/{id}", "no wildcard but a final '#'"), ("tele/x{id}/STATE", "one whole level, once"),
    ("tele/STATE", "one whole level, once"), ("{id}/{id}", "one whole level, once"),
    ("$SYS/{id}", "not a topic a device may write")])
def test_a_vendor_topic_template_that_could_speak_for_others_is_refused(db: psycopg.Connection, tmp_path: Path,
                                                                       template: str, problem: str) -> None:
    _bind(db, "cam-1")
    with pytest.raises(ValueError, match=problem):
        export_mosquitto(db, tmp_path, at=AT, device_topics=(template,))
    assert not (tmp_path / "acl").exists()


def test_mosquitto_holds_a_device_to_its_own_vendor_topic(db: psycopg.Connection, secured_broker) -> None:
    accounts, start_broker = secured_broker
    _bind(db, "disp-4")
    _bind(db, "disp-5")
    secrets = _secrets(export_mosquitto(db, accounts, at=AT, device_topics=("tele/{id}/#",)))
    with _listening_ingest(accounts, start_broker, ["tele/+/STATE"]) as (connect, _, received):
        device, code = connect("disp-4", secrets["disp-4"])
        acks: dict[int, int] = {}
        device.on_publish = lambda c, u, mid, reason, p: acks.__setitem__(mid, reason.value)
        own = device.publish("tele/disp-4/STATE", b'{"POWER": "ON"}', qos=1)
        other = device.publish("tele/disp-5/STATE", b'{"POWER": "ON"}', qos=1)
        wait_for(lambda: {own.mid, other.mid} <= set(acks), what="two PUBACKs")
        wait_for(lambda: "tele/disp-4/STATE" in received, what="the device's own state")
        assert code == 0
        assert (acks[own.mid], acks[other.mid]) == (0, 135)
        assert received == ["tele/disp-4/STATE"]
