"""Mapping files (ingest/mapping/): compiled once with every mistake named, applied to vendor messages with every
problem naming the mapping and its path, and — through the real broker and database — held to exactly what a
native heartbeat is held to."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from base.settings import Settings
from citykpi.cli import main
from ingest.decode import Limits, decode_mapped
from ingest.mapping.apply import apply_mapping
from ingest.mapping.paths import PathError, Where, compile_path
from ingest.mapping.routes import Routes
from ingest.mapping.spec import MappingError, load_mappings, parse_mappings
from ingest.service import MqttIngest
from tests.helpers import BACKENDS, wait_for
from tests.test_mqtt_ingest import _run_ingest, started_ingest

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples" / "mappings"
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime.now(UTC).replace(microsecond=0)


def _one(text: str):
    import tomllib

    return parse_mappings(tomllib.loads("[[mapping]]\n" + text), "m.toml")[0]


def _apply(mapping_text: str, document: object, topic: str = "x/dev-1/y"):
    return apply_mapping(_one(mapping_text), document, topic_levels=tuple(topic.split("/")), received_at=NOW,
                         zone=ZONE)


BASE = 'name = "m"\nmqtt = "x/+/y"\ndevice_id = "topic[1]"\n'


# ---- compiling: every mistake named by file, mapping and key ------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("", "m.toml: no [[mapping]] tables"),
    ("[[mapping]]\nname = 'a b'", "m.toml: mapping 'a b': name: required"),
    ("[[mapping]]\nname = 'm'\ndevice_id = 'id'", "mapping 'm': exactly one of mqtt (a topic filter) or kafka"),
    ("[[mapping]]\nname = 'm'\nmqtt = 'a/#/b'\ndevice_id = 'id'", "mqtt: 'a/#/b': '#' only as the whole last level"),
    ("[[mapping]]\nname = 'm'\nmqtt = '$SYS/#'\ndevice_id = 'id'", "topics starting with '$' belong to the broker"),
    ("[[mapping]]\nname = 'm'\nmqtt = 'a/+'", "device_id: required"),
    ("[[mapping]]\n" + BASE + "kind = 'toaster'", "kind: 'toaster' is neither 'registry' nor one of"),
    ("[[mapping]]\n" + BASE + "colour = 1", "mapping 'm': keys: unknown key 'colour'"),
    ("[[mapping]]\n" + BASE + "measurements.pm25 = 'values..pm25'",
     "measurements.pm25: 'values..pm25': cannot read a key or [index] at '.pm25'"),
    ("[[mapping]]\n" + BASE + "checks.ok = { path = 'a', healthy_when = { above = 3 } }",
     "checks.ok.healthy_when: unknown rule 'above'"),
    ("[[mapping]]\n" + BASE + "checks.ok = { path = 'a', healthy_when = { range = [5, 1] } }", "low ≤ high"),
    ("[[mapping]]\n" + BASE + "ts = { path = 't', format = 'dd/MM/yyyy QQ' }", "ts.format: 'dd/MM/yyyy QQ'"),
    ("[[mapping]]\n" + BASE + "gateway_id = 'vms'", "gateway_id: only a topic level or the Kafka key"),
    ("[[mapping]]\n" + BASE + "status = { path = 's', ok = ['a'], fault = ['a'] }", "'a' is both ok and fault"),
    ("[[mapping]]\n" + BASE + "status = { path = 's', ok = [[1]] }", "status.ok: [1] is not a string, number"),
    ("[[mapping]]\n" + BASE + "metrics.x = { path = 'a', scale = 0 }", "metrics.x.scale: a finite, non-zero"),
    ("[[mapping]]\n" + BASE + "[[mapping]]\n" + BASE, "mapping 'm': the name is used twice"),
])
def test_a_mistake_in_a_mapping_file_is_named(text: str, expected: str, tmp_path: Path) -> None:
    file = tmp_path / "m.toml"
    file.write_text(text)
    with pytest.raises(MappingError) as caught:
        load_mappings(file)
    assert str(caught.value).startswith(f"{file}: ") or expected.startswith("m.toml")
    assert expected.removeprefix("m.toml: ") in str(caught.value)


def test_a_file_that_is_not_toml_or_too_large_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[mapping]\n")
    with pytest.raises(MappingError, match=rf"^{bad}: not TOML: "):
        load_mappings(bad)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(MappingError, match=rf"^{big}: 1048577 bytes > 1048576"):
        load_mappings(big)
    with pytest.raises(MappingError, match="cannot be read"):
        load_mappings(tmp_path / "missing.toml")


@pytest.mark.parametrize(("path", "document", "value"), [
    ("a.b[1].c", {"a": {"b": [{}, {"c": 3}]}}, 3),
    ('values["pm2.5"]', {"values": {"pm2.5": 7}}, 7),
    ("list[-1]", {"list": [1, 2, 9]}, 9),
    ("$.root", {"root": "r"}, "r"),
])
def test_paths_read_keys_indexes_quoted_keys_and_the_root(path: str, document: dict, value: object) -> None:
    assert compile_path(path).read(Where(document, document)) == value


@pytest.mark.parametrize("path", ["", "a.", ".a", "a[x]", "a b", "$a", "a" + ".b" * 16])
def test_a_path_that_cannot_be_read_is_refused_at_load(path: str) -> None:
    with pytest.raises(PathError):
        compile_path(path)


def test_topic_filters_match_as_mqtt_does() -> None:
    routes = Routes(load_mappings(EXAMPLES / "vms-cameras.toml") + load_mappings(EXAMPLES / "tasmota.toml"))
    assert routes.mqtt_filters == ["vms/+/cameras", "tele/+/STATE", "tele/+/LWT"]
    assert routes.for_topic(["vms", "vms-1", "cameras"]).name == "vms-cameras"
    assert routes.for_topic(["tele", "plug", "STATE"]).name == "tasmota-state"
    assert routes.for_topic(["vms", "vms-1", "cameras", "extra"]) is None
    assert routes.for_topic(["tele", "plug", "LWT"]).name == "tasmota-lwt"
    assert routes.for_topic(["tele", "plug", "SENSOR"]) is None


# ---- applying: the heartbeat a vendor message becomes, or each problem with its path -----------------------

def test_a_missing_path_names_the_mapping_the_key_and_the_path() -> None:
    out = _apply(BASE + "ts = 'time'\nmeasurements.pm25 = 'values.pm25'", {"time": NOW.isoformat(), "values": {}})
    assert out.heartbeats == []
    assert out.problems == ["mapping 'm': measurements.pm25: nothing at 'values.pm25'"]


def test_optional_fields_may_be_absent_and_numbers_are_scaled() -> None:
    out = _apply(BASE + "measurements.t = { path = 'raw', scale = 0.1 }\nmetrics.x = { path = 'x', optional = true }",
                 {"raw": 281})
    (heartbeat, position), = out.heartbeats
    assert heartbeat == {"device_id": "dev-1", "ts": NOW, "measurements": {"t": pytest.approx(28.1)},
                         "metrics": {}}


@pytest.mark.parametrize(("value", "problem"), [
    ("12", "measurements.v: '12' at 'v' is not a finite number (from_text = true reads numbers written as text)"),
    (True, "measurements.v: True at 'v' is not a finite number"),
    (2 ** 70, "is beyond 64 bits"),
    ({"nested": 1}, "measurements.v: {'nested': 1} at 'v' is not a finite number"),
])
def test_a_value_of_the_wrong_type_is_a_problem_not_a_guess(value: object, problem: str) -> None:
    out = _apply(BASE + "measurements.v = 'v'", {"v": value})
    assert out.heartbeats == []
    assert problem in out.problems[0]


def test_numbers_written_as_text_are_read_only_in_ascii_when_asked() -> None:
    mapping = BASE + "measurements.v = { path = 'v', from_text = true }"
    assert _apply(mapping, {"v": " 12.5 "}).heartbeats[0][0]["measurements"] == {"v": 12.5}
    for text in ("١٢٣", "1_0", "nan", "inf", "0x10"):
        assert "is not a number" in _apply(mapping, {"v": text}).problems[0]


@pytest.mark.parametrize(("form", "value", "expected"), [
    ("epoch_ms", 1796355000000, "2026-12-04T03:30:00+00:00"),
    ("epoch_s", 1796355000, "2026-12-04T03:30:00+00:00"),
    ("rfc3339", "2026-12-04T10:30:00+07:00", "2026-12-04T10:30:00+07:00"),
    ("local", "2026-12-04T10:30:00", "2026-12-04T10:30:00+07:00"),
    ("yyyyMMddHHmmss", "20261204103000", "2026-12-04T10:30:00+07:00"),
    ("yyyyMMddHHmmss", 20261204103000, "2026-12-04T10:30:00+07:00"),
    ("dd/MM/yyyy HH:mm", "04/12/2026 10:30", "2026-12-04T10:30:00+07:00"),
])
def test_time_formats_read_in_the_provinces_zone_where_the_sender_gives_none(form: str, value: object,
                                                                            expected: str) -> None:
    out = _apply(BASE + f"ts = {{ path = 't', format = '{form}' }}", {"t": value})
    assert out.heartbeats[0][0]["ts"].isoformat() == expected


@pytest.mark.parametrize(("form", "value"), [
    ("epoch_ms", "1796355000000"), ("epoch_s", 10 ** 15), ("rfc3339", "2026-12-04T10:30:00"),
    ("yyyyMMddHHmmss", "2026120410"), ("local", "x" * 100)])
def test_a_time_the_format_cannot_read_is_a_problem_naming_the_format(form: str, value: object) -> None:
    problem, = _apply(BASE + f"ts = {{ path = 't', format = '{form}' }}", {"t": value}).problems
    assert problem.startswith("mapping 'm': ts: ") and f"is not a {form if form != 'yyyyMMddHHmmss' else '%Y'}" \
        in problem


def test_healthy_when_rules_and_status_words() -> None:
    mapping = BASE + ("checks.power = { path = 'p', healthy_when = { equals = 'ON' } }\n"
                      "checks.signal = { path = 's', healthy_when = { range = [-85, 0] } }\n"
                      "checks.mode = { path = 'm', healthy_when = { one_of = [1, 2] } }\n"
                      "status = { path = 'st', ok = ['RUN'], degraded = ['MAINT'], otherwise = 'fault' }")
    heartbeat = _apply(mapping, {"p": "ON", "s": -90, "m": True, "st": "MAINT"}).heartbeats[0][0]
    # A JSON true is not the number 1 a vendor documents.
    assert heartbeat["checks"] == {"power": True, "signal": False, "mode": False}
    assert heartbeat["status"] == "degraded"
    assert _apply(mapping, {"p": "ON", "s": -60, "m": 2, "st": "???"}).heartbeats[0][0]["status"] == "fault"


def test_an_array_of_devices_and_an_array_of_readings() -> None:
    cameras = load_mappings(EXAMPLES / "vms-cameras.toml")[0]
    document = json.loads((EXAMPLES / "samples" / "vms-cameras.json").read_text())
    document["cameras"].insert(1, {"name": "no id"})
    out = apply_mapping(cameras, document, topic_levels=("vms", "vms-1", "cameras"), received_at=NOW, zone=ZONE)
    assert [(h["device_id"], h["checks"]["stream_ok"], position) for h, position in out.heartbeats] == [
        ("cam-001", True, 0), ("cam-002", False, 2), ("cam-003", True, 3)]
    assert out.problems == ["mapping 'vms-cameras': [1] device_id: nothing at 'id'"]

    station = load_mappings(EXAMPLES / "env-station.toml")[0]
    document = json.loads((EXAMPLES / "samples" / "env-station.json").read_text())
    (heartbeat, _), = apply_mapping(station, document, topic_levels=("stations", "BDI-KK-01", "data"),
                                    received_at=NOW, zone=ZONE).heartbeats
    # SO2's instrument is calibrating: the station is degraded and SO2 is no measurement.
    assert heartbeat["status"] == "degraded"
    assert heartbeat["measurements"] == {"PM2_5": 23.4, "PM10": 41.2, "NO2": 18.7}
    document["data"][2]["status"] = "02"
    (heartbeat, _), = apply_mapping(station, document, topic_levels=("stations", "BDI-KK-01", "data"),
                                    received_at=NOW, zone=ZONE).heartbeats
    assert heartbeat["status"] == "fault"


@pytest.mark.parametrize(("payload", "reason", "detail"), [
    (b"[" * 30_000 + b"]" * 30_000, "not_json", "mapping 'vms-cameras': "),
    (json.dumps({"time": NOW.isoformat(), "cameras": [{"id": f"c{n}", "online": True} for n in range(1001)]}).encode(),
     "mapping", "mapping 'vms-cameras': each: 1001 items > 1000"),
    (b'{"time": "x", "cameras": "all"}', "mapping", "mapping 'vms-cameras': each: no list at 'cameras'"),
    (json.dumps({"time": NOW.isoformat(), "cameras": [{"id": "bad id!", "online": True}]}).encode(),
     "schema", "mapping 'vms-cameras': [0] device_id: String should match pattern"),
    (json.dumps({"time": (NOW - timedelta(days=8)).isoformat(), "cameras": [{"id": "c1", "online": True}]}).encode(),
     "ts_too_old", "mapping 'vms-cameras': [0] ts "),
    (b"\xff\xfe", "not_json", "mapping 'vms-cameras': "),
    (b"x" * 70_000, "too_large", "mapping 'vms-cameras': 70000 bytes > 65536"),
])
def test_hostile_mapped_messages_are_refused_naming_the_mapping(payload: bytes, reason: str, detail: str) -> None:
    cameras = load_mappings(EXAMPLES / "vms-cameras.toml")[0]
    decoded = decode_mapped(payload, cameras, topic_levels=("vms", "vms-1", "cameras"), received_at=NOW,
                            limits=Limits(), zone=ZONE)
    assert decoded.accepted == []
    assert decoded.rejected[0].reason == reason
    assert decoded.rejected[0].detail.startswith(detail)


@pytest.mark.parametrize("change", [
    {}, {"kind": "cctv"}, {"kind": "toaster"}, {"device_id": "a b"}, {"device_id": "x" * 65}, {"seq": -1},
    {"seq": 3}, {"status": "degraded"}, {"status": "broken"}, {"checks": {"a": 1}}, {"checks": {"a": False}},
    {"metrics": {"a": float("nan")}}, {"metrics": {"a": 2 ** 64}}, {"measurements": {"a": "1"}},
    {"measurements": {}}, {"measurements": {"pm": 1.5}}, {"extra": 1}])
def test_the_mapped_fast_path_agrees_with_the_contracts_model(change: dict) -> None:
    """What a mapping made is accepted by plain type checks; the model, which names the reason of a refusal,
    accepts and refuses the same, with the same values."""
    from ingest.fastpath import accept_mapped
    from ingest.message import Accepted
    from ingest.schema import MappedHeartbeat

    made = {"device_id": "dev-1", "ts": NOW, "checks": {"ok": True}} | change
    fast = accept_mapped(made)
    try:
        model = Accepted.of(MappedHeartbeat.model_validate(made | {"ts": made["ts"].isoformat()}))
    except ValueError:
        model = None
    assert (fast is None) == (model is None)
    assert fast is None or Accepted._make(fast) == model


# ---- the command an operator writes a mapping with ---------------------------------------------------------

def test_mappings_check_prints_the_heartbeats_of_a_sample(capsys: pytest.CaptureFixture) -> None:
    status = main(["mappings", "check", str(EXAMPLES / "tasmota.toml"), "--sample",
                   str(EXAMPLES / "samples" / "tasmota-state.json"), "--topic", "tele/disp-4/STATE"])
    out, err = capsys.readouterr()
    assert status == 0
    assert json.loads(out) == {
        "device_id": "disp-4", "kind": "bus_display", "ts": "2026-12-04T10:15:00+07:00", "seq": None,
        "status": "ok", "checks": {"power_ok": True, "uplink_ok": True},
        "metrics": {"uptime_s": 274375, "wifi_signal_dbm": -61, "load_avg": 19}, "measurements": None,
        "healthy": True}
    assert err.endswith("mapping 'tasmota-state': 1 heartbeat(s), 0 problem(s)\n")


def test_mappings_check_says_what_is_wrong_and_exits_non_zero(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    sample = tmp_path / "s.json"
    sample.write_text('{"Time": "2026-12-04T10:15:00", "POWER": "OFF", "UptimeSec": 5}')
    status = main(["mappings", "check", str(EXAMPLES / "tasmota.toml"), "--sample", str(sample),
                   "--topic", "tele/disp-4/STATE"])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert "mapping: mapping 'tasmota-state': checks.uplink_ok: nothing at 'Wifi.Signal'" in err
    assert main(["mappings", "check", str(EXAMPLES / "tasmota.toml"), "--sample", str(sample),
                 "--topic", "tele/disp-4/SENSOR"]) == 1
    assert "no mapping of" in capsys.readouterr().err
    assert main(["mappings", "check", str(EXAMPLES / "tasmota.toml"), "--sample", str(sample),
                 "--topic", "tele/disp-4/LWT"]) == 1
    assert "mapping 'tasmota-lwt': availability:" in capsys.readouterr().err


# ---- through Mosquitto and PostgreSQL ---------------------------------------------------------------------

def _local(moment: datetime) -> datetime:
    return moment.astimezone(ZONE)


def _samples_now(ts: datetime) -> dict[str, tuple[str, bytes]]:
    """Each shipped sample, its time moved to `ts` (the samples are dated; the lateness window is not)."""
    def sample(name: str) -> dict:
        return json.loads((EXAMPLES / "samples" / name).read_text())

    board = sample("thingsboard-telemetry.json")
    board["ts"] = int(ts.timestamp() * 1000)
    plug = sample("tasmota-state.json")
    plug["Time"] = _local(ts).replace(tzinfo=None).isoformat()
    station = sample("env-station.json")
    station["time"] = _local(ts).strftime("%Y%m%d%H%M%S")
    vms = sample("vms-cameras.json")
    vms["time"] = ts.isoformat()
    return {"thingsboard": ("tb/aq-17/telemetry", json.dumps(board).encode()),
            "tasmota": ("tele/disp-4/STATE", json.dumps(plug).encode()),
            "env-station": ("stations/BDI-KK-01/data", json.dumps(station).encode()),
            "vms-cameras": ("vms/vms-1/cameras", json.dumps(vms).encode())}


def _all_examples(tmp_path: Path) -> Path:
    combined = tmp_path / "mappings.toml"
    combined.write_text("\n".join((EXAMPLES / f"{name}.toml").read_text()
                                  for name in ("thingsboard", "tasmota", "env-station", "vms-cameras")))
    return combined


def _ingest(database_url: str, broker, mappings: Path, messages: list[tuple[str, bytes]]) -> MqttIngest:
    return _run_ingest(database_url, broker, messages, mappings=mappings)


def _register(db: psycopg.Connection, *devices: tuple[str, str, str | None]) -> None:
    for device_id, kind, gateway in devices:
        db.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s)", (device_id, kind))
        db.execute("INSERT INTO bindings (device_id, point_id, valid_from, gateway_id) VALUES (%s, 'P-1', %s, %s)",
                   (device_id, NOW - timedelta(days=30), gateway))
    db.commit()


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_shipped_sample_goes_through_the_broker_into_heartbeats(database_url: str, mqtt_broker,
                                                                     db: psycopg.Connection, tmp_path: Path) -> None:
    _register(db, ("aq-17", "air_monitor", None), ("disp-4", "bus_display", None),
              ("BDI-KK-01", "air_monitor", None),
              ("cam-001", "cctv", "vms-1"), ("cam-002", "cctv", "vms-1"), ("cam-003", "cctv", "vms-2"))
    ts = NOW - timedelta(minutes=3)
    _ingest(database_url, mqtt_broker, _all_examples(tmp_path), list(_samples_now(ts).values()))
    rows = db.execute("SELECT device_id, ts, kind, healthy, status, checks, measurements, source FROM heartbeats "
                      "ORDER BY device_id").fetchall()
    assert [(r["device_id"], r["kind"], r["healthy"], r["status"]) for r in rows] == [
        ("BDI-KK-01", "air_monitor", True, "degraded"),  # kind from the registry
        ("aq-17", "air_monitor", True, "ok"),
        ("cam-001", "cctv", True, "ok"),
        ("cam-002", "cctv", False, "ok"),
        ("disp-4", "bus_display", True, "ok")]
    assert {r["ts"] for r in rows} == {ts}
    assert rows[0]["measurements"] == {"PM2_5": 23.4, "PM10": 41.2, "NO2": 18.7}
    # cam-003 is bound to another VMS: this one may not report it.
    letters = db.execute("SELECT origin, reason, detail FROM dead_letters").fetchall()
    assert [(r["origin"], r["reason"]) for r in letters] == [("vms/vms-1/cameras", "gateway_not_bound")]
    assert "device cam-003" in letters[0]["detail"]


def test_a_device_the_registry_does_not_know_cannot_take_its_kind_from_it(database_url: str, mqtt_broker,
                                                                         db: psycopg.Connection,
                                                                         tmp_path: Path) -> None:
    """The contract stores an unknown device's heartbeat; a mapping that leaves the kind to the registry has
    none to store, so it is dead-lettered saying what to do. A mapping with a kind stores it as unknown."""
    ts = NOW - timedelta(minutes=3)
    samples = _samples_now(ts)
    _ingest(database_url, mqtt_broker, _all_examples(tmp_path), [samples["thingsboard"], samples["tasmota"]])
    stored = db.execute("SELECT device_id, kind FROM heartbeats").fetchall()
    assert [(r["device_id"], r["kind"]) for r in stored] == [("disp-4", "bus_display")]
    letter, = db.execute("SELECT origin, reason, detail FROM dead_letters").fetchall()
    assert (letter["origin"], letter["reason"]) == ("tb/aq-17/telemetry", "kind_unknown")
    assert letter["detail"].startswith("device aq-17 is not in the registry, and the mapping of its message takes")


def test_a_monitor_whose_kind_comes_from_the_registry_is_healthy_only_while_it_measures(
        database_url: str, mqtt_broker, db: psycopg.Connection, tmp_path: Path) -> None:
    _register(db, ("aq-17", "air_monitor", None), ("wifi-9", "wifi_ap", None))
    ts = NOW - timedelta(minutes=3)
    silent = json.dumps({"ts": int(ts.timestamp() * 1000), "values": {"online": True}}).encode()
    _ingest(database_url, mqtt_broker, _all_examples(tmp_path),
            [("tb/aq-17/telemetry", silent), ("tb/wifi-9/telemetry", silent)])
    rows = db.execute("SELECT device_id, kind, healthy FROM heartbeats ORDER BY device_id").fetchall()
    assert [(r["device_id"], r["kind"], r["healthy"]) for r in rows] == [
        ("aq-17", "air_monitor", False), ("wifi-9", "wifi_ap", True)]


def test_mapped_and_native_heartbeats_of_the_same_behaviour_are_stored_alike(database_url: str, mqtt_broker,
                                                                            db: psycopg.Connection,
                                                                            tmp_path: Path) -> None:
    """What a KPI reads of a heartbeat (kind, time, health, status, measurements) is the same whichever way it
    came: the same readings, once as ThingsBoard telemetry and once as our own heartbeat, from two devices."""
    _register(db, ("aq-mapped", "air_monitor", None), ("aq-native", "air_monitor", None))
    messages = []
    for minutes, pm25 in ((50, 20.5), (30, None), (10, 31.0)):
        ts = NOW - timedelta(minutes=minutes)
        values = {"online": True} | ({"pm25": pm25} if pm25 is not None else {})
        messages.append(("tb/aq-mapped/telemetry",
                         json.dumps({"ts": int(ts.timestamp() * 1000), "values": values}).encode()))
        native = {"device_id": "aq-native", "kind": "air_monitor", "ts": ts.isoformat(),
                  "checks": {"uplink_ok": True}} | ({"measurements": {"pm25": pm25}} if pm25 is not None else {})
        messages.append(("devices/aq-native/heartbeat", json.dumps(native).encode()))
    _ingest(database_url, mqtt_broker, _all_examples(tmp_path), messages)
    rows = db.execute("SELECT device_id, ts, kind, healthy, status, checks, coalesce(measurements, '{}') AS m "
                      "FROM heartbeats ORDER BY ts, device_id").fetchall()
    mapped = [(r["ts"], r["kind"], r["healthy"], r["status"], r["checks"], r["m"]) for r in rows
              if r["device_id"] == "aq-mapped"]
    native = [(r["ts"], r["kind"], r["healthy"], r["status"], r["checks"], r["m"]) for r in rows
              if r["device_id"] == "aq-native"]
    assert len(mapped) == 3 and mapped == native
    assert [healthy for _, _, healthy, *_ in mapped] == [True, False, True]


@pytest.mark.kafka
def test_a_kafka_topic_read_through_a_mapping_beside_the_native_one(database_url: str, kafka_bootstrap: str,
                                                                   db: psycopg.Connection, tmp_path: Path) -> None:
    from ingest.service import KafkaIngest
    from tests.kafka_helpers import produce

    suffix = uuid.uuid4().hex[:8]
    native_topic, vendor_topic = f"heartbeats-{suffix}", f"tb-{suffix}"
    mappings = tmp_path / "kafka.toml"
    mappings.write_text(f"""
[[mapping]]
name = "tb-kafka"
kafka = "{vendor_topic}"
device_id = "key"
kind = "air_monitor"
ts = {{ path = "ts", format = "epoch_ms" }}
measurements.pm25 = "values.pm25"
""")
    ts = NOW - timedelta(minutes=2)
    produce(kafka_bootstrap, vendor_topic, [
        (b"aq-1", json.dumps({"ts": int(ts.timestamp() * 1000), "values": {"pm25": 12.5}}).encode()),
        (b"aq-2", json.dumps({"ts": int(ts.timestamp() * 1000), "values": {}}).encode())])
    produce(kafka_bootstrap, native_topic, [(b"cam-1", json.dumps(
        {"device_id": "cam-1", "kind": "cctv", "ts": ts.isoformat()}).encode())])
    settings = Settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap, kafka_topic=native_topic,
                        kafka_group_id=f"group-{suffix}", batch_max_wait_s=0.05, kafka_commit_interval_s=0.2,
                        kafka_session_timeout_ms=6000, mappings=mappings)
    ingest = KafkaIngest(settings, database_url)
    ingest.start()
    wait_for(lambda: db.execute("SELECT (SELECT count(*) FROM heartbeats) + (SELECT count(*) FROM dead_letters)"
                                " AS n").fetchone()["n"] == 3, timeout_s=60, what="three outcomes")
    ingest.stop()
    rows = db.execute("SELECT device_id, kind, measurements, source FROM heartbeats ORDER BY device_id").fetchall()
    assert [(r["device_id"], r["kind"], r["measurements"], r["source"]) for r in rows] == [
        ("aq-1", "air_monitor", {"pm25": 12.5}, "kafka"), ("cam-1", "cctv", None, "kafka")]
    letter, = db.execute("SELECT origin, reason, detail FROM dead_letters").fetchall()
    assert letter["origin"].startswith(f"{vendor_topic}/") and letter["reason"] == "mapping"
    assert letter["detail"] == "mapping 'tb-kafka': measurements.pm25: nothing at 'values.pm25'"


def test_a_kafka_mapping_may_not_read_the_native_topic(tmp_path: Path) -> None:
    mappings = tmp_path / "m.toml"
    mappings.write_text('[[mapping]]\nname = "x"\nkafka = "heartbeats"\ndevice_id = "key"\n')
    with pytest.raises(MappingError, match="kafka topic 'heartbeats' carries native heartbeats"):
        Routes(load_mappings(mappings), native_kafka_topic="heartbeats")


def test_ingest_refuses_to_start_with_a_broken_mapping_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[[mapping]]\nname = "x"\nmqtt = "a/+"\ndevice_id = "topic[9"\n')
    monkeypatch.setenv("CITYKPI_MQTT_URL", "mqtt://127.0.0.1:9")  # never reached
    assert main(["ingest", "--mappings", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"citykpi ingest: {broken}: mapping 'x': device_id: 'topic[9': ")


def _simulate_into(database_url: str, broker, fleet, start: datetime, end: datetime, vendor: str,
                   mappings: Path) -> None:
    from simulators.run import backfill
    from simulators.transports import MqttTransport

    ingest = started_ingest(database_url, broker, mappings=mappings)
    report = backfill(fleet, MqttTransport(broker.url, client_id=f"sim-{uuid.uuid4().hex[:6]}"), start, end,
                      seed=11, vendor=vendor)
    wait_for(lambda: ingest.worker.totals.messages >= report.messages, what="every simulated message written")
    ingest.stop()


def test_a_fleet_sending_thingsboard_telemetry_gives_the_kpi_numbers_of_the_same_fleet_sending_heartbeats(
        server_url: str, migrated_template: str, mqtt_broker, tmp_path: Path) -> None:
    """The same simulated behaviour — outages, faults, flapping, monitors that stop measuring, duplicates, late
    and malformed messages — once in our format and once as ThingsBoard telemetry through the shipped mapping:
    the six sensor indicators come out the same, numerator and denominator."""
    from catalog import load_catalog
    from devstack.databases import scratch_database
    from kpi.indicators import all_sensor_values
    from kpi.point_rollups import refresh
    from simulators.faults import FaultShares
    from simulators.run import build_fleet

    catalog = load_catalog()
    kinds = {i.sensor.device_kind: i.sensor.category for i in catalog.sensor_indicators()}
    devices = [(f"{kind}-{n}", kind, 300) for kind in kinds for n in range(6)]
    start = (NOW - timedelta(hours=6)).replace(minute=0, second=0)
    end = NOW - timedelta(minutes=1)
    shares = FaultShares(outage=0.2, faulty=0.15, flapping=0.15, not_collecting=0.15, duplicates=0.2,
                         store_and_forward=0.1, malformed=0.3)
    # No VMS: in a vendor format every camera sends its own messages (simulators/stream.py).
    fleet = build_fleet(devices, shares, start, end, seed=11, gateways={})
    values = {}
    for vendor in ("native", "thingsboard"):
        with scratch_database(server_url, "citykpi_test", template=migrated_template) as url:
            with psycopg.connect(url) as conn:
                conn.execute("INSERT INTO admin_units (code, name, parent_code, level, valid_from) "
                             "VALUES ('52', 'Tỉnh', NULL, 'province', '-infinity')")
                for device_id, kind, _ in devices:
                    conn.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)"
                                 " VALUES (%s, %s, %s, '52', 13.7, 109.2, %s)",
                                 (f"P-{device_id}", device_id, [kinds[kind]], start))
                    conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s)", (device_id, kind))
                    conn.execute("INSERT INTO bindings (device_id, point_id, valid_from) VALUES (%s, %s, %s)",
                                 (device_id, f"P-{device_id}", start))
            _simulate_into(url, mqtt_broker, fleet, start, end, vendor, EXAMPLES / "thingsboard.toml")
            with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
                refresh(conn, catalog)
                day = _local(start).date()
                values[vendor] = [(v.code, v.numerator, v.denominator) for v in all_sensor_values(
                    conn, day, day + timedelta(days=2), settings=Settings(), now=NOW)]
                letters = conn.execute("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason").fetchall()
                assert letters, "the fleet's malformed messages were dead-lettered"
    assert values["thingsboard"] == values["native"]
    # The fleet's troubles show: not every point is covered, and not none.
    assert any(0 < numerator < denominator for _, numerator, denominator in values["native"]), values
