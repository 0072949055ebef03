"""The one event type that flows from a source to the sink."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    """A broker message as received. `acknowledge` is called only after its rows are committed."""

    source: str
    origin: str
    payload: bytes
    received_at: datetime
    expected_device_id: str | None
    allow_array: bool
    acknowledge: Callable[[], None]
