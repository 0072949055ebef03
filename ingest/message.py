"""What flows from the decode stage to the sink: a `Message` as received, and what decoding made of it."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from base.vocabulary import DeviceKind
from ingest.schema import Heartbeat, Status

Acknowledge = Callable[[], None]


@dataclass(frozen=True)
class Rejection:
    """Why (a part of) a message was refused; `reason` is a short stable code, `detail` is for a person."""

    reason: str
    detail: str
    raw: bytes


class Accepted(NamedTuple):
    """An accepted heartbeat's values: what the model holds, plus its `healthy` verdict. A tuple, not the
    model itself, because building a pydantic instance costs more than deciding validity on the hot path."""

    device_id: str
    kind: DeviceKind | None  # None: a mapped heartbeat whose kind the registry gives (the sink fills it)
    ts: datetime
    seq: int | None
    status: Status
    checks: dict[str, bool] | None
    metrics: dict[str, int | float] | None
    measurements: dict[str, int | float] | None
    healthy: bool

    @classmethod
    def of(cls, heartbeat: Heartbeat) -> "Accepted":
        return cls(heartbeat.device_id, heartbeat.kind, heartbeat.ts, heartbeat.seq, heartbeat.status,
                   heartbeat.checks, heartbeat.metrics, heartbeat.measurements, heartbeat.healthy)


class AvailabilityChange(NamedTuple):
    """A device's online/offline state from an availability message (ingest/mapping/); `retained`: the broker
    delivered a retained message, a state set at some earlier time."""

    device_id: str
    ts: datetime
    online: bool
    retained: bool


@dataclass(frozen=True)
class Decoded:
    accepted: list[Accepted]
    rejected: list[Rejection]
    # Where each accepted heartbeat stands in a gateway's array (0 for a single object): a check made later,
    # against the registry, can then dead-letter that element's bytes alone (`element_raw`). -1: the whole
    # message's bytes (a mapped message, whose heartbeats are not elements of a top-level array).
    positions: list[int] = field(default_factory=list)
    # What an availability mapping made of the message (no heartbeats then).
    availability: list[AvailabilityChange] = field(default_factory=list)


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
    decoded: Decoded
    gateway_id: str | None = None
    flush: Acknowledge | None = None
