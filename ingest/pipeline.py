"""The worker loop: take messages from the sources' queue, cut batches by size and wait, write, acknowledge."""

import logging
import threading
from collections.abc import Callable, Iterator

from ingest import metrics
from ingest.handoff import Handoff
from ingest.message import Message
from ingest.sink import BatchResult, HeartbeatSink, WriteAbandoned

log = logging.getLogger(__name__)


class IngestWorker:
    """Runs the sink on its own thread. `stop()` drains what was received, commits, acknowledges, returns.

    The queue is bounded (`queue_max`, give or take one source's read): when the database is slow, sources
    block on it and the brokers hold the backlog. `on_batch` sees every committed batch's result (for progress
    bars and tests).
    """

    def __init__(self, sink: HeartbeatSink, *, batch_max_rows: int = 5000, batch_max_wait_s: float = 0.2,
                 batch_idle_s: float = 0.02, queue_max: int = 20000, queue_max_bytes: int = 64 * 1024 * 1024,
                 on_batch: Callable[[BatchResult], None] | None = None) -> None:
        self.sink = sink
        self.batch_max_rows = batch_max_rows
        self.batch_max_wait_s = batch_max_wait_s
        self.batch_idle_s = batch_idle_s
        self.queue_max = queue_max
        self.queue = Handoff(queue_max, queue_max_bytes)
        self.on_batch = on_batch
        self.totals = BatchResult()
        self.failure: BaseException | None = None
        self._writing = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citykpi-sink", daemon=True)
        self._unwatch: Callable[[], None] | None = None

    def start(self) -> None:
        self._unwatch = metrics.LIVE.watch(self._gauges)
        self._thread.start()

    def stop(self, timeout_s: float = 30) -> bool:
        """Write and acknowledge everything queued, for at most `timeout_s`; true when all of it was.

        Past the deadline the sink stops retrying (a database that is down stays down for us); what is left
        unacknowledged is redelivered by the brokers to whoever consumes next.
        """
        self._stopping.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("drain did not finish in %.0f s (%d messages queued); giving up on retries",
                        timeout_s, self.queue.qsize())
            self.sink.stop_event.set()
            self._thread.join(5)
        drained = not self._thread.is_alive() and self.failure is None and self.queue.empty()
        if not self._thread.is_alive():
            self.sink.close()
        if self._unwatch is not None:
            self._unwatch()
        return drained

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def in_flight(self) -> int:
        """Messages taken from the brokers and not yet acknowledged."""
        return self.queue.qsize() + self._writing

    def _gauges(self) -> Iterator[metrics.Sample]:
        yield metrics.IN_FLIGHT, ("queued",), self.queue.qsize()
        yield metrics.IN_FLIGHT, ("writing",), self._writing
        yield metrics.QUEUE_CAPACITY, (), self.queue_max

    def _next_batch(self) -> list[Message]:
        return self.queue.take(self.batch_max_rows, first_wait_s=0.1, max_wait_s=self.batch_max_wait_s,
                               idle_s=self.batch_idle_s)

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch:
                    self._writing = len(batch)
                    self._account(self.sink.write(batch))
                    self._writing = 0
                elif self._stopping.is_set():
                    return
        except WriteAbandoned as exc:
            self.failure = exc
            log.warning("%s", exc)
        except BaseException as exc:  # the thread must report, not vanish
            self.failure = exc
            log.exception("ingest stopped on an error that retrying cannot fix")

    def _account(self, result: BatchResult) -> None:
        self.totals.add(result)
        if self.on_batch is not None:
            self.on_batch(result)
