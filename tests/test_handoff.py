"""The hand-over between the sources and the sink: bounded, whole reads in or nothing, batches out."""

import threading
from datetime import UTC, datetime

from ingest.handoff import Handoff
from ingest.message import Decoded, Message
from tests.helpers import wait_for

NOTHING = Decoded([], [])


def _messages(count: int, tag: str = "m") -> list[Message]:
    return [Message(source="test", origin=f"{tag}{n}", payload=b"{}", received_at=datetime.now(UTC),
                    expected_device_id=None, allow_array=False, acknowledge=lambda: None, decoded=NOTHING)
            for n in range(count)]


def _origins(messages: list[Message]) -> list[str]:
    return [message.origin for message in messages]


def test_a_read_is_taken_whole_while_there_is_room_and_refused_whole_when_there_is_none() -> None:
    handoff = Handoff(capacity=5)
    assert handoff.put_many(_messages(4, "a"), timeout_s=0)
    assert handoff.put_many(_messages(3, "b"), timeout_s=0)  # 4 < 5: admitted whole, over the bound by 2
    assert not handoff.put_many(_messages(1, "c"), timeout_s=0.01)
    assert handoff.qsize() == 7
    assert _origins(handoff.take(100, first_wait_s=0, max_wait_s=0, idle_s=0)) == [
        "a0", "a1", "a2", "a3", "b0", "b1", "b2"]
    assert handoff.empty()


def test_the_bytes_waiting_are_bounded_too_and_taking_frees_them() -> None:
    handoff = Handoff(capacity=1000, capacity_bytes=100)
    big = [m._replace(payload=b"x" * 60) for m in _messages(2, "big")]
    assert handoff.put_many(big, timeout_s=0)                 # 0 < 100 bytes: admitted whole, 120 held
    assert not handoff.put_many(_messages(1, "late"), timeout_s=0.01)
    handoff.take(1, first_wait_s=0, max_wait_s=0, idle_s=0)   # 60 held: room again
    assert handoff.put_many(_messages(1, "late"), timeout_s=0)
    assert _origins(handoff.take(10, first_wait_s=0, max_wait_s=0, idle_s=0)) == ["big1", "late0"]


def test_a_batch_stops_at_its_size_and_leaves_the_rest_in_order() -> None:
    handoff = Handoff(capacity=100)
    handoff.put_many(_messages(10), timeout_s=0)
    assert _origins(handoff.take(4, first_wait_s=0, max_wait_s=10, idle_s=10)) == ["m0", "m1", "m2", "m3"]
    assert _origins(handoff.take(100, first_wait_s=0, max_wait_s=0, idle_s=0)) == [f"m{n}" for n in range(4, 10)]


def test_nothing_arriving_gives_an_empty_batch_after_the_first_wait() -> None:
    assert Handoff(capacity=10).take(10, first_wait_s=0.01, max_wait_s=1, idle_s=1) == []


def test_a_batch_gathers_reads_that_arrive_while_it_is_open() -> None:
    handoff = Handoff(capacity=100)
    handoff.put_many(_messages(2, "first"), timeout_s=0)
    taken: list[Message] = []
    # The batch stays open up to max_wait_s; each read that arrives within idle_s of the last keeps it open.
    taker = threading.Thread(target=lambda: taken.extend(handoff.take(5, first_wait_s=1, max_wait_s=60,
                                                                         idle_s=60)))
    taker.start()
    wait_for(handoff.empty, timeout_s=10, what="the first read taken")
    handoff.put_many(_messages(3, "second"), timeout_s=0)
    taker.join(10)
    assert _origins(taken) == ["first0", "first1", "second0", "second1", "second2"]


def test_a_source_waiting_for_room_goes_on_once_the_sink_takes_a_batch() -> None:
    handoff = Handoff(capacity=2)
    handoff.put_many(_messages(2, "a"), timeout_s=0)
    admitted = threading.Event()
    source = threading.Thread(target=lambda: handoff.put_many(_messages(1, "b")) and admitted.set())
    source.start()
    assert not admitted.wait(0.05)  # full: the source waits
    assert _origins(handoff.take(1, first_wait_s=0, max_wait_s=0, idle_s=0)) == ["a0"]
    source.join(10)
    assert admitted.is_set()
    assert _origins(handoff.take(10, first_wait_s=0, max_wait_s=0, idle_s=0)) == ["a1", "b0"]
