"""Watches the directory the FTP server drops station files in, and hands each file to the sink as a message.

A file is claimed by renaming it into `processing/` (atomic on one file system: two scans never take the
same file), read, decoded (station_file.py) and handed over; once the sink has committed its rows and dead
letters, its acknowledgement moves the file to `done/`, or to `rejected/` beside a `.reason.txt` naming every
problem. What is in `processing/` at start was claimed by a process that died before that: it is read again,
and its heartbeats, already stored or not, are stored once (the heartbeats' key de-duplicates them).

A file still being written is not claimed: only files whose inode nobody changed for `settle_s` are (its
ctime, which an FTP client cannot set as it can the mtime), and a file that changed while it was read goes back
to be read once it settles. Only one ingest process may watch a directory, since recovery takes everything in
`processing/`; and since `processing/` holds one file of a name, a file arriving under the name of one in
flight waits for that one to end.

A file the source cannot claim or read (permissions, an immutable flag, an I/O error) costs that file, not the
source: one it cannot move stays where it is, said once in the log and tried again at each scan; one it claimed
but cannot read is rejected, with a dead letter saying why. A name that is not UTF-8 is shown with U+FFFD where
its bytes are not, in dead letters and logs; the file keeps its name on disk.
"""

import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
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
        # The file system's clock, which settling is judged by whatever clock stamps receipt.
        self.file_clock: Callable[[], float] = time.time
        self.mapping = station_mapping(status_codes)
        # Set while the directory can be used and the registry read: /readyz reports it.
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.failure: BaseException | None = None
        # Looks at the directory so far (the tests wait on it rather than on time).
        self.scans = 0
        # Files the source could not move into processing/, by name: the reason, said once.
        self.unclaimable: dict[str, str] = {}
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
        """Names of the regular files no writer touched for `settle_s`, oldest name first, a scan's worth. Those
        named as one in flight wait for a scan after it is done; those that could not be moved come after the
        others, so that neither ever fills a scan."""
        now = self.file_clock()
        in_flight = set(os.listdir(self.directory / "processing"))
        for gone in [name for name in self.unclaimable if not os.path.lexists(self.directory / name)]:
            del self.unclaimable[gone]
        waiting: list[str] = []

        def settled() -> Iterator[str]:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.name in in_flight:
                        continue
                    if entry.name in self.unclaimable:
                        if len(waiting) < self.max_files_per_scan:
                            waiting.append(entry.name)
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False) and \
                                now - entry.stat(follow_symlinks=False).st_ctime >= self.settle_s:
                            yield entry.name
                    except OSError:  # gone or unreadable since it was listed: the next scan sees what it is
                        continue

        ready = heapq.nsmallest(self.max_files_per_scan, settled())
        return ready + waiting[:max(self.max_files_per_scan - len(ready), 0)]

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
            if claimed and message.decoded.rejected and self._stored(message):
                # Its dead letters were committed before the restart; its heartbeats may not have been (the sink
                # commits a batch's rejections alone when it isolates rows the database refuses): they go again
                # and their key de-duplicates them, the rejections do not.
                if not message.decoded.accepted:
                    message.acknowledge()
                    continue
                message = message._replace(decoded=replace(message.decoded, rejected=[]))
            assert self._handoff is not None
            while not self._handoff.put_many([message], timeout_s=1.0):
                if self._stop.is_set():
                    return True  # still in processing/: the next start reads it again
        return True

    def _message(self, name: str, registered: set[str], *, claimed: bool) -> Message | None:
        """Claim the file and decode it; None when it is not to be read now (gone, another of its name in
        flight, not movable, or changed while it was read)."""
        processing = self.directory / "processing" / name
        shown = printable(name)
        if not claimed and not self._claim(name, shown, processing):
            return None
        assert self._decode is not None
        try:
            raw, changed, claimed_at = read_whole(processing, self._decode.limits.max_message_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._unreadable(name, shown, processing, exc)
        if changed and not claimed and self._put_back(name, shown, processing):
            return None
        # The same after a restart, so that its dead letters are found by it (_stored).
        received_at = self._received(claimed_at)
        matched = FILE_NAME.fullmatch(name)
        if matched is not None and matched["station"] not in registered:
            decoded = Decoded([], [Rejection(
                "unknown_station", f"{shown}: station {matched['station']!r} is no device of the registry (register "
                "its data logger under this id)", raw[:1024])])
        else:
            decoded = decode_station_file(shown, raw, self.mapping, received_at=received_at,
                                          limits=self._decode.limits, zone=self._decode.zone)
        reasons = [r.detail for r in decoded.rejected]
        return Message(self.name, shown, raw, received_at, None, False,
                       lambda: self._finish(name, reasons), decoded)

    def _claim(self, name: str, shown: str, processing: Path) -> bool:
        # Only this process writes into processing/, so a name checked free there stays free until the rename.
        if os.path.lexists(processing):
            return False  # its namesake is in flight: this one is claimed once that one is done
        try:
            os.rename(self.directory / name, processing)
        except FileNotFoundError:
            return False
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if self.unclaimable.get(name) != reason:
                log.error("station file %s cannot be moved into processing/ (%s): left where it is, tried again at "
                          "each scan", shown, reason)
            self.unclaimable[name] = reason
            return False
        self.unclaimable.pop(name, None)
        return True

    def _unreadable(self, name: str, shown: str, processing: Path, exc: OSError) -> Message:
        """A claimed file that cannot be read: rejected, with a dead letter saying why, received when claimed."""
        reason = f"{shown}: cannot be read: {exc.strerror or exc}"
        try:
            received_at = self._received(claim_time(os.stat(processing)))
        except OSError:
            received_at = self.clock()
        return Message(self.name, shown, b"", received_at, None, False, lambda: self._finish(name, [reason]),
                       Decoded([], [Rejection("unreadable", reason, b"")]))

    def _received(self, claimed_at: datetime) -> datetime:
        """A file's receipt: when it was claimed, so a read after a restart gives the same (the clock is only
        ever earlier under a test's fixed clock)."""
        return min(self.clock(), claimed_at)

    def _put_back(self, name: str, shown: str, processing: Path) -> bool:
        """Return a file that changed while it was read to where it came from; false when it cannot go back
        (another of its name arrived there), and then what was read is what counts."""
        try:
            # A link, not a rename: the FTP server writes into that directory, and a rename would replace an
            # upload of the same name that arrived since; a link refuses to.
            os.link(processing, self.directory / name)
            os.unlink(processing)
        except FileExistsError:
            return False
        except OSError as exc:
            log.error("station file %s changed while it was read and cannot be put back (%s): read as it was",
                      shown, exc.strerror or exc)
            return False
        log.warning("station file %s changed while it was read: put back until it settles", shown)
        return True

    def _finish(self, name: str, reasons: list[str]) -> None:
        """Called by the sink after the file's rows and dead letters are committed."""
        outcome = "rejected" if reasons else "done"
        try:
            target = _free_name(self.directory / outcome, name)
            # The reasons first: a rejected file is never found without them.
            if reasons:
                target.with_name(target.name + ".reason.txt").write_text("\n".join(reasons) + "\n", encoding="utf-8")
            os.rename(self.directory / "processing" / name, target)
        except OSError as exc:  # the rows are stored; a file left in processing/ is read again at the next start
            log.error("station file %s: stored, but could not be moved to %s/: %s", printable(name), outcome, exc)
            return
        metrics.STATION_FILES.labels(outcome).inc()

    def _stored(self, message: Message) -> bool:
        """Whether the dead letters of a file read again after a restart were committed then (its heartbeats
        are de-duplicated by their key; its dead letters have none but the file's name and claim time)."""
        try:
            with connect(self.database_url) as conn:
                return conn.execute("SELECT EXISTS (SELECT FROM dead_letters WHERE source = %s AND origin = %s AND "
                                    "received_at = %s) AS stored", (self.name, message.origin, message.received_at)
                                    ).fetchone()["stored"]
        except psycopg.Error:
            return False  # then its dead letters may be written twice, never lost

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


def printable(name: str) -> str:
    """A file name as text that can be stored: the bytes of a name that is not UTF-8 (which Python keeps as
    surrogates) shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def claim_time(status: os.stat_result) -> datetime:
    """When a file in processing/ was claimed: the ctime the rename into it set."""
    return datetime.fromtimestamp(status.st_ctime, UTC)


def read_whole(path: Path, limit: int) -> tuple[bytes, bool, datetime]:
    """Up to `limit` bytes of the file; whether it changed while it was read (its size or mtime moved, or it
    holds more than was read although under `limit`); and its ctime, the moment it was claimed (the rename into
    processing/ set it)."""
    with path.open("rb") as file:
        before = os.fstat(file.fileno())
        raw = file.read(limit)
        after = os.fstat(file.fileno())
    changed = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or \
        (len(raw) < limit and after.st_size != len(raw))
    return raw, changed, claim_time(after)


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `name.1`, `name.2`, … when a file of that name arrived there before."""
    target, number = directory / name, 0
    while target.exists():
        number += 1
        target = directory / f"{name}.{number}"
    return target
