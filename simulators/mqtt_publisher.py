"""Publishes heartbeats to an MQTT broker, QoS 1, as devices do: one topic per device."""

import json
import threading
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from base.brokers.mqtt import MqttTls, describe_connect_error, parse_mqtt_url


class MqttPublisher:
    """One connection publishing for many devices (a load generator, not a device)."""

    def __init__(self, url: str, *, client_id: str = "citykpi-simulator", topic_prefix: str = "devices",
                 max_inflight: int = 100, max_pending: int = 10000, username: str | None = None,
                 password: str | None = None, tls: MqttTls | None = None) -> None:
        address = parse_mqtt_url(url)
        if tls is not None and tls != MqttTls() and not address.tls:
            raise ValueError(f"MQTT TLS files are set but {url!r} is not an mqtts:// URL")
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username:
            self._client.username_pw_set(username, password)
        if address.tls:
            self._client.tls_set_context((tls or MqttTls()).context())
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        # Unacknowledged messages are bounded here: past 65 535 of them paho's 16-bit message ids collide
        # and publish() fails, and a slow broker should slow the generator down, not fill its memory.
        self._max_pending = max_pending
        self._pending = 0
        self._acknowledged = threading.Condition()
        self._client.on_publish = self._on_publish
        try:
            self._client.connect(address.host, address.port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"MQTT publisher: {describe_connect_error(exc, address.host, address.port)}") \
                from exc
        self._client.loop_start()
        self.topic_prefix = topic_prefix

    def publish_heartbeat(self, payload: dict) -> None:
        self.publish_raw(f"{self.topic_prefix}/{payload['device_id']}/heartbeat",
                         json.dumps(payload, ensure_ascii=False).encode())

    def publish_raw(self, topic: str, body: bytes, *, retain: bool = False) -> None:
        with self._acknowledged:
            while self._pending >= self._max_pending:
                self._acknowledged.wait()
            self._pending += 1
        info = self._client.publish(topic, body, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            with self._acknowledged:
                self._pending -= 1
            raise RuntimeError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def _on_publish(self, _client: mqtt.Client, _userdata: object, _mid: int, _reason: object,
                    _properties: object) -> None:
        with self._acknowledged:
            self._pending -= 1
            self._acknowledged.notify_all()

    def publish_all(self, payloads: Iterable[dict], on_each: Callable[[], None] | None = None) -> int:
        count = 0
        for payload in payloads:
            self.publish_heartbeat(payload)
            count += 1
            if on_each is not None:
                on_each()
        return count

    def flush(self, timeout_s: float = 120) -> None:
        """Return once the broker has acknowledged everything published so far."""
        with self._acknowledged:
            if not self._acknowledged.wait_for(lambda: self._pending == 0, timeout_s):
                raise TimeoutError(f"{self._pending} messages still unacknowledged after {timeout_s:.0f} s")

    def close(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()
