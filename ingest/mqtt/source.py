"""Subscribes to device and gateway heartbeat topics and hands the messages of each socket read to the sink.

The broker's delivery window (MQTT 5 Receive Maximum, Mosquitto's max_inflight_messages) bounds how
many unacknowledged messages can be with us at once; the hand-over is sized above it, so the network
thread only blocks if the sink is far behind, and then the broker holds the backlog, not our memory.
"""

import logging
import struct
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from base.brokers.mqtt import MqttTls, describe_connect_error, parse_mqtt_url
from ingest import metrics
from ingest.decode import DecodeStage
from ingest.handoff import Handoff
from ingest.mapping.paths import Where
from ingest.mapping.routes import Routes
from ingest.message import Message

log = logging.getLogger(__name__)

PUBACK = 0x40
# A PUBACK with success needs no reason code, in MQTT 3.1.1 and 5 alike: type, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")
# What every message that comes through `_Client`'s own PUBLISH reading carries: it had no properties, and
# nobody reads a heartbeat's properties. One object shared by all of them: never to be written to.
_NO_PROPERTIES = Properties(PacketTypes.PUBLISH)
# How long the broker keeps our session (subscriptions and unacknowledged messages) while we are away.
SESSION_EXPIRY_S = 7 * 24 * 3600


class _ReadAhead:
    """The broker's socket, read 64 KiB at a time.

    paho reads each packet with three or more `recv` calls (type byte, length bytes, body) and selects once
    per packet: one system call per few bytes. This serves those calls from one large read. `pending()` is
    how paho learns that bytes wait here (it asks the same of TLS sockets), so it does not block in select
    while they do. Everything else is the socket's own.
    """

    def __init__(self, sock: object) -> None:
        self._sock = sock
        self._buffer = b""
        self._position = 0

    def recv(self, size: int) -> bytes:
        if self._position >= len(self._buffer):
            data = self._sock.recv(max(size, 65536))  # exceptions (would block, TLS wants, lost) are paho's
            if len(data) <= size:
                return data
            self._buffer, self._position = data, 0
        start = self._position
        self._position = min(start + size, len(self._buffer))
        return self._buffer[start:self._position]

    def buffered(self) -> int:
        return len(self._buffer) - self._position

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buffer) - self._position + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class _Client(mqtt.Client):
    # Packets handled per select: enough to empty a 64 KiB read of heartbeats, few enough that acknowledgements
    # and keep-alives are sent in between.
    READ_BURST = 500
    # Called on paho's thread after each read's packets are handled: the messages they held go on together.
    after_read: Callable[[], None] | None = None
    # Why paho's network thread ended, if an exception ended it (paho itself only logs, if anything).
    thread_failure: BaseException | None = None

    def _thread_main(self) -> None:
        try:
            super()._thread_main()
        except Exception as exc:  # reported by MqttSource.failure: `citykpi ingest` then exits 1, saying why
            self.thread_failure = exc
            log.exception("the MQTT network thread stopped")

    def _create_socket(self) -> object:
        return _ReadAhead(super()._create_socket())

    def ack_many(self, acks: list[tuple[int, int]]) -> None:
        """`ack` of each (packet id, QoS), the QoS 1 ones as one write: paho would queue a 4-byte packet, wake
        its thread and call send() for every message. Uses paho's own packet queue when it has one."""
        queue_packet = getattr(self, "_packet_queue", None)
        pubacks = [mid for mid, qos in acks if qos == 1]
        if queue_packet is None or not pubacks:
            for mid, qos in acks:
                self.ack(mid, qos)
            return
        for mid, qos in acks:
            if qos != 1:
                self.ack(mid, qos)
        queue_packet(PUBACK, b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in pubacks), 0, 0)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """An MQTT 5 PUBLISH of QoS 0 or 1 without properties, read here; any other goes to paho.

        For every MQTT 5 PUBLISH paho builds a `Properties`, whose constructor fills two dicts describing all
        MQTT 5 properties, even when the packet has none: measured, a quarter of our CPU per heartbeat (168 µs
        against 123 µs with MQTT 3.1.1, which has no properties). Heartbeats carry none. Acknowledging stays
        manual, as for paho's own path (`manual_ack=True`).
        """
        # paho's debug line "Received PUBLISH …" is skipped here: nothing in ingest turns paho's logging on.
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if self._protocol != mqtt.MQTTv5 or qos > 1 or not self._manual_ack or len(packet) < 2:
            return super()._handle_publish()
        topic_end = 2 + int.from_bytes(packet[:2], "big")
        properties_at = topic_end + 2 if qos else topic_end
        # An empty topic (with a topic alias, itself a property) and malformed packets are paho's to judge.
        if topic_end == 2 or len(packet) <= properties_at or packet[properties_at] != 0:
            return super()._handle_publish()
        message = mqtt.MQTTMessage(mid=int.from_bytes(packet[topic_end:properties_at], "big") if qos else 0,
                                   topic=bytes(packet[2:topic_end]))
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = _NO_PROPERTIES
        message.payload = bytes(packet[properties_at + 1:])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        return mqtt.MQTT_ERR_SUCCESS

    # Set once anything registers a per-topic callback (paho's message_callback_add); citykpi does not.
    _per_topic_callbacks = False

    def message_callback_add(self, sub: str, callback: Callable[..., object]) -> None:
        self._per_topic_callbacks = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """Straight to `on_message`: paho first walks its matcher of per-topic callbacks under two locks for
        every message, even with none registered (5.9 against 0.2 µs a message, measured). With one
        registered, paho's own dispatch. An exception propagates as from paho's (`suppress_exceptions` off)."""
        on_message = self.on_message
        if self._per_topic_callbacks or on_message is None:
            super()._handle_on_message(message)
            return
        on_message(self, self._userdata, message)

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho handles one incoming QoS 1 packet per select; go on while whole packets are already read."""
        try:
            rc = super().loop_read(max_packets)
            for _ in range(self.READ_BURST):
                sock = self._sock
                if rc != mqtt.MQTT_ERR_SUCCESS or not isinstance(sock, _ReadAhead) or not sock.buffered():
                    break
                rc = super().loop_read(max_packets)
        finally:
            # Even when a packet's handling failed, the messages before it in this read go to the sink.
            if self.after_read is not None:
                self.after_read()
        return rc


class MqttSource:
    """Delivers `Message`s for `PREFIX/{device_id}/heartbeat` and `gateways/{gateway_id}/heartbeats`."""

    name = "mqtt"

    def __init__(self, url: str, *, client_id: str, topic_prefix: str = "devices",
                 gateway_prefix: str = "gateways", protocol: str = "5", receive_maximum: int = 1000,
                 username: str | None = None, password: str | None = None, shared_group: str | None = None,
                 tls: MqttTls | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 routes: Routes | None = None) -> None:
        if shared_group is not None and protocol != "5":
            raise ValueError("CITYKPI_MQTT_SHARED_GROUP needs CITYKPI_MQTT_PROTOCOL=5: shared subscriptions are MQTT 5")
        self.shared_group = shared_group
        self.address = parse_mqtt_url(url)
        if tls is not None and tls != MqttTls() and not self.address.tls:
            raise ValueError(f"MQTT TLS files are set but {url!r} is not an mqtts:// URL")
        self.topic_prefix = topic_prefix.rstrip("/")
        self.gateway_prefix = gateway_prefix.rstrip("/")
        self.protocol = protocol
        self.routes = routes or Routes([])
        self.receive_maximum = receive_maximum
        self.clock = clock
        self.connected = threading.Event()
        # Why the last attempt to connect failed, for /readyz; None once connected.
        self.last_error: str | None = None
        self._answered = False  # the broker answered the current connection with a CONNACK, yes or no
        self._client_certificate = tls is not None and tls.cert_file is not None
        self._accepting = threading.Event()
        # Counts connections. An acknowledgement is sent only on the connection that delivered the message:
        # after a reconnect the broker resends unacknowledged messages and may reuse their packet ids, so an
        # old id acknowledged late could confirm a different, not yet stored, message.
        self._connection = 0
        self._connects = 0
        self._handoff: Handoff | None = None
        self._decode: DecodeStage | None = None
        # Messages of the socket read being handled, on paho's thread; handed over at the read's end.
        self._arrived: list[Message] = []
        # (packet id, QoS, connection) of stored messages, until the batch's acknowledgements are flushed.
        self._acks: list[tuple[int, int, int]] = []
        self._acks_lock = threading.Lock()
        if protocol == "5":
            self._client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        else:
            self._client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        if username:
            self._client.username_pw_set(username, password)
        if self.address.tls:
            self._client.tls_set_context((tls or MqttTls()).context())
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.after_read = self._hand_over

    @property
    def failure(self) -> BaseException | None:
        """What ended paho's network thread, if something did: the process should exit and be restarted."""
        return self._client.thread_failure

    @property
    def subscriptions(self) -> list[str]:
        topics = [f"{self.topic_prefix}/+/heartbeat", f"{self.gateway_prefix}/+/heartbeats",
                  *self.routes.mqtt_filters]
        # Workers in one share group split the messages; the broker still delivers them on their own topics.
        return [f"$share/{self.shared_group}/{t}" for t in topics] if self.shared_group else topics

    def start(self, deliver_to: Handoff, decode: DecodeStage) -> None:
        self._handoff, self._decode = deliver_to, decode
        self._accepting.set()
        if self.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = self.receive_maximum
            self._client.connect_async(self.address.host, self.address.port, keepalive=30,
                                       clean_start=False, properties=properties)
        else:
            self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()

    def pause(self) -> None:
        """Stop taking messages in; those that arrive are left unacknowledged for the broker to redeliver."""
        self._accepting.clear()

    def close(self, timeout_s: float = 30) -> None:
        self.pause()
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object, reason_code: object,
                    _properties: object = None) -> None:
        self._answered = True
        if getattr(reason_code, "is_failure", False):
            self._failed(f"the broker refused the connection: {reason_code}")
            return
        self.last_error = None
        client.subscribe([(topic, 1) for topic in self.subscriptions])
        self._connection += 1
        self._connects += 1
        if self._connects > 1:
            metrics.RECONNECTS.labels("mqtt").inc()
        log.info("MQTT connected to %s:%d, subscribing to %s", self.address.host, self.address.port,
                 ", ".join(self.subscriptions))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # paho calls this from inside its `except OSError` around the connect attempt and does not pass the
        # exception on; a failed TLS handshake (an unknown CA, a wrong host name) is only visible here.
        self._failed(describe_connect_error(sys.exception(), self.address.host, self.address.port))

    def _failed(self, reason: str) -> None:
        if reason != self.last_error:  # paho retries with backoff: say it once, not at every attempt
            log.error("MQTT: %s; retrying", reason)
        self.last_error = reason

    def _on_subscribe(self, _client: mqtt.Client, _userdata: object, _mid: int, reason_codes: list,
                      _properties: object = None) -> None:
        # Connected means subscribed: a message published before the broker granted the subscription
        # would not be kept for our session.
        refused = [str(code) for code in reason_codes if getattr(code, "is_failure", False)]
        if refused:
            log.error("MQTT broker refused our subscriptions %s: %s", self.subscriptions, ", ".join(refused))
            return
        self.connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object, reason_code: object,
                       _properties: object = None) -> None:
        self.connected.clear()
        self._connection += 1
        answered, self._answered = self._answered, False
        if not answered and getattr(reason_code, "is_failure", False):
            # With TLS 1.3 a broker that wants a client certificate says so only after the handshake.
            hint = ("; does the broker require a client certificate (CITYKPI_MQTT_CERT_FILE)?"
                    if self.address.tls and not self._client_certificate else "")
            self._failed(f"the connection was closed before the broker answered ({reason_code}){hint}")
        elif getattr(reason_code, "is_failure", False):
            log.warning("MQTT connection lost (%s); paho reconnects with backoff", reason_code)
        else:
            log.info("MQTT disconnected")

    def _on_message(self, client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not self._accepting.is_set() or self._decode is None:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # Brokers refuse such topics; should one come through, its device id cannot match the payload's,
            # so it is dead-lettered (device_mismatch) naming the topic, instead of ending paho's thread.
            topic = msg._topic.decode("utf-8", "replace")  # noqa: SLF001 - paho keeps the bytes only there
        levels = topic.split("/")
        is_gateway = len(levels) == 3 and levels[0] == self.gateway_prefix and levels[2] == "heartbeats"
        is_native = is_gateway or len(levels) == 3 and levels[0] == self.topic_prefix and levels[2] == "heartbeat"
        # A topic neither native nor mapped vouches for no device (""), so its heartbeat is dead-lettered as a
        # device mismatch naming the topic.
        device_id = None if is_gateway else levels[1] if len(levels) == 3 else ""
        # The broker's ACL lets only gateway G write gateways/G/heartbeats: the topic vouches for the gateway.
        gateway_id = levels[1] if is_gateway else None
        mapping = None if is_native else self.routes.for_topic(levels)
        if mapping is not None and mapping.gateway_id is not None:
            gateway_id = mapping.gateway_id.read(Where(None, None, tuple(levels)))
            gateway_id = gateway_id if isinstance(gateway_id, str) else ""
        mid, qos, connection = msg.mid, msg.qos, self._connection

        def acknowledge() -> None:
            if qos > 0:
                with self._acks_lock:
                    self._acks.append((mid, qos, connection))

        self._arrived.append(self._decode.message(
            source="mqtt", origin=topic, payload=msg.payload, received_at=self.clock(),
            expected_device_id=device_id, allow_array=is_gateway, acknowledge=acknowledge, gateway_id=gateway_id,
            flush=self._flush_acknowledgements, mapping=mapping, topic_levels=tuple(levels), retained=msg.retain))

    def _hand_over(self) -> None:
        arrived, self._arrived = self._arrived, []
        if not arrived or self._handoff is None:
            return
        # While the sink is far behind this holds paho's thread, and the broker holds what we did not read.
        # Told to stop meanwhile, the read is left unacknowledged: the broker delivers it again, to us or the
        # next consumer of the session.
        while not self._handoff.put_many(arrived, timeout_s=0.5):
            if not self._accepting.is_set():
                return

    def _flush_acknowledgements(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        # Only on the connection that delivered the message: after a reconnect the broker resends what was not
        # acknowledged and may reuse packet ids, so an old id acknowledged late could confirm another message.
        current = [(mid, qos) for mid, qos, connection in acks if connection == self._connection]
        self._client.ack_many(current)
