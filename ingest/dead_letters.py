"""Keeping `dead_letters` useful and bounded: every rejection is counted, but one sender cannot fill the table.

- `DeadLetterLimit`: at most CITYKPI_DEAD_LETTER_RATE_PER_MINUTE letters a minute from one sender (a device's
  topic, a gateway, a Kafka key); the excess is counted (`citykpi_ingest_dead_letters_suppressed_total`), not
  stored. The senders tracked in a minute are bounded too, so a flood under ever new names keeps memory flat.
- `raw_kept`: the bytes a letter keeps, cut to CITYKPI_DEAD_LETTER_MAX_RAW_BYTES.
- `DeadLetterRetention`: letters older than CITYKPI_DEAD_LETTER_RETENTION are deleted by `citykpi ingest`, a
  batch at a time, once an hour (dead_letters is a plain table on both backends, so the same job serves both).
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg

from base.db import connect
from ingest.message import Message, Rejection

log = logging.getLogger(__name__)

# Any constant; two ingest processes must not delete the same rows at once.
_RETENTION_LOCK = 0x646C6574
_DELETE_BATCH = 10_000
_DELETE_OLD = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters WHERE received_at < now() - %(retention)s ORDER BY id LIMIT %(batch)s)
"""


def sender(message: Message) -> str:
    """Who a dead letter is charged to: the gateway or device the transport names, else the origin."""
    who = message.gateway_id if message.gateway_id is not None else message.expected_device_id
    return f"{message.source}:{who if who is not None else message.origin}"


class DeadLetterLimit:
    """A fixed one-minute window per sender; thread-safe (the sink calls it, tests may from others)."""

    def __init__(self, per_minute: int, *, max_senders: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.max_senders = max_senders
        self._clock = clock
        self._window = -1
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, who: str) -> bool:
        """Whether one more letter from `who` is stored this minute."""
        with self._lock:
            window = int(self._clock() // 60)
            if window != self._window:
                self._window, self._counts = window, {}
            if who not in self._counts and len(self._counts) >= self.max_senders:
                who = "(senders beyond the tracked ones)"
            count = self._counts.get(who, 0) + 1
            self._counts[who] = count
            return count <= self.per_minute


def raw_kept(rejection: Rejection, max_bytes: int) -> tuple[bytes, str]:
    """The bytes a letter stores and its detail, saying when they were cut."""
    if len(rejection.raw) <= max_bytes:
        return rejection.raw, rejection.detail
    return rejection.raw[:max_bytes], f"{rejection.detail} (raw bytes cut to {max_bytes} of {len(rejection.raw)})"


class DeadLetterRetention:
    """Deletes letters older than `retention` every `interval_s`, on a thread of its own, until `stop()`."""

    def __init__(self, database_url: str, retention: timedelta, *, interval_s: float = 3600.0) -> None:
        self.database_url = database_url
        self.retention = retention
        self.interval_s = interval_s
        self.deleted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citykpi-dead-letter-retention", daemon=True)

    def start(self) -> "DeadLetterRetention":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run_once(self) -> int:
        """Delete what has aged out, a batch per transaction; the number deleted (0 when another process holds
        the job)."""
        deleted = 0
        with connect(self.database_url, autocommit=True, connect_timeout_s=10) as conn:
            if not conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_RETENTION_LOCK,)).fetchone()["got"]:
                return 0
            try:
                while not self._stop.is_set():
                    done = conn.execute(_DELETE_OLD, {"retention": self.retention, "batch": _DELETE_BATCH}).rowcount
                    deleted += done
                    if done < _DELETE_BATCH:
                        break
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_RETENTION_LOCK,))
        self.deleted += deleted
        return deleted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if deleted := self.run_once():
                    log.info("deleted %d dead letters older than %s", deleted, self.retention)
            except psycopg.Error as exc:  # the database is away: the next round tries again
                log.warning("dead-letter retention failed, retrying in %.0f s: %s", self.interval_s, exc)
            self._stop.wait(self.interval_s)
