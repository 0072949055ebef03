"""Writes a batch of messages in one transaction: COPY into a staging table, then one set-based INSERT.

The staging table lets the database do the checks that need the registry (a heartbeat whose kind
contradicts the device's registered kind) and the de-duplication (ON CONFLICT), in one round trip each.
"""

import logging
import random
import threading
import time
from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

from citykpi.db import connect
from ingest import metrics
from ingest.decode import Limits, Rejection, decode_message
from ingest.message import Message
from ingest.schema import Heartbeat
from ingest.sink.errors import error_class, is_retryable

log = logging.getLogger(__name__)

_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS heartbeat_stage (
    arrival integer NOT NULL, device_id text NOT NULL, ts timestamptz NOT NULL, kind text NOT NULL,
    healthy boolean NOT NULL, status text NOT NULL, seq bigint, checks jsonb, metrics jsonb,
    measurements jsonb, source text NOT NULL, received_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = (
    "COPY heartbeat_stage (arrival, device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,"
    " source, received_at) FROM STDIN"
)
# DESIGN: "A heartbeat whose kind contradicts the registry's kind for that device is dead-lettered."
_REMOVE_KIND_MISMATCHES = """
DELETE FROM heartbeat_stage s USING devices d
WHERE d.device_id = s.device_id AND d.kind <> s.kind
RETURNING s.arrival, s.kind, d.kind AS registered_kind
"""
_COUNT_UNKNOWN_DEVICES = """
SELECT count(*) AS n FROM heartbeat_stage s WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
"""
# DESIGN: "Duplicates (same device_id and ts) are stored once; the first stored wins." Within a batch the
# first to arrive wins; against stored rows, the stored one does.
_INSERT_HEARTBEATS = """
INSERT INTO heartbeats (device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,
                        source, received_at)
SELECT DISTINCT ON (device_id, ts) device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,
       source, received_at
FROM heartbeat_stage
ORDER BY device_id, ts, arrival
ON CONFLICT (device_id, ts) DO NOTHING
"""
_COPY_DEAD_LETTERS = "COPY dead_letters (received_at, source, origin, reason, detail, raw) FROM STDIN"


@dataclass
class BatchResult:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unknown_device: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Staged:
    message: Message
    heartbeat: Heartbeat


class HeartbeatSink:
    """Writes batches; `write()` returns only once the batch is committed and its messages acknowledged.

    A retryable database failure (connection lost, serialization failure, …) is retried with jittered
    exponential backoff until `stop_event` is set; meanwhile nothing is acknowledged, so the broker keeps
    the messages. A permanent failure is raised to the caller, with nothing acknowledged.
    """

    def __init__(self, database_url: str, *, limits: Limits | None = None,
                 stop_event: threading.Event | None = None, max_backoff_s: float = 10.0) -> None:
        self.database_url = database_url
        self.limits = limits or Limits()
        self.stop_event = stop_event or threading.Event()
        self.max_backoff_s = max_backoff_s
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.database_url)
            self._conn.execute(_CREATE_STAGE)
            self._conn.commit()
        return self._conn

    def write(self, messages: list[Message]) -> BatchResult:
        staged: list[_Staged] = []
        rejected: list[tuple[Message, Rejection]] = []
        for message in messages:
            metrics.MESSAGES_RECEIVED.labels(message.source).inc()
            decoded = decode_message(message.payload, received_at=message.received_at,
                                     expected_device_id=message.expected_device_id,
                                     allow_array=message.allow_array, limits=self.limits)
            staged += [_Staged(message, hb) for hb in decoded.accepted]
            rejected += [(message, rejection) for rejection in decoded.rejected]

        attempt = 0
        while True:
            try:
                result = self._write_once(staged, rejected)
                break
            except Exception as exc:
                metrics.DATABASE_ERRORS.labels(error_class(exc)).inc()
                self.close()
                if not is_retryable(exc) or self.stop_event.is_set():
                    raise
                attempt += 1
                delay = min(self.max_backoff_s, 0.1 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
                log.warning("database write failed (%s), retry %d in %.1f s", exc.__class__.__name__, attempt, delay)
                self.stop_event.wait(delay)

        result.messages = len(messages)
        for message in messages:
            message.acknowledge()
        return result

    def _write_once(self, staged: list[_Staged], rejected: list[tuple[Message, Rejection]]) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()
        rejected = list(rejected)
        conn = self._connection()
        with conn.transaction():
            with conn.cursor() as cur:
                if staged:
                    with cur.copy(_COPY_STAGE) as copy:
                        for arrival, item in enumerate(staged):
                            hb = item.heartbeat
                            copy.write_row((
                                arrival, hb.device_id, hb.ts, hb.kind.value, hb.healthy, hb.status.value, hb.seq,
                                _json(hb.checks), _json(hb.metrics), _json(hb.measurements),
                                item.message.source, item.message.received_at))
                    mismatches = cur.execute(_REMOVE_KIND_MISMATCHES).fetchall()
                    for row in mismatches:
                        item = staged[row["arrival"]]
                        rejected.append((item.message, Rejection(
                            "kind_mismatch",
                            f"device {item.heartbeat.device_id} reported kind {row['kind']!r}, "
                            f"the registry says {row['registered_kind']!r}",
                            item.message.payload)))
                    result.unknown_device = cur.execute(_COUNT_UNKNOWN_DEVICES).fetchone()["n"]
                    cur.execute(_INSERT_HEARTBEATS)
                    result.stored = cur.rowcount
                    result.duplicates = len(staged) - len(mismatches) - result.stored
                if rejected:
                    with cur.copy(_COPY_DEAD_LETTERS) as copy:
                        for message, rejection in rejected:
                            copy.write_row((message.received_at, message.source, message.origin,
                                            rejection.reason, rejection.detail, rejection.raw))
        result.dead_lettered = len(rejected)
        for _message, rejection in rejected:
            result.by_reason[rejection.reason] = result.by_reason.get(rejection.reason, 0) + 1
        self._record(staged, rejected, result, time.perf_counter() - started)
        return result

    @staticmethod
    def _record(staged: list[_Staged], rejected: list[tuple[Message, Rejection]], result: BatchResult,
                seconds: float) -> None:
        source = staged[0].message.source if staged else (rejected[0][0].source if rejected else "none")
        metrics.HEARTBEATS_STORED.labels(source).inc(result.stored)
        metrics.HEARTBEATS_DUPLICATE.labels(source).inc(result.duplicates)
        metrics.HEARTBEATS_UNKNOWN_DEVICE.labels(source).inc(result.unknown_device)
        for message, rejection in rejected:
            metrics.DEAD_LETTERS.labels(message.source, rejection.reason).inc()
        metrics.BATCH_ROWS.observe(len(staged))
        metrics.BATCH_WRITE_SECONDS.observe(seconds)


def _json(value: dict | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)

