"""The one event type that flows from a source to the sink."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    """A broker message as received. `acknowledge` is called only after its rows are committed.

    `gateway_id` is the gateway the transport says sent it (the MQTT topic `gateways/{id}/heartbeats`, the
    Kafka key of an array), None for a device speaking for itself; the sink checks every registered device
    in it is bound to that gateway.
    """

    source: str
    origin: str
    payload: bytes
    received_at: datetime
    expected_device_id: str | None
    allow_array: bool
    acknowledge: Callable[[], None]
    gateway_id: str | None = None
