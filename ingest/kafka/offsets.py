"""Which Kafka offsets are safe to commit: per partition, up to the highest *contiguous* acknowledged one.

The sink acknowledges messages from its own thread and, with retries and bisection, not necessarily in
offset order; committing offset N tells the group that everything before N is stored. So a partition's
commit position only advances past a message once it and every message delivered before it are done.
"""

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka.structs import TopicPartition


def _noop() -> None:
    pass


class _Delivered:
    """One delivered offset; calling it is its acknowledgement. Only a flag is set, from any thread, without a
    lock: the partition's position moves past it when the tracker next looks (`advance`), and waiters are
    woken once a batch by `acknowledged()`, not once a message."""

    __slots__ = ("offset", "done")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.done = False

    def __call__(self) -> None:
        self.done = True


@dataclass(eq=False)
class _Partition:
    """One partition during one assignment. After a revoke the object is dropped: late acknowledgements
    reach an orphan and change nothing that will be committed."""

    committed: int | None = None
    position: int | None = None
    # Delivered and not yet passed by the position, in delivery order.
    pending: deque[_Delivered] = field(default_factory=deque)

    def advance(self) -> None:
        while self.pending and self.pending[0].done:
            self.position = self.pending.popleft().offset + 1


class OffsetTracker:
    """Thread-safe: `received` and `committable` run on the consumer's loop, acknowledgements on the sink's
    thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._partitions: dict[TopicPartition, _Partition] = {}

    def assign(self, tp: TopicPartition, committed: int | None) -> None:
        with self._changed:
            self._partitions[tp] = _Partition(committed=committed, position=committed)

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        with self._changed:
            for tp in tps:
                self._partitions.pop(tp, None)
            self._changed.notify_all()

    def assigned(self) -> list[TopicPartition]:
        with self._changed:
            return list(self._partitions)

    def received(self, tp: TopicPartition, offset: int) -> Callable[[], None]:
        """Note a delivered offset; returns its `acknowledge`, safe to call from any thread, once or more."""
        return self.received_many(tp, [offset])[0]

    def received_many(self, tp: TopicPartition, offsets: list[int]) -> list[Callable[[], None]]:
        """`received` for each of a fetch's offsets of one partition, in order, under one lock."""
        with self._changed:
            partition = self._partitions.get(tp)
            if partition is None:  # revoked while the records were on their way to us: the next owner has them
                return [_noop] * len(offsets)
            delivered = [_Delivered(offset) for offset in offsets]
            partition.pending.extend(delivered)
        return delivered

    def acknowledged(self) -> None:
        """After a batch's acknowledgements (the sink calls it as the messages' `flush`): move the positions
        and wake whoever waits for them."""
        with self._changed:
            for partition in self._partitions.values():
                partition.advance()
            self._changed.notify_all()

    def _advanced(self) -> dict[TopicPartition, _Partition]:
        """The partitions, each moved past what is acknowledged (called under the lock)."""
        for partition in self._partitions.values():
            partition.advance()
        return self._partitions

    def committable(self, only: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Positions that moved since the last `mark_committed`."""
        with self._changed:
            partitions = self._advanced()
            chosen = partitions if only is None else {tp: partitions[tp] for tp in only if tp in partitions}
            return {tp: p.position for tp, p in chosen.items()
                    if p.position is not None and p.position != p.committed}

    def mark_committed(self, positions: dict[TopicPartition, int]) -> None:
        with self._changed:
            for tp, position in positions.items():
                if (partition := self._partitions.get(tp)) is not None:
                    partition.committed = position

    def committed(self, tp: TopicPartition) -> int | None:
        with self._changed:
            partition = self._partitions.get(tp)
            return None if partition is None else partition.committed

    def unacknowledged(self, only: Iterable[TopicPartition] | None = None) -> int:
        with self._changed:
            partitions = self._advanced()
            if only is None:
                return sum(len(p.pending) for p in partitions.values())
            return sum(len(partitions[tp].pending) for tp in only if tp in partitions)

    def wait_below(self, limit: int, timeout_s: float) -> bool:
        """Block until fewer than `limit` messages are unacknowledged, or `timeout_s` passes."""
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(len(p.pending) for p in self._advanced().values()) < limit, timeout_s)

    def wait_acknowledged(self, tps: Iterable[TopicPartition], timeout_s: float) -> bool:
        """Block until every message of `tps` delivered so far is acknowledged, or `timeout_s` passes."""
        tps = list(tps)
        with self._changed:
            return self._changed.wait_for(
                lambda: all(not p.pending for tp in tps if (p := self._advanced().get(tp)) is not None),
                timeout_s)
