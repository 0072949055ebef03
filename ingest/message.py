"""The one event type that flows from a source to the sink."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.decode import Decoded


@dataclass(frozen=True, slots=True)
class Message:
    """A broker message as received. `acknowledge` is called only after its rows are committed.

    `gateway_id` is the gateway the transport says sent it (the MQTT topic `gateways/{id}/heartbeats`, the
    Kafka key of an array), None for a device speaking for itself; the sink checks every registered device
    in it is bound to that gateway.

    `flush`: when set, `acknowledge` may only note the acknowledgement, and calling `flush` (once after a
    batch's acknowledgements) sends what was noted.

    `decoded`: `decode_message` of the payload, when the source already ran it on its own thread (so that it
    overlaps the sink's database round trips); the sink decodes the others.
    """

    source: str
    origin: str
    payload: bytes
    received_at: datetime
    expected_device_id: str | None
    allow_array: bool
    acknowledge: Callable[[], None]
    gateway_id: str | None = None
    decoded: "Decoded | None" = None
    flush: Callable[[], None] | None = None
