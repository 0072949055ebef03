"""The bounded hand-over between the sources' threads and the sink's.

A source hands over a whole read at once (an MQTT socket read, a Kafka fetch) and the sink takes a whole
batch at once: one lock and at most one wake-up each way. With a `queue.Queue` both cost one per message,
and each put woke the sink's thread to take one message: measured, a tenth of the MQTT path's CPU went to
`Queue.put`, most of it the two threads handing the interpreter lock back and forth.
"""

import threading
import time
from collections import deque
from collections.abc import Sequence

from ingest.message import Message


class Handoff:
    """Holds at most `capacity` messages and `capacity_bytes` of payload, plus at most one read admitted while
    it held less.

    A read is taken whole or not at all, so a source never has to remember which part of a read it handed
    over; the bounds are exceeded by less than one read (an MQTT burst of ≤ 501 messages, a Kafka fetch of
    ≤ 2 000), which keeps memory bounded without splitting. Bytes as well as messages: ten thousand messages of
    64 KiB would otherwise be 640 MiB waiting.
    """

    def __init__(self, capacity: int, capacity_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.capacity_bytes = capacity_bytes
        self._bytes = 0
        self._messages: deque[Message] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)

    def qsize(self) -> int:
        return len(self._messages)

    def _has_room(self) -> bool:
        return len(self._messages) < self.capacity and self._bytes < self.capacity_bytes

    def empty(self) -> bool:
        return not self._messages

    def put_many(self, messages: Sequence[Message], timeout_s: float | None = None) -> bool:
        """Hand `messages` over, waiting up to `timeout_s` (None: for as long as it takes) for room; false if
        there was none in time, and then none of them was taken."""
        if not messages:
            return True
        size = sum(len(message.payload) for message in messages)
        with self._lock:
            if not self._room.wait_for(self._has_room, timeout_s):
                return False
            self._bytes += size
            self._messages.extend(messages)
            self._arrived.notify()
        return True

    def take(self, max_messages: int, *, first_wait_s: float, max_wait_s: float, idle_s: float) -> list[Message]:
        """A batch: waits up to `first_wait_s` for a first message (else []), then takes what arrives until
        `max_messages`, `max_wait_s` after the first, or a pause of `idle_s` with nothing new."""
        batch: list[Message] = []
        with self._lock:
            if not self._arrived.wait_for(lambda: self._messages, first_wait_s):
                return batch
            deadline = time.monotonic() + max_wait_s
            while True:
                start = len(batch)
                while self._messages and len(batch) < max_messages:
                    batch.append(self._messages.popleft())
                self._bytes -= sum(len(message.payload) for message in batch[start:])
                self._room.notify_all()
                remaining = deadline - time.monotonic()
                if len(batch) >= max_messages or remaining <= 0:
                    return batch
                # A pause in the stream usually means a broker is waiting for our acknowledgements (MQTT
                # delivers only its in-flight window before it does): waiting longer would only add latency.
                if not self._arrived.wait_for(lambda: self._messages, min(remaining, idle_s)):
                    return batch
