"""Watches the directory the FTP server drops station files in, and hands each file to the sink as a message.

A file is claimed by renaming it into `processing/` (atomic on one file system: two scans never take the
same file), read, decoded (station_file.py) and handed over; once the sink has committed its rows and dead
letters, its acknowledgement moves the file to `done/`, or to `rejected/` beside a `.reason.txt` naming every
problem. What is in `processing/` at start was claimed by a process that died before that: it is read again,
and its heartbeats, already stored or not, are stored once (the heartbeats' key de-duplicates them).

A file still being written is not claimed: only files unchanged for `settle_s` are. Only one ingest process
may watch a directory, since recovery takes everything in `processing/`.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from base.db import connect
from ingest import metrics
from ingest.decode import DecodeStage
from ingest.files.station_file import FILE_NAME, decode_station_file, station_mapping
from ingest.handoff import Handoff
from ingest.message import Decoded, Message, Rejection

log = logging.getLogger(__name__)

SUBDIRECTORIES = ("processing", "done", "rejected")


class FilesSource:
    name = "files"

    def __init__(self, directory: Path, database_url: str, *, poll_s: float = 2.0, settle_s: float = 5.0,
                 status_codes: dict[str, list[str]] | None = None, max_files_per_scan: int = 500,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.directory = Path(directory)
        self.database_url = database_url
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.max_files_per_scan = max_files_per_scan
        self.clock = clock or (lambda: datetime.now(UTC))
        self.mapping = station_mapping(status_codes)
        # Set while the directory can be used and the registry read: /readyz reports it.
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.failure: BaseException | None = None
        # Looks at the directory so far (the tests wait on it rather than on time).
        self.scans = 0
        self._accepting = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handoff: Handoff | None = None
        self._decode: DecodeStage | None = None

    def start(self, deliver_to: Handoff, decode: DecodeStage) -> None:
        self._handoff, self._decode = deliver_to, decode
        for sub in SUBDIRECTORIES:
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self._accepting.set()
        self._thread = threading.Thread(target=self._thread_main, name="citykpi-files", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Claim no more files; those handed over are still moved once stored."""
        self._accepting.clear()

    def close(self, timeout_s: float = 15) -> None:
        self.pause()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _thread_main(self) -> None:
        try:
            recovered = False
            while not self._stop.is_set():
                if not recovered:
                    recovered = self._hand_over(
                        sorted(p.name for p in (self.directory / "processing").iterdir() if p.is_file()), claimed=True)
                if recovered and self._accepting.is_set():
                    self._scan()
                self._stop.wait(self.poll_s)
        except BaseException as exc:  # the thread must report, not vanish
            self.failure = exc
            log.exception("the files source stopped on an unexpected error")

    def _scan(self) -> None:
        try:
            ready = self._settled_files()
        except OSError as exc:
            self._not_ready(f"cannot list {self.directory}: {exc.strerror or exc}")
            return
        if self.last_error is None or self.last_error.startswith("cannot list"):
            self.last_error = None
            self.connected.set()
        self._hand_over(ready, claimed=False)
        self.scans += 1

    def _settled_files(self) -> list[str]:
        """Names of the regular files no writer touched for `settle_s`, oldest name first, a scan's worth."""
        now = time.time()  # the file system's clock, whatever clock stamps receipt
        names = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                if now - entry.stat(follow_symlinks=False).st_mtime >= self.settle_s:
                    names.append(entry.name)
        return sorted(names)[:self.max_files_per_scan]

    def _hand_over(self, names: list[str], *, claimed: bool) -> bool:
        """Claim (unless `claimed`), decode and hand over the files `names`; false when the registry could not
        be read, and then none was touched."""
        if not names:
            return True
        try:
            registered = self._registered([m["station"] for n in names if (m := FILE_NAME.fullmatch(n))])
        except psycopg.Error as exc:
            # Leave the files where they are: they are claimed once the registry can say whose they are.
            self._not_ready(f"registry unreachable: {str(exc).strip()[:200]}")
            return False
        self.last_error = None
        self.connected.set()
        for name in names:
            if not claimed and not self._accepting.is_set():
                break
            message = self._message(name, registered, claimed=claimed)
            if message is None:
                continue
            assert self._handoff is not None
            while not self._handoff.put_many([message], timeout_s=1.0):
                if self._stop.is_set():
                    return True  # still in processing/: the next start reads it again
        return True

    def _message(self, name: str, registered: set[str], *, claimed: bool) -> Message | None:
        """Claim the file and decode it; None when another claimed it first or it vanished."""
        processing = self.directory / "processing" / name
        if not claimed:
            try:
                os.rename(self.directory / name, processing)
            except FileNotFoundError:
                return None
        try:
            with processing.open("rb") as file:
                assert self._decode is not None
                raw = file.read(self._decode.limits.max_message_bytes + 1)
        except FileNotFoundError:
            return None
        received_at = self.clock()
        assert self._decode is not None
        matched = FILE_NAME.fullmatch(name)
        if matched is not None and matched["station"] not in registered:
            decoded = Decoded([], [Rejection(
                "unknown_station", f"{name}: station {matched['station']!r} is no device of the registry (register "
                "its data logger under this id)", raw[:1024])])
        else:
            decoded = decode_station_file(name, raw, self.mapping, received_at=received_at,
                                          limits=self._decode.limits, zone=self._decode.zone)
        reasons = [r.detail for r in decoded.rejected]
        return Message(self.name, name, raw, received_at, None, False,
                       lambda: self._finish(name, reasons), decoded)

    def _finish(self, name: str, reasons: list[str]) -> None:
        """Called by the sink after the file's rows and dead letters are committed."""
        outcome = "rejected" if reasons else "done"
        target = _free_name(self.directory / outcome, name)
        try:
            os.rename(self.directory / "processing" / name, target)
            if reasons:
                target.with_name(target.name + ".reason.txt").write_text("\n".join(reasons) + "\n", encoding="utf-8")
        except OSError as exc:  # the rows are stored; a file left in processing/ is read again at the next start
            log.error("station file %s: stored, but could not be moved to %s/: %s", name, outcome, exc)
            return
        metrics.STATION_FILES.labels(outcome).inc()

    def _registered(self, stations: list[str]) -> set[str]:
        if not stations:
            return set()
        with connect(self.database_url) as conn:
            rows = conn.execute("SELECT device_id FROM devices WHERE device_id = ANY(%s)", (stations,)).fetchall()
        return {r["device_id"] for r in rows}

    def _not_ready(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("files source: %s", reason)
        self.last_error = reason
        self.connected.clear()


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `name.1`, `name.2`, … when a file of that name arrived there before."""
    target, number = directory / name, 0
    while target.exists():
        number += 1
        target = directory / f"{name}.{number}"
    return target
