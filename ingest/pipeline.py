"""The worker loop: take messages from the sources' queue, cut batches by size and wait, write, acknowledge."""

import logging
import queue
import threading
import time
from collections.abc import Callable

from ingest.message import Message
from ingest.sink import BatchResult, HeartbeatSink

log = logging.getLogger(__name__)


class IngestWorker:
    """Runs the sink on its own thread. `stop()` drains what was received, commits, acknowledges, returns.

    `on_batch` sees every committed batch's result (for progress bars and tests).
    """

    def __init__(self, sink: HeartbeatSink, *, batch_max_rows: int = 5000, batch_max_wait_s: float = 0.2,
                 queue_max: int = 20000, on_batch: Callable[[BatchResult], None] | None = None) -> None:
        self.sink = sink
        self.batch_max_rows = batch_max_rows
        self.batch_max_wait_s = batch_max_wait_s
        self.queue: queue.Queue[Message] = queue.Queue(maxsize=queue_max)
        self.on_batch = on_batch
        self.totals = BatchResult()
        self.failure: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="citykpi-sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)
        self.sink.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _next_batch(self) -> list[Message]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_max_wait_s
        while len(batch) < self.batch_max_rows:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch:
                    self._account(self.sink.write(batch))
                elif self._stopping.is_set():
                    return
        except BaseException as exc:  # the thread must report, not vanish
            self.failure = exc
            log.exception("ingest stopped on an error that retrying cannot fix")

    def _account(self, result: BatchResult) -> None:
        totals = self.totals
        totals.messages += result.messages
        totals.stored += result.stored
        totals.duplicates += result.duplicates
        totals.dead_lettered += result.dead_lettered
        totals.unknown_device += result.unknown_device
        for reason, count in result.by_reason.items():
            totals.by_reason[reason] = totals.by_reason.get(reason, 0) + count
        if self.on_batch is not None:
            self.on_batch(result)
