"""Consumes the heartbeats topic in a consumer group and hands each fetch's records to the sink together.

aiokafka is asyncio; it runs on a thread of its own with its own event loop, so that the rest of the
service (paho's network thread, the sink thread) stays plain threads. Offsets are committed by us, never
automatically: only up to the highest contiguous offset whose rows the database has committed
(`OffsetTracker`), every `commit_interval_s`, when partitions are revoked, and at shutdown. A crash
therefore replays at most what was stored since the last commit, which the (device_id, ts) key absorbs.
"""

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import (
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import TopicPartition

from base.brokers.kafka import KafkaSecurity, connection_problem
from ingest import metrics
from ingest.decode import DecodeStage
from ingest.handoff import Handoff
from ingest.kafka.offsets import OffsetTracker
from ingest.loop_thread import LoopThread
from ingest.mapping.routes import Routes
from ingest.message import Message

log = logging.getLogger(__name__)

_JSON_WHITESPACE = b" \t\r\n"
_NOT_AUTHORIZED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError)


class KafkaSource(LoopThread):
    """Delivers a `Message` per record of `topic`; several processes with one `group_id` split the partitions.

    Key = device_id and value = one heartbeat object, or key = gateway id and value = an array of heartbeats.
    At most `max_in_flight` records are unacknowledged at once: past that the source stops fetching and
    Kafka keeps the backlog. Origin of a dead letter: `topic/partition/offset`.
    """

    name = "kafka"
    _thread_name = "citykpi-kafka"
    _described_as = "the Kafka source"

    def __init__(self, bootstrap: str, *, topic: str, group_id: str, client_id: str = "citykpi-ingest",
                 max_in_flight: int = 10000, commit_interval_s: float = 1.0, session_timeout_ms: int = 10000,
                 revoke_drain_s: float = 10.0, security: KafkaSecurity | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), routes: Routes | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.routes = routes or Routes([], native_kafka_topic=topic)
        self.group_id = group_id
        self.client_id = client_id
        self.max_in_flight = max_in_flight
        self.commit_interval_s = commit_interval_s
        self.session_timeout_ms = session_timeout_ms
        self.revoke_drain_s = revoke_drain_s
        self.clock = clock
        self.security = security or KafkaSecurity()
        # Built now so that an unusable CA file stops the start, not every connection attempt.
        self._client_options = self.security.client_options()
        # Why the last attempt to join failed (a wrong password, say), for /readyz; None once joined.
        self.last_error: str | None = None
        # Joining the group once proves nothing later; a metadata round trip every so often does.
        self.probe_interval_s = 5.0
        self._joined = False
        self._reachable = True
        self.connected = threading.Event()
        self.tracker = OffsetTracker()
        # The messages' `flush`, one object for all of them (the sink calls each distinct one once a batch).
        self._acknowledged = self.tracker.acknowledged
        self._init_loop_thread()
        self._accepting = threading.Event()
        self._handoff: Handoff | None = None
        self._decode: DecodeStage | None = None
        self._lag: dict[TopicPartition, int] = {}
        self._unwatch: Callable[[], None] | None = None

    def start(self, deliver_to: Handoff, decode: DecodeStage) -> None:
        self._handoff, self._decode = deliver_to, decode
        self._accepting.set()
        self._start_loop_thread()
        self._unwatch = metrics.LIVE.watch(self._gauges)

    def pause(self) -> None:
        """Stop fetching; records already handed over are still acknowledged and committed."""
        self._accepting.clear()

    def close(self, timeout_s: float = 15) -> None:
        """Commit what the sink has acknowledged, leave the group, stop the thread (waiting `timeout_s` at most)."""
        self.pause()
        self._stop_loop_thread(timeout_s)
        if self._unwatch is not None:
            self._unwatch()

    async def _run(self) -> None:
        assert self._stop is not None
        attempt = 0
        while not self._stop.is_set():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=self.group_id, client_id=self.client_id,
                enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=self.session_timeout_ms,
                # Members finish their revoke (drain, commit) before the group moves on.
                rebalance_timeout_ms=max(self.session_timeout_ms, int(self.revoke_drain_s * 1000) + 5000),
                **self._client_options)
            consumer.subscribe([self.topic, *self.routes.kafka_topics], listener=_CommitOnRevoke(self, consumer))
            started = False
            try:
                await consumer.start()
                started = True
                self.last_error = None
                if attempt:
                    metrics.RECONNECTS.labels("kafka").inc()
                    log.info("Kafka consumer reconnected to %s", self.bootstrap)
                attempt = 0
                watcher = asyncio.create_task(self._watch_broker(consumer))
                try:
                    await self._consume(consumer)
                    await self._commit(consumer)
                finally:
                    watcher.cancel()
                return
            except KafkaError as exc:
                attempt += 1
                delay = min(30.0, 0.5 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0)
                if isinstance(exc, KafkaConnectionError) and not started:
                    await self._explain(exc, delay)
                elif isinstance(exc, _NOT_AUTHORIZED):
                    self._refused(exc, delay)
                else:
                    self.last_error = f"{exc.__class__.__name__}: {exc}"
                    log.warning("Kafka consumer failed (%s: %s); restarting in %.1f s; uncommitted records will be "
                                "redelivered", exc.__class__.__name__, exc, delay)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
            finally:
                self.connected.clear()
                self._joined = False
                self.tracker.revoke(self.tracker.assigned())
                self._lag = {}
                try:
                    await consumer.stop()
                except KafkaError as exc:  # leaving the group failed; the group times us out instead
                    log.warning("Kafka consumer did not stop cleanly: %s", exc)

    async def _explain(self, exc: KafkaError, delay: float) -> None:
        """aiokafka's start() says only "Unable to bootstrap"; name the cause, once per distinct cause."""
        reason = await connection_problem(self.bootstrap, self.security) or f"{exc.__class__.__name__}: {exc}"
        if reason != self.last_error:
            log.error("Kafka consumer cannot join %s: %s; retrying in %.1f s", self.bootstrap, reason, delay)
        self.last_error = reason

    def _refused(self, exc: KafkaError, delay: float) -> None:
        """Authenticated but not authorized: a person must add ACLs; say which, once per distinct cause."""
        who = f"User:{self.security.username}" if self.security.uses_sasl else "this client's principal"
        reason = (f"not authorized ({exc}); the Kafka ACLs must allow {who} to read topic {self.topic} and "
                  f"group {self.group_id} (deploy/README.md, \"Kafka\")")
        if reason != self.last_error:
            log.error("Kafka consumer refused by %s: %s; retrying in %.1f s", self.bootstrap, reason, delay)
        self.last_error = reason

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        assert self._stop is not None and self._handoff is not None
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + self.commit_interval_s
        while not self._stop.is_set():
            room = self.max_in_flight - self.tracker.unacknowledged()
            if not self._accepting.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), self.commit_interval_s)
                except TimeoutError:
                    pass
            elif room <= 0:
                # Kafka keeps the backlog. Paused partitions still let us poll, and polling is what tells
                # the group we are alive (max_poll_interval) however long the database is slow.
                consumer.pause(*consumer.assignment())
                await asyncio.to_thread(self.tracker.wait_below, self.max_in_flight, 0.2)
                await consumer.getmany(timeout_ms=0)
            else:
                consumer.resume(*consumer.paused())
                fetched = await consumer.getmany(timeout_ms=200, max_records=min(room, 2000))
                received_at = self.clock()
                messages: list[Message] = []
                for tp, records in fetched.items():
                    # Assigned but untracked: the assignment listener failed to look its commit up. (A partition
                    # revoked since this fetch, while we waited on the sink, is not assigned: left alone.)
                    if tp not in self.tracker.assigned() and tp in consumer.assignment():
                        self.tracker.assign(tp, None)
                    acknowledgements = self.tracker.received_many(tp, [record.offset for record in records])
                    messages += [self._message(record, acknowledge, received_at)
                                 for record, acknowledge in zip(records, acknowledgements, strict=True)]
                if not await self._hand_over(messages):
                    return
                self._measure_lag(consumer)
            if loop.time() >= next_commit:
                await self._commit(consumer)
                next_commit = loop.time() + self.commit_interval_s

    async def _watch_broker(self, consumer: AIOKafkaConsumer) -> None:
        """Keeps `connected` (and so /readyz) honest while aiokafka retries a lost broker by itself."""
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(consumer.topics(), timeout=max(1.0, self.probe_interval_s))
            except (KafkaError, TimeoutError) as exc:
                if self._reachable:
                    log.warning("Kafka broker %s unreachable (%s); aiokafka keeps retrying", self.bootstrap,
                                exc.__class__.__name__)
                self._reachable = False
                self.connected.clear()
            else:
                if not self._reachable:
                    metrics.RECONNECTS.labels("kafka").inc()
                    log.info("Kafka broker %s reachable again", self.bootstrap)
                self._reachable = True
                if self._joined:
                    self.connected.set()
            try:
                await asyncio.wait_for(self._stop.wait(), self.probe_interval_s)
            except TimeoutError:
                pass

    async def _hand_over(self, messages: list[Message]) -> bool:
        """Hand a fetch's messages to the sink; false if told to stop first (the records then stay
        uncommitted, for later)."""
        assert self._handoff is not None and self._stop is not None
        if self._handoff.put_many(messages, timeout_s=0):
            return True
        while not self._stop.is_set():
            # The sink is behind. Wait off the loop (heartbeats go on) and in short steps: a thread blocked
            # for good would keep the interpreter from exiting.
            if await asyncio.to_thread(self._handoff.put_many, messages, 0.5):
                return True
        return False

    def _message(self, record: ConsumerRecord, acknowledge: Callable[[], None], received_at: datetime) -> Message:
        value = record.value if record.value is not None else b""
        # An array is a gateway's report: its key names the gateway, not a device, so no per-device check.
        is_array = value.lstrip(_JSON_WHITESPACE)[:1] == b"["
        # A missing key vouches for no device: "" matches no valid device_id, so the check fails visibly.
        key = record.key.decode("utf-8", "replace") if record.key is not None else ""
        expected_device_id = None if is_array else key
        assert self._decode is not None
        if (mapping := self.routes.for_kafka_topic(record.topic)) is not None:
            return self._decode.message(
                source="kafka", origin=f"{record.topic}/{record.partition}/{record.offset}", payload=value,
                received_at=received_at, expected_device_id=None, allow_array=False, acknowledge=acknowledge,
                flush=self._acknowledged, gateway_id=key if mapping.gateway_id is not None else None,
                mapping=mapping,
                key=key if record.key is not None else None)
        # Decoded here, on the consumer's thread: the loop is held for a fetch's worth of records (2 000 at
        # most, ~10 µs each).
        return self._decode.message(
            source="kafka", origin=f"{record.topic}/{record.partition}/{record.offset}", payload=value,
            received_at=received_at, expected_device_id=expected_device_id, allow_array=is_array,
            acknowledge=acknowledge, flush=self._acknowledged, gateway_id=key if is_array else None)

    async def _commit(self, consumer: AIOKafkaConsumer, only: list[TopicPartition] | None = None) -> None:
        assigned = consumer.assignment()
        positions = {tp: p for tp, p in self.tracker.committable(only).items() if tp in assigned}
        if not positions:
            return
        try:
            await consumer.commit(positions)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the partitions' next owner restarts from the last commit (duplicates only).
            metrics.KAFKA_COMMIT_FAILURES.labels("rebalanced").inc()
            log.info("Kafka commit skipped, the group rebalanced: %s", exc)
        except KafkaError as exc:
            metrics.KAFKA_COMMIT_FAILURES.labels(exc.__class__.__name__).inc()
            log.warning("Kafka commit failed (%s: %s); retried at the next interval", exc.__class__.__name__, exc)
        else:
            self.tracker.mark_committed(positions)

    def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            committed = self.tracker.committed(tp)
            if end is not None and committed is not None:
                lag[tp] = max(0, end - committed)
        self._lag = lag

    def _gauges(self) -> Iterator[metrics.Sample]:
        yield metrics.KAFKA_UNACKNOWLEDGED, (), self.tracker.unacknowledged()
        for tp, lag in dict(self._lag).items():
            yield metrics.KAFKA_CONSUMER_LAG, (tp.topic, str(tp.partition)), lag


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Before partitions move to another member: let the sink finish what it holds of them (bounded), commit."""

    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self.source = source
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = list(revoked)
        if not revoked:
            return
        drained = await asyncio.to_thread(self.source.tracker.wait_acknowledged, revoked,
                                          self.source.revoke_drain_s)
        if not drained:
            log.warning("partitions %s revoked with %d messages still being written; the next owner will "
                        "redeliver them", revoked, self.source.tracker.unacknowledged(revoked))
        await self.source._commit(self.consumer, only=revoked)
        self.source.tracker.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            self.source.tracker.assign(tp, committed)
        log.info("Kafka partitions assigned: %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
        self.source._joined = True
        if self.source._reachable:
            self.source.connected.set()
