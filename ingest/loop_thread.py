"""An asyncio event loop on a thread of its own, for the sources whose clients are asyncio (aiokafka, the
probes) while the rest of ingest is threads."""

import asyncio
import logging
import threading

log = logging.getLogger(__name__)


class LoopThread:
    """Runs `_run()` on its own loop and thread until `_stop` is set; an exception that escapes it is kept in
    `failure` (ingest's supervisor reads it), never lost with the thread."""

    _thread_name = "citykpi-loop"
    _described_as = "an asyncio source"

    def _init_loop_thread(self) -> None:
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _start_loop_thread(self) -> None:
        """Returns once the loop exists, so that `_stop_loop_thread` can always reach it."""
        started = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(started,), name=self._thread_name,
                                        daemon=True)
        self._thread.start()
        started.wait()

    def _stop_loop_thread(self, timeout_s: float) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop ended on its own
                pass
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _thread_main(self, started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        started.set()
        try:
            loop.run_until_complete(self._run())
        except BaseException as exc:  # the thread must report, not vanish
            self.failure = exc
            log.exception("%s stopped on an unexpected error", self._described_as)
        finally:
            loop.close()

    async def _run(self) -> None:
        raise NotImplementedError
