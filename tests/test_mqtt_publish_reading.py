"""`_Client` reads the usual MQTT 5 PUBLISH (QoS 0/1, no properties) itself instead of letting paho build a
`Properties` for it; whatever it reads must be exactly what paho reads, and anything else must go to paho.
Differential, over generated packets, against paho's own `_handle_publish`."""


import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.decode import DecodeStage, Limits
from ingest.handoff import Handoff
from ingest.mqtt.source import MqttSource, _Client


def _properties(user: list[tuple[str, str]], expiry: int | None) -> bytes:
    properties = Properties(PacketTypes.PUBLISH)
    if user:
        properties.UserProperty = user
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    return properties.pack()


@st.composite
def publish_packets(draw: st.DrawFn) -> tuple[int, bytes]:
    qos = draw(st.sampled_from([0, 1, 2]))
    header = 0x30 | draw(st.booleans()) << 3 | qos << 1 | draw(st.booleans())
    topic = draw(st.text(min_size=1, max_size=300)).encode()
    mid = draw(st.integers(1, 65535)).to_bytes(2, "big") if qos else b""
    properties = draw(st.one_of(
        st.just(b"\x00"),
        st.builds(_properties, st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=2),
                  st.one_of(st.none(), st.integers(0, 2**32 - 1)))))
    payload = draw(st.binary(max_size=600))
    packet = len(topic).to_bytes(2, "big") + topic + mid + properties + payload
    # Cut short, now and then: a malformed packet must be refused the way paho refuses it.
    return header, packet[:draw(st.one_of(st.just(len(packet)), st.integers(0, len(packet))))]


def _read(handle: object, client: mqtt.Client, header: int, packet: bytes) -> list[tuple]:
    seen: list[tuple] = []
    client._handle_on_message = lambda m: seen.append(  # type: ignore[method-assign]
        (m.topic, m.mid, m.qos, m.dup, m.retain, bytes(m.payload),
         m.properties.json() if m.properties is not None else None))
    client._in_packet = {"command": header, "packet": packet}
    try:
        result = handle(client)
    except Exception as exc:  # a malformed packet: both must refuse it, the same way
        return ["raised", type(exc).__name__, str(exc)]
    return [result, *seen]


@settings(max_examples=400, deadline=None)
@given(publish_packets())
def test_the_usual_publish_is_read_exactly_as_paho_reads_it(case: tuple[int, bytes]) -> None:
    header, packet = case
    ours = _Client(CallbackAPIVersion.VERSION2, client_id="ours", protocol=mqtt.MQTTv5, manual_ack=True)
    pahos = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho", protocol=mqtt.MQTTv5, manual_ack=True)
    assert _read(_Client._handle_publish, ours, header, packet) == _read(mqtt.Client._handle_publish, pahos,
                                                                         header, packet)


def test_a_publish_with_properties_or_qos_2_is_left_to_paho() -> None:
    """Not a tautology of the differential test: paho's path is the one that keeps a message's properties."""
    client = _Client(CallbackAPIVersion.VERSION2, client_id="ours", protocol=mqtt.MQTTv5, manual_ack=True)
    topic = b"devices/cam-1/heartbeat"
    with_user_property = _properties([("site", "hanoi")], None)
    packet = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + with_user_property + b"{}"
    [_result, seen] = _read(_Client._handle_publish, client, 0x32, packet)
    assert seen[6]["UserProperty"] == [("site", "hanoi")]
    assert seen[:6] == ("devices/cam-1/heartbeat", 7, 1, False, False, b"{}")


def test_a_topic_that_is_not_utf8_is_dead_lettered_as_a_device_mismatch_not_a_dead_network_thread() -> None:
    source = MqttSource("mqtt://127.0.0.1:1", client_id="ours")
    handoff = Handoff(10)
    source._handoff, source._decode = handoff, DecodeStage(Limits())
    source._accepting.set()
    topic = b"devices/cam-\xff/heartbeat"
    body = b'{"device_id": "cam-1", "kind": "cctv", "ts": "2026-01-01T00:00:00Z"}'
    source._client._in_packet = {"command": 0x32,
                                 "packet": len(topic).to_bytes(2, "big") + topic + b"\x00\x07\x00" + body}
    source._client._handle_publish()
    source._client.after_read()
    [message] = handoff.take(10, first_wait_s=0, max_wait_s=0, idle_s=0)
    assert message.origin == "devices/cam-\ufffd/heartbeat"
    assert [rejection.reason for rejection in message.decoded.rejected] == ["device_mismatch"]


def test_messages_go_straight_to_on_message_unless_a_per_topic_callback_is_registered() -> None:
    client = _Client(CallbackAPIVersion.VERSION2, client_id="ours", protocol=mqtt.MQTTv5, manual_ack=True)
    general: list[str] = []
    per_topic: list[str] = []
    client.on_message = lambda _c, _u, message: general.append(message.topic)
    client._handle_on_message(mqtt.MQTTMessage(mid=1, topic=b"devices/cam-1/heartbeat"))
    client.message_callback_add("gateways/#", lambda _c, _u, message: per_topic.append(message.topic))
    client._handle_on_message(mqtt.MQTTMessage(mid=2, topic=b"gateways/gw-1/heartbeats"))
    client._handle_on_message(mqtt.MQTTMessage(mid=3, topic=b"devices/cam-2/heartbeat"))
    assert general == ["devices/cam-1/heartbeat", "devices/cam-2/heartbeat"]
    assert per_topic == ["gateways/gw-1/heartbeats"]
