"""Which offsets may be committed: up to the highest contiguous acknowledged one, per partition."""

from aiokafka.structs import TopicPartition

from ingest.kafka.offsets import OffsetTracker

P0 = TopicPartition("heartbeats", 0)
P1 = TopicPartition("heartbeats", 1)


def _deliver(tracker: OffsetTracker, tp: TopicPartition, offsets: list[int]) -> dict:
    return {offset: tracker.received(tp, offset) for offset in offsets}


def test_nothing_is_committable_before_the_first_acknowledgement() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 10)
    _deliver(tracker, P0, [10, 11, 12])
    assert tracker.committable() == {}


def test_commit_position_stops_at_the_first_unacknowledged_offset() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 10)
    ack = _deliver(tracker, P0, [10, 11, 12, 13])
    ack[10]()
    ack[11]()
    ack[13]()
    assert tracker.committable() == {P0: 12}
    assert tracker.unacknowledged() == 2


def test_closing_the_gap_advances_past_everything_acknowledged_after_it() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, None)
    ack = _deliver(tracker, P0, [0, 1, 2, 3])
    for offset in (3, 1, 2):
        ack[offset]()
    assert tracker.committable() == {}
    ack[0]()
    assert tracker.committable() == {P0: 4}


def test_offsets_missing_from_the_log_do_not_hold_the_position_back() -> None:
    # Compaction and transaction markers leave holes in a partition's offsets.
    tracker = OffsetTracker()
    tracker.assign(P0, 5)
    ack = _deliver(tracker, P0, [5, 9, 20])
    for done in ack.values():
        done()
    assert tracker.committable() == {P0: 21}


def test_partitions_advance_independently() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 0)
    tracker.assign(P1, 100)
    ack0 = _deliver(tracker, P0, [0, 1])
    ack1 = _deliver(tracker, P1, [100])
    ack0[1]()
    ack1[100]()
    assert tracker.committable() == {P1: 101}


def test_a_committed_position_is_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 0)
    _deliver(tracker, P0, [0])[0]()
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == {}
    assert tracker.committed(P0) == 1


def test_an_acknowledgement_after_revoke_changes_nothing_that_will_be_committed() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 0)
    late = _deliver(tracker, P0, [0])[0]
    tracker.revoke([P0])
    tracker.assign(P0, 0)  # assigned back: its state starts again from the group's commit
    late()
    assert tracker.committable() == {}
    assert tracker.unacknowledged() == 0


def test_a_record_of_a_revoked_partition_gets_an_acknowledgement_that_does_nothing() -> None:
    tracker = OffsetTracker()
    acknowledge = tracker.received(P0, 7)
    acknowledge()
    assert (tracker.committable(), tracker.unacknowledged()) == ({}, 0)


def test_waiting_for_a_revoked_partition_returns_once_its_messages_are_acknowledged() -> None:
    tracker = OffsetTracker()
    tracker.assign(P0, 0)
    tracker.assign(P1, 0)
    ack0 = _deliver(tracker, P0, [0])
    _deliver(tracker, P1, [0])
    assert tracker.wait_acknowledged([P0], timeout_s=0.01) is False
    ack0[0]()
    assert tracker.wait_acknowledged([P0], timeout_s=0.01) is True
