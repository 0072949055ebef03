"""The MQTT source (paho-mqtt 2.x): QoS 1, persistent session, acknowledgement after commit."""

from ingest.mqtt.source import MqttSource

__all__ = ["MqttSource"]
