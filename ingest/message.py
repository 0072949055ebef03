"""The one event type that flows from the decode stage to the sink."""

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ingest.decode import Decoded

Acknowledge = Callable[[], None]


# Immutable, as it crosses threads; a NamedTuple rather than a frozen dataclass, whose __init__ costs four
# times as much (3.8 against 0.9 µs, one per message on the sources' threads).
class Message(NamedTuple):
    """A broker message as received, and what the decode stage made of it (`decoded`). `acknowledge` is called
    only after its rows are committed.

    `gateway_id` is the gateway the transport says sent it (the MQTT topic `gateways/{id}/heartbeats`, the
    Kafka key of an array), None for a device speaking for itself; the sink checks every registered device
    in it is bound to that gateway.

    `flush`: when set, `acknowledge` may only note the acknowledgement, and calling `flush` (once after a
    batch's acknowledgements) sends what was noted.
    """

    source: str
    origin: str
    payload: bytes
    received_at: datetime
    expected_device_id: str | None
    allow_array: bool
    acknowledge: Acknowledge
    decoded: "Decoded"
    gateway_id: str | None = None
    flush: Acknowledge | None = None
