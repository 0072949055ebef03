"""Writes a batch of messages in one transaction: COPY into a staging table, then one set-based INSERT.

The staging table lets the database do the checks that need the registry (a heartbeat whose kind
contradicts the device's registered kind; a gateway reporting for a device not bound to it) and the
de-duplication (ON CONFLICT), in one round trip each.
When the database rejects the data of a batch, the batch is bisected until the offending heartbeats are
isolated; they go to dead letters as `database_rejected` and the rest is stored.
"""

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg
from psycopg import sql

from base.db import connect, timescaledb_in_use
from base.vocabulary import MONITOR_KINDS
from ingest import metrics
from ingest.dead_letters import DeadLetterLimit, raw_kept, sender
from ingest.decode import element_raw
from ingest.message import Accepted, AvailabilityChange, Message, Rejection
from ingest.sink.errors import Verdict, classify, describe, error_class
from ingest.sink.rows import stage_copy_data

log = logging.getLogger(__name__)

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS heartbeat_stage (
    arrival integer NOT NULL, device_id text NOT NULL, ts timestamptz NOT NULL, kind text,
    healthy boolean NOT NULL, status text NOT NULL, seq bigint, checks jsonb, metrics jsonb,
    measurements jsonb, source text NOT NULL, received_at timestamptz NOT NULL, gateway_id text
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = (
    "COPY heartbeat_stage (arrival, device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,"
    " source, received_at, gateway_id) FROM STDIN"
)
# A mapped heartbeat may leave its kind to the registry (ingest/mapping/): it takes the device's, and with it
# the rule that a monitor is healthy only while it measures (ingest/schema.py's `is_healthy`, the one rule the
# decoder could not apply without the kind). One statement fills them, the next refuses the rest: a device the
# registry does not know has no kind to store.
_KIND_FROM_REGISTRY = sql.SQL("""
UPDATE heartbeat_stage s
SET kind = d.kind,
    healthy = s.healthy AND (d.kind <> ALL({monitors}) OR (s.measurements IS NOT NULL AND s.measurements <> '{{}}'))
FROM devices d
WHERE s.kind IS NULL AND d.device_id = s.device_id
""").format(monitors=sql.Literal(sorted(k.value for k in MONITOR_KINDS)))
_REMOVE_KIND_UNKNOWN = "DELETE FROM heartbeat_stage WHERE kind IS NULL RETURNING arrival"
# DESIGN: "A heartbeat whose kind contradicts the registry's kind for that device is dead-lettered."
_REMOVE_KIND_MISMATCHES = """
DELETE FROM heartbeat_stage s USING devices d
WHERE d.device_id = s.device_id AND d.kind <> s.kind
RETURNING s.arrival, s.kind, d.kind AS registered_kind
"""
# A gateway may report only for the devices bound to it: a registered device's heartbeat that came through
# gateway G needs a binding in force at its ts naming G. A device the registry does not know is left to the
# unknown-device path (stored, covers nothing). For the message, what the device is bound to at ts instead.
_REMOVE_GATEWAY_NOT_BOUND = """
WITH refused AS (
    DELETE FROM heartbeat_stage s
    WHERE s.gateway_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
      AND NOT EXISTS (SELECT 1 FROM bindings b
                      WHERE b.device_id = s.device_id AND b.gateway_id = s.gateway_id
                        AND b.valid_from <= s.ts AND (b.valid_to IS NULL OR b.valid_to > s.ts))
    RETURNING s.arrival, s.device_id, s.ts, s.gateway_id
)
SELECT r.arrival, r.gateway_id, b.point_id, b.gateway_id AS bound_gateway
FROM refused r
LEFT JOIN bindings b ON b.device_id = r.device_id AND b.valid_from <= r.ts AND (b.valid_to IS NULL OR b.valid_to > r.ts)
"""
_COUNT_UNKNOWN_DEVICES = """
SELECT source, count(*) AS n FROM heartbeat_stage s
WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
GROUP BY source
"""
# DESIGN: "Duplicates (same device_id and ts) are stored once; the first stored wins." Within a batch the
# first to arrive wins; against stored rows, the stored one does.
# Counted in the statement: a row back per stored heartbeat would cost the wire and us more than the insert.
_INSERT_HEARTBEATS = """
WITH stored AS (
    INSERT INTO heartbeats (device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,
                            source, received_at)
    SELECT DISTINCT ON (device_id, ts) device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,
           source, received_at
    FROM heartbeat_stage
    ORDER BY device_id, ts, arrival
    ON CONFLICT (device_id, ts) DO NOTHING
    RETURNING source
)
SELECT source, count(*) AS n FROM stored GROUP BY source
"""
# On TimescaleDB no trigger can see a statement's rows on the hypertable, so the sink tells the packages that
# derive data from heartbeats which hours its batch wrote, in the same transaction: it calls the functions they
# registered (ingest/migrations/003_batch_hooks.sql). On plain PostgreSQL their triggers see every writer.
_BATCH_HOOKS = "SELECT function_name FROM heartbeat_batch_hooks ORDER BY function_name"
_BATCH_HOURS = "(SELECT ARRAY(SELECT DISTINCT date_trunc('hour', ts, 'UTC') FROM heartbeat_stage) AS hours) batch"
# Availability mappings' state changes (ingest/mapping/), in the batch's transaction like its heartbeats.
# A change to the state the device was already in at its ts (a retained message redelivered on every
# reconnect, mostly) says nothing: not stored. The KPI package's trigger turns what is stored into hours.
_INSERT_AVAILABILITY = """
WITH batch AS (
    SELECT c.*, lag(c.ts) OVER w AS ts_before, lag(c.online) OVER w AS online_before
    FROM unnest(%s::text[], %s::timestamptz[], %s::boolean[], %s::boolean[], %s::text[], %s::text[],
                %s::timestamptz[]) AS c(device_id, ts, online, retained, source, origin, received_at)
    WINDOW w AS (PARTITION BY c.device_id ORDER BY c.ts)
)
INSERT INTO availability_events (device_id, ts, online, retained, source, origin, received_at)
SELECT c.device_id, c.ts, c.online, c.retained, c.source, c.origin, c.received_at
FROM batch c
-- The state in force just before: the latest of the stored changes at or before it and the batch's before it.
WHERE c.online IS DISTINCT FROM (
    SELECT s.online FROM (
        (SELECT e.ts, e.online FROM availability_events e
         WHERE e.device_id = c.device_id AND e.ts <= c.ts ORDER BY e.ts DESC LIMIT 1)
        UNION ALL
        SELECT c.ts_before, c.online_before WHERE c.ts_before IS NOT NULL
    ) s ORDER BY s.ts DESC LIMIT 1)
ON CONFLICT (device_id, ts) DO NOTHING
RETURNING source
"""
_COPY_DEAD_LETTERS = "COPY dead_letters (received_at, source, origin, reason, detail, raw) FROM STDIN"


class WriteAbandoned(Exception):
    """The sink was told to stop while the database was failing; the batch stays unacknowledged."""


@dataclass
class BatchResult:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    # Rejections over their sender's dead-letter rate: counted, not stored.
    suppressed: int = 0
    unknown_device: int = 0
    availability_stored: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, other: "BatchResult") -> "BatchResult":
        self.messages += other.messages
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.suppressed += other.suppressed
        self.unknown_device += other.unknown_device
        self.availability_stored += other.availability_stored
        for reason, count in other.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + count
        return self


class _Staged(NamedTuple):
    message: Message
    heartbeat: Accepted
    position: int = 0  # in a gateway's array

    def refused(self, reason: str, detail: str) -> Rejection:
        """A rejection made after decoding, against the registry: it carries this heartbeat's bytes only."""
        return Rejection(reason, detail, element_raw(self.message.payload, self.position))


class HeartbeatSink:
    """Writes batches; `write()` returns only once the batch is committed and its messages acknowledged.

    A retryable database failure (connection lost, serialization failure, …) is retried with jittered
    exponential backoff (at most `max_backoff_s` between attempts) until `stop_event` is set; meanwhile
    nothing is acknowledged, so the brokers keep the messages. Data the database refuses is isolated by
    bisection and dead-lettered (`database_rejected`). Any other failure (a missing table, a permission)
    is raised to the caller with nothing acknowledged.
    """

    def __init__(self, database_url: str, *, stop_event: threading.Event | None = None,
                 max_backoff_s: float = 10.0, dead_letter_limit: DeadLetterLimit | None = None,
                 max_raw_bytes: int = 4096) -> None:
        self.database_url = database_url
        self.stop_event = stop_event or threading.Event()
        self.max_backoff_s = max_backoff_s
        self.dead_letter_limit = dead_letter_limit or DeadLetterLimit(120)
        self.max_raw_bytes = max_raw_bytes
        self._conn: psycopg.Connection | None = None
        self._call_hooks: sql.Composable | None = None
        # Read by /readyz: false from a failed write until the next one succeeds.
        self.database_ok = True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.database_url, connect_timeout_s=10)
            self._conn.execute(_CREATE_STAGE)
            self._call_hooks = _hooks_call(self._conn) if timescaledb_in_use(self._conn) else None
            self._conn.commit()
        return self._conn

    def write(self, messages: list[Message]) -> BatchResult:
        staged: list[_Staged] = []
        rejected: list[tuple[Message, Rejection]] = []
        changes: list[tuple[Message, AvailabilityChange]] = []
        for source, count in Counter(message.source for message in messages).items():
            metrics.MESSAGES_RECEIVED.labels(source).inc(count)
        for message in messages:
            decoded = message.decoded
            staged += [_Staged(message, hb, position)
                       for hb, position in zip(decoded.accepted, decoded.positions, strict=True)]
            rejected += [(message, rejection) for rejection in decoded.rejected]
            changes += [(message, change) for change in decoded.availability]
        # Counted once a message, before any retry of the transaction.
        rejected, suppressed = self._limited(rejected)

        attempt = 0
        while True:
            try:
                result = self._write_isolating(staged, rejected, changes)
                self.database_ok = True
                break
            except Exception as exc:
                self.database_ok = False
                verdict = classify(exc)
                metrics.DATABASE_ERRORS.labels(error_class(exc)).inc()
                self.close()
                if verdict is not Verdict.RETRY:
                    raise
                if self.stop_event.is_set():
                    raise WriteAbandoned(f"gave up retrying at shutdown; a batch of {len(messages)} messages and "
                                         f"what was still queued stay unacknowledged: {describe(exc)}") from exc
                attempt += 1
                delay = min(self.max_backoff_s, 0.1 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
                log.warning("database write failed (%s: %s), retry %d in %.1f s", exc.__class__.__name__,
                            describe(exc), attempt, delay)
                self.stop_event.wait(delay)

        result.messages = len(messages)
        result.suppressed += suppressed
        for message in messages:
            message.acknowledge()
        for flush in {message.flush for message in messages if message.flush is not None}:
            flush()
        _record_latency(messages, staged)
        return result

    def _write_isolating(self, staged: list[_Staged], rejected: list[tuple[Message, Rejection]],
                         changes: list[tuple[Message, AvailabilityChange]]) -> BatchResult:
        try:
            return self._write_once(staged, rejected, changes)
        except Exception as exc:
            if classify(exc) is not Verdict.REJECT:
                raise
            metrics.DATABASE_ERRORS.labels(error_class(exc)).inc()
            log.warning("the database rejected a batch of %d heartbeats (%s); isolating the offending ones",
                        len(staged), describe(exc))
        # The decoder's rejections go first and alone, with the state changes: they hold no heartbeat the
        # database could refuse.
        result = self._write_once([], rejected, changes) if rejected or changes else BatchResult()
        return result.add(self._bisect(staged))

    def _bisect(self, staged: list[_Staged]) -> BatchResult:
        """Halve until each refused heartbeat stands alone: log2(batch) extra transactions per bad row."""
        try:
            return self._write_once(staged, [])
        except Exception as exc:
            if classify(exc) is not Verdict.REJECT:
                raise
            metrics.DATABASE_ERRORS.labels(error_class(exc)).inc()
            if len(staged) > 1:
                middle = len(staged) // 2
                return self._bisect(staged[:middle]).add(self._bisect(staged[middle:]))
            item = staged[0]
            hb = item.heartbeat
            rejection = Rejection("database_rejected",
                                  f"device {hb.device_id} ts {hb.ts.isoformat()}: {describe(exc)}",
                                  item.message.payload)
            log.warning("dead-lettered a heartbeat the database refused: %s", rejection.detail)
            return self._write_once([], [(item.message, rejection)])

    def _write_once(self, staged: list[_Staged], rejected: list[tuple[Message, Rejection]],
                    changes: list[tuple[Message, AvailabilityChange]] | None = None) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()
        refusals: list[tuple[Message, Rejection]] = []  # made here, against the registry
        stored_by_source: Counter[str] = Counter()
        unknown_by_source: Counter[str] = Counter()
        conn = self._connection()
        with conn.transaction():
            with conn.cursor() as cur:
                if staged:
                    with cur.copy(_COPY_STAGE) as copy:
                        copy.write(stage_copy_data(
                            (item.heartbeat, item.message.source, item.message.received_at, item.message.gateway_id)
                            for item in staged))
                    # Only mapped heartbeats leave the kind to the registry: no statement for the others.
                    if any(item.heartbeat.kind is None for item in staged):
                        cur.execute(_KIND_FROM_REGISTRY)
                        for row in cur.execute(_REMOVE_KIND_UNKNOWN).fetchall():
                            item = staged[row["arrival"]]
                            refusals.append((item.message, item.refused(
                                "kind_unknown", f"device {item.heartbeat.device_id} is not in the registry, and the "
                                "mapping of its message takes the kind from the registry: register the device, or "
                                "set kind in the mapping")))
                    for row in cur.execute(_REMOVE_KIND_MISMATCHES).fetchall():
                        item = staged[row["arrival"]]
                        refusals.append((item.message, item.refused(
                            "kind_mismatch", f"device {item.heartbeat.device_id} reported kind {row['kind']!r}, "
                            f"the registry says {row['registered_kind']!r}")))
                    # Most batches hold no gateway's message: no statement for them.
                    if any(item.message.gateway_id is not None for item in staged):
                        for row in cur.execute(_REMOVE_GATEWAY_NOT_BOUND).fetchall():
                            item = staged[row["arrival"]]
                            refusals.append((item.message, item.refused(
                                "gateway_not_bound", _not_bound(item.heartbeat, row))))
                    unknown_by_source.update({r["source"]: r["n"] for r in cur.execute(_COUNT_UNKNOWN_DEVICES)})
                    stored_by_source.update({r["source"]: r["n"] for r in cur.execute(_INSERT_HEARTBEATS)})
                    if self._call_hooks is not None and stored_by_source:
                        cur.execute(self._call_hooks)
                    result.stored = stored_by_source.total()
                    result.unknown_device = unknown_by_source.total()
                    result.duplicates = len(staged) - len(refusals) - result.stored
                if changes:
                    stored_changes = Counter(r["source"] for r in cur.execute(_INSERT_AVAILABILITY, _columns(
                        [(c.device_id, c.ts, c.online, c.retained, m.source, m.origin, m.received_at)
                         for m, c in changes])).fetchall())
                    result.availability_stored = stored_changes.total()
                # (A batch retried after a failure counts its refusals against the senders' rates again.)
                kept, result.suppressed = self._limited(refusals)
                letters = [*rejected, *kept]
                if letters:
                    with cur.copy(_COPY_DEAD_LETTERS) as copy:
                        for message, rejection in letters:
                            raw, detail = raw_kept(rejection, self.max_raw_bytes)
                            copy.write_row((message.received_at, message.source, message.origin,
                                            rejection.reason, _text(detail), raw))
        result.dead_lettered = len(letters)
        for _message, rejection in letters:
            result.by_reason[rejection.reason] = result.by_reason.get(rejection.reason, 0) + 1
        _record(staged, letters, refusals, stored_by_source, unknown_by_source, time.perf_counter() - started)
        if changes:
            offered = Counter(message.source for message, _change in changes)
            for source, count in offered.items():
                metrics.AVAILABILITY_CHANGES.labels(source, "stored").inc(stored_changes[source])
                metrics.AVAILABILITY_CHANGES.labels(source, "not_new").inc(count - stored_changes[source])
        return result

    def _limited(self, rejected: list[tuple[Message, Rejection]]) -> tuple[list[tuple[Message, Rejection]], int]:
        """The rejections within their senders' dead-letter rates, and how many were over it (counted)."""
        kept = []
        for message, rejection in rejected:
            if self.dead_letter_limit.admit(sender(message)):
                kept.append((message, rejection))
            else:
                metrics.DEAD_LETTERS_SUPPRESSED.labels(message.source, rejection.reason).inc()
        return kept, len(rejected) - len(kept)


def _record(staged: list[_Staged], letters: list[tuple[Message, Rejection]],
            refusals: list[tuple[Message, Rejection]], stored: Counter[str], unknown: Counter[str],
            seconds: float) -> None:
    """Counted per source: one batch may hold MQTT and Kafka messages (`--source both`)."""
    offered = Counter(item.message.source for item in staged)
    refused = Counter(message.source for message, _rejection in refusals)
    for source in offered:
        metrics.HEARTBEATS_STORED.labels(source).inc(stored[source])
        metrics.HEARTBEATS_DUPLICATE.labels(source).inc(offered[source] - refused[source] - stored[source])
        metrics.HEARTBEATS_UNKNOWN_DEVICE.labels(source).inc(unknown[source])
    for message, rejection in letters:
        metrics.DEAD_LETTERS.labels(message.source, rejection.reason).inc()
    metrics.BATCH_ROWS.observe(len(staged))
    metrics.BATCH_WRITE_SECONDS.observe(seconds)


def _columns(rows: list[tuple]) -> list[list]:
    """Rows as the column arrays an `unnest(…)` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _hooks_call(conn: psycopg.Connection) -> sql.Composable | None:
    """One statement calling every registered batch hook with the batch's hours; None when none is registered."""
    names = [r["function_name"] for r in conn.execute(_BATCH_HOOKS)]
    if not names:
        return None
    calls = sql.SQL(", ").join(sql.SQL("{}(batch.hours)").format(sql.Identifier(name)) for name in names)
    return sql.SQL("SELECT {} FROM {}").format(calls, sql.SQL(_BATCH_HOURS))


def _not_bound(hb: Accepted, row: dict) -> str:
    who = f"gateway {row['gateway_id']!r}" if row["gateway_id"] else "a gateway without an id"
    if row["point_id"] is None:
        bound = "has no binding in force then"
    elif row["bound_gateway"] is None:
        bound = f"is bound to {row['point_id']} then, reporting for itself"
    else:
        bound = f"is bound to {row['point_id']} then, through gateway {row['bound_gateway']!r}"
    return f"{who} reported device {hb.device_id} at ts {hb.ts.isoformat()}, which {bound}"


def _record_latency(messages: list[Message], staged: list[_Staged]) -> None:
    committed = datetime.now(UTC)
    for source in {m.source for m in messages}:
        metrics.observe_many(metrics.RECEIVE_TO_COMMIT_SECONDS.labels(source),
                             [(committed - m.received_at).total_seconds() for m in messages if m.source == source])
        metrics.observe_many(metrics.HEARTBEAT_AGE_AT_COMMIT_SECONDS.labels(source),
                             [(committed - item.heartbeat.ts).total_seconds() for item in staged
                              if item.message.source == source])


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; a detail quoting a device's bytes must not lose the dead letter.
    return value.replace("\x00", "\\u0000")
