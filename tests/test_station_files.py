"""Monitoring-station files as a source (ingest/files/): the file layout and its refusals, then `citykpi ingest
--source files` against the real PostgreSQL — every status code, a malformed line, a duplicate file, an unknown
station, a file already claimed by a process that died, a kill -9 mid-directory — and the indicator they move."""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from base.settings import Settings
from devstack.ingest_process import IngestProcess
from ingest.decode import Limits
from ingest.files import source as files_source
from ingest.files.station_file import decode_station_file, read_station_file, station_mapping
from ingest.message import Accepted
from ingest.service import Ingest
from simulators.faults import FaultShares
from simulators.run import backfill, build_fleet
from simulators.stream import fleet_messages
from simulators.transports import FilesTransport
from tests.helpers import wait_for
from tests.kpi_builders import device, point, value_every_way

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
STATION = "BDI_QN_NUOCMAT01"
SECOND = date(2026, 11, 2)
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=ZONE)


def _line(parameter: str, value: str, at: datetime, status: str, unit: str = "mg/L") -> str:
    return f"{parameter}\t{value}\t{unit}\t{at.strftime('%Y%m%d%H%M%S')}\t{status}"


def _file(at: datetime, statuses: dict[str, str] | None = None) -> str:
    statuses = statuses or {"pH": "00", "DO": "00", "TSS": "00"}
    values = {"pH": "7.12", "DO": "5.6", "TSS": "18.0"}
    return "\r\n".join(_line(p, values.get(p, "1.0"), at, s) for p, s in statuses.items()) + "\r\n"


def _name(at: datetime, station: str = STATION) -> str:
    return f"{station}_{at.strftime('%Y%m%d%H%M%S')}.txt"


def _decode(name: str, text: str | bytes, **codes: list[str]) -> tuple[list[Accepted], list[tuple[str, str]]]:
    raw = text.encode() if isinstance(text, str) else text
    decoded = decode_station_file(name, raw, station_mapping(codes or None), received_at=NOW.astimezone(UTC),
                                  limits=Limits(max_message_bytes=4096), zone=ZONE)
    return decoded.accepted, [(r.reason, r.detail) for r in decoded.rejected]


# ---- the layout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("statuses", "status", "measured"), [
    ({"pH": "00", "DO": "00"}, "ok", {"pH": 7.12, "DO": 5.6}),
    ({"pH": "00", "DO": "01"}, "degraded", {"pH": 7.12}),           # calibrating: not a measurement
    ({"pH": "02", "DO": "00"}, "fault", {"DO": 5.6}),
    ({"pH": "01", "DO": "01"}, "degraded", None),
])
def test_each_instrument_status_sets_the_heartbeat_and_what_it_measured(
        statuses: dict[str, str], status: str, measured: dict | None) -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    accepted, rejected = _decode(_name(at), _file(at, statuses))
    assert rejected == []
    assert [(a.device_id, a.ts, a.status.value, a.measurements or None) for a in accepted] == [
        (STATION, at, status, measured)]


def test_every_measurement_time_of_a_file_is_a_heartbeat_and_spaces_separate_as_tabs_do() -> None:
    first, second = datetime(2026, 11, 2, 8, 0, tzinfo=ZONE), datetime(2026, 11, 2, 8, 5, tzinfo=ZONE)
    text = "\ufeff" + _file(first) + _file(second).replace("\t", "   ")
    accepted, rejected = _decode(_name(second), text)
    assert (rejected, [a.ts for a in accepted]) == ([], [first, second])


def test_a_malformed_line_is_refused_naming_the_file_and_line_and_the_others_still_count() -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    text = _file(at) + "COD\t12.5\tmg/L\t2026-11-02 08:15\t00\nBOD\tabc\tmg/L\t20261102081500\t00\nshort line\n"
    accepted, rejected = _decode(_name(at), text)
    assert [a.measurements for a in accepted] == [{"pH": 7.12, "DO": 5.6, "TSS": 18.0}]
    name = _name(at)
    assert rejected[0] == ("station_file", f"{name}: line 4: time '2026-11-02 08:15' is not yyyyMMddHHmmss")
    assert rejected[1] == ("station_file", f"{name}: line 5: value 'abc' is not a number written with digits and "
                           "a decimal point")
    assert rejected[2] == ("station_file", f"{name}: line 6: 2 fields, not 5 (parameter, value, unit, time, status)")
    assert len(rejected) == 3


@pytest.mark.parametrize("value", ["12,5", "1e3", "nan", "-", "1" * 16])
def test_a_value_is_plain_decimal_digits(value: str) -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    accepted, rejected = _decode(_name(at), _line("BOD", value, at, "00"))
    assert accepted == [] and [reason for reason, _ in rejected] == ["station_file"]


def test_an_unknown_status_code_refuses_that_time_naming_the_mapping() -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    accepted, rejected = _decode(_name(at), _line("BOD", "12.5", at, "07"))
    assert accepted == []
    assert [reason for reason, _ in rejected] == ["mapping"]
    assert rejected[0][1].startswith(f"{_name(at)}: mapping 'station-files'")


@pytest.mark.parametrize(("name", "raw", "reason", "says"), [
    ("notes.txt", b"pH\t7\t-\t20261102081500\t00", "station_file", "the name is not <station>_<yyyyMMddHHmmss>.txt"),
    (f"{STATION}_20261102081500.txt", b"\xff\xfe", "not_utf8", "byte 0 is not UTF-8"),
    (f"{STATION}_20261102081500.txt", b"\n\n", "station_file", "no lines"),
    (f"{STATION}_20261102081500.txt", b"x" * 5000, "too_large", "5000 bytes > 4096"),
])
def test_a_file_that_cannot_be_read_is_refused_saying_why(name: str, raw: bytes, reason: str, says: str) -> None:
    accepted, rejected = _decode(name, raw)
    assert accepted == [] and len(rejected) == 1
    assert rejected[0][0] == reason and says in rejected[0][1]


def test_the_status_codes_are_the_loggers_own_when_set() -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    accepted, rejected = _decode(_name(at), _file(at, {"pH": "M", "DO": "C"}), ok=["M"], degraded=["C"], fault=["E"])
    assert (rejected, accepted[0].status.value, accepted[0].measurements) == ([], "degraded", {"pH": 7.12})
    _, rejected = _decode(_name(at), _file(at, {"pH": "00"}), ok=["M"], degraded=["C"], fault=["E"])
    assert [reason for reason, _ in rejected] == ["mapping"]


def test_the_parameters_and_times_come_out_as_read() -> None:
    at = datetime(2026, 11, 2, 8, 15, tzinfo=ZONE)
    read = read_station_file(_name(at), _file(at).encode())
    assert read.station == STATION and read.problems == []
    assert read.document == {"station": STATION, "times": [{"time": "20261102081500", "data": [
        {"parameter": "pH", "value": "7.12", "unit": "mg/L", "status": "00"},
        {"parameter": "DO", "value": "5.6", "unit": "mg/L", "status": "00"},
        {"parameter": "TSS", "value": "18.0", "unit": "mg/L", "status": "00"}]}]}


# ---- through the sink into PostgreSQL ----------------------------------------------------------------------

@pytest.fixture
def station(db: psycopg.Connection) -> str:
    point(db, "WAT-A", ["water_source"])
    device(db, STATION, "WAT-A", kind="water_monitor")
    db.commit()
    return STATION


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    return tmp_path / "drop"


@pytest.fixture
def ingest(database_url: str, drop: Path, station: str) -> Iterator[Ingest]:
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=0, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("files",), clock=lambda: NOW.astimezone(UTC))
    drop.mkdir(parents=True, exist_ok=True)
    running.start()
    yield running
    assert running.stop(10)


def _put(drop: Path, name: str, text: str) -> None:
    """As an FTP server does: the file appears under its name once written (here at once)."""
    partial = drop / f".{name}.part"
    partial.write_text(text, encoding="utf-8")
    partial.rename(drop / name)


def _listing(drop: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (drop / sub).iterdir()) if (drop / sub).exists() else []


def _heartbeats(db: psycopg.Connection) -> list[tuple]:
    db.commit()
    return [(r["ts"].astimezone(ZONE).hour, r["status"], r["healthy"], r["source"]) for r in db.execute(
        "SELECT ts, status, healthy, source FROM heartbeats WHERE device_id = %s ORDER BY ts", (STATION,))]


def _dead_letters(db: psycopg.Connection) -> list[tuple[str, str]]:
    db.commit()
    return [(r["reason"], r["origin"]) for r in db.execute(
        "SELECT reason, origin FROM dead_letters ORDER BY id")]


def test_files_end_in_done_or_rejected_as_their_lines_say_and_move_indicator_18(
        ingest: Ingest, drop: Path, db: psycopg.Connection) -> None:
    files = {
        8: _file(local_time(8)),                                                    # every instrument measures
        9: _file(local_time(9), {"pH": "00", "DO": "01", "TSS": "00"}),             # one calibrating
        10: _file(local_time(10), {"pH": "02", "DO": "02", "TSS": "02"}),           # instrument errors
        11: _file(local_time(11), {"pH": "01", "DO": "01", "TSS": "01"}),           # all calibrating
    }
    for hour, text in files.items():
        _put(drop, _name(local_time(hour)), text)
    malformed = _name(local_time(7))
    _put(drop, malformed, _file(local_time(7)) + "not a reading\n")
    wait_for(lambda: len(_listing(drop, "done")) == 4 and len(_listing(drop, "rejected")) == 2,
             what="five files done or rejected")
    assert _listing(drop, "processing") == [] and [p.name for p in drop.iterdir() if p.is_file()] == []
    assert _listing(drop, "rejected") == [malformed, malformed + ".reason.txt"]
    assert (drop / "rejected" / (malformed + ".reason.txt")).read_text() == \
        f"{malformed}: line 4: 3 fields, not 5 (parameter, value, unit, time, status)\n"
    assert _heartbeats(db) == [(7, "ok", True, "files"), (8, "ok", True, "files"), (9, "degraded", True, "files"),
                               (10, "fault", False, "files"), (11, "degraded", False, "files")]
    assert _dead_letters(db) == [("station_file", malformed)]
    value = value_every_way(db, "18", SECOND, SECOND + timedelta(days=1), now=NOW + timedelta(days=30))
    assert (value.evidence[0].point_id, value.evidence[0].buckets_up) == ("WAT-A", 3)   # hours 7, 8 and 9


def local_time(hour: int) -> datetime:
    return datetime(2026, 11, 2, hour, 15, tzinfo=ZONE)


def test_a_duplicate_file_is_done_and_counted_once(ingest: Ingest, drop: Path, db: psycopg.Connection) -> None:
    name = _name(local_time(8))
    _put(drop, name, _file(local_time(8)))
    wait_for(lambda: _listing(drop, "done") == [name], what="the first copy done")
    _put(drop, name, _file(local_time(8)))
    wait_for(lambda: _listing(drop, "done") == [name, name + ".1"], what="the second copy done beside it")
    assert len(_heartbeats(db)) == 1
    assert ingest.worker.totals.duplicates == 1


def test_a_file_of_an_unknown_station_is_rejected_and_dead_lettered(
        ingest: Ingest, drop: Path, db: psycopg.Connection) -> None:
    name = _name(local_time(8), station="BDI_NOWHERE_01")
    _put(drop, name, _file(local_time(8)))
    wait_for(lambda: _listing(drop, "rejected") == [name, name + ".reason.txt"], what="the file rejected")
    assert "station 'BDI_NOWHERE_01' is no device of the registry" in \
        (drop / "rejected" / (name + ".reason.txt")).read_text()
    assert _dead_letters(db) == [("unknown_station", name)]
    assert _heartbeats(db) == []


def test_a_file_being_uploaded_is_left_until_it_settles(database_url: str, drop: Path, station: str,
                                                          db: psycopg.Connection) -> None:
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=3600)
    running = Ingest(settings, database_url, sources=("files",), clock=lambda: NOW.astimezone(UTC))
    drop.mkdir(parents=True)
    name = _name(local_time(8))
    _put(drop, name, _file(local_time(8)))
    running.start()
    try:
        wait_for(lambda: running.sources[0].connected.is_set(), what="the source looking at the directory")
        # Scanned at least twice since: the file, written just now, stays where the uploader put it.
        scans = running.sources[0].scans
        wait_for(lambda: running.sources[0].scans >= scans + 2, what="two more scans")
        assert (drop / name).exists() and _listing(drop, "processing") == []
        # An mtime in the past (an FTP client may set one) does not make it settled: its ctime does.
        old = (drop / name).stat().st_mtime - 7200
        os.utime(drop / name, (old, old))
        scans = running.sources[0].scans
        wait_for(lambda: running.sources[0].scans >= scans + 2, what="two scans after the mtime moved back")
        assert (drop / name).exists()
        running.sources[0].file_clock = lambda: time.time() + 7200
        wait_for(lambda: _listing(drop, "done") == [name], what="the settled file done")
    finally:
        assert running.stop(10)


def test_a_file_claimed_by_a_process_that_died_is_read_again_and_counted_once(
        database_url: str, drop: Path, station: str, db: psycopg.Connection) -> None:
    stored, claimed = _name(local_time(8)), _name(local_time(9))
    for name, hour in ((stored, 8), (claimed, 9)):
        (drop / "processing").mkdir(parents=True, exist_ok=True)
        (drop / "processing" / name).write_text(_file(local_time(hour)))
    # The dead process had committed the first file's rows, not yet moved it.
    db.execute("INSERT INTO heartbeats (device_id, ts, kind, healthy, status, measurements, source, received_at)"
               " VALUES (%s, %s, 'water_monitor', true, 'ok', '{\"pH\": 7.12}', 'files', now())",
               (STATION, local_time(8)))
    db.commit()
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=0, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("files",), clock=lambda: NOW.astimezone(UTC))
    running.start()
    try:
        wait_for(lambda: _listing(drop, "done") == [stored, claimed], what="both claimed files done")
    finally:
        assert running.stop(10)
    assert [h[0] for h in _heartbeats(db)] == [8, 9]


def test_ingest_killed_mid_directory_stores_every_file_once_after_a_restart(
        database_url: str, station: str, tmp_path: Path, db: psycopg.Connection) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    # Times near the real clock (the process stamps receipt with it): 300 files, one a minute, 5 hours back.
    start = datetime.now(ZONE).replace(second=0, microsecond=0) - timedelta(hours=5)
    names = []
    for minute in range(300):
        at = start + timedelta(minutes=minute)
        names.append(_name(at))
        _put(drop, names[-1], _file(at))
    env = {"CITYKPI_DATABASE_URL": database_url, "CITYKPI_FILES_DIR": str(drop), "CITYKPI_FILES_POLL_S": "0.05",
           "CITYKPI_FILES_SETTLE_S": "0", "CITYKPI_BATCH_MAX_ROWS": "20", "CITYKPI_BATCH_MAX_WAIT_S": "0.05"}
    first = IngestProcess(source="files", env=env, log_path=tmp_path / "ingest-1.log").start()
    try:
        wait_for(lambda: len(_listing(drop, "done")) >= 20, what="the first process finishing some files")
        first.kill()
    finally:
        first.kill()
    assert len(_listing(drop, "done")) < 300, "the kill landed after the last file: nothing was tested"
    second = IngestProcess(source="files", env=env, log_path=tmp_path / "ingest-2.log").start()
    try:
        wait_for(lambda: _listing(drop, "done") == sorted(names), timeout_s=120, what="all 300 files done")
        assert second.terminate() == 0
    finally:
        second.kill()
    db.commit()
    row = db.execute("SELECT count(*) AS n, count(DISTINCT ts) AS distinct_ts FROM heartbeats").fetchone()
    assert (row["n"], row["distinct_ts"]) == (300, 300)
    assert _dead_letters(db) == []
    assert not _listing(drop, "processing") and not _listing(drop, "rejected")


def _immutable(path: Path, on: bool) -> None:
    """chattr ±i: a flag even root's renames obey, so a file or directory the source cannot change is real here."""
    done = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no immutable flag on this file system ({done.stderr.strip()}): a file the source cannot move "
                    "cannot be made")


def _files_ingest(database_url: str, drop: Path, **settings: object) -> Ingest:
    values = {"files_dir": drop, "files_poll_s": 0.05, "files_settle_s": 0, "batch_max_wait_s": 0.05, **settings}
    return Ingest(Settings(**values), database_url, sources=("files",), clock=lambda: NOW.astimezone(UTC))


def test_files_that_cannot_be_claimed_stay_and_never_hold_the_others_up(
        database_url: str, drop: Path, station: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    # Three immovable files sorting before the good one, and a scan of two: the good one is still taken.
    drop.mkdir(parents=True)
    stuck = [_name(local_time(hour)) for hour in (6, 7, 8)]
    for hour, name in zip((6, 7, 8), stuck, strict=True):
        _put(drop, name, _file(local_time(hour)))
        _immutable(drop / name, True)
    running = _files_ingest(database_url, drop)
    try:
        running.sources[0].max_files_per_scan = 2
        _put(drop, _name(local_time(9)), _file(local_time(9)))
        running.start()
        wait_for(lambda: _listing(drop, "done") == [_name(local_time(9))], what="the good file done")
        scans = running.sources[0].scans
        wait_for(lambda: running.sources[0].scans >= scans + 3, what="three more scans")
        assert all((drop / name).exists() for name in stuck) and running.failures() == []
        assert "Operation not permitted" in running.sources[0].unclaimable[stuck[0]]
        said = [r for r in caplog.records if stuck[0] in r.getMessage() and "cannot be moved" in r.getMessage()]
        assert len(said) == 1, "said once, not at every scan"
        for name in stuck:
            _immutable(drop / name, False)
        wait_for(lambda: _listing(drop, "done") == sorted([*stuck, _name(local_time(9))]),
                 what="the files claimed once they can be moved")
        assert running.sources[0].unclaimable == {}
    finally:
        for name in stuck:
            if (drop / name).exists():
                _immutable(drop / name, False)
        assert running.stop(10)
    assert [h[0] for h in _heartbeats(db)] == [6, 7, 8, 9]


def test_a_claimed_file_that_cannot_be_read_is_rejected_saying_why(
        ingest: Ingest, drop: Path, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads every file, so the refusal a data logger's account would meet is staged at the read itself.
    unreadable, other = _name(local_time(8)), _name(local_time(9))
    read_whole = files_source.read_whole

    def refusing(path: Path, limit: int) -> tuple:
        if path.name == unreadable:
            raise PermissionError(13, "Permission denied")
        return read_whole(path, limit)

    monkeypatch.setattr(files_source, "read_whole", refusing)
    _put(drop, unreadable, _file(local_time(8)))
    _put(drop, other, _file(local_time(9)))
    wait_for(lambda: _listing(drop, "rejected") == [unreadable, unreadable + ".reason.txt"]
             and _listing(drop, "done") == [other], what="one file rejected, the other done")
    assert (drop / "rejected" / (unreadable + ".reason.txt")).read_text() == \
        f"{unreadable}: cannot be read: Permission denied\n"
    assert _dead_letters(db) == [("unreadable", unreadable)]
    assert [h[0] for h in _heartbeats(db)] == [9] and ingest.sources[0].alive


def test_a_file_name_that_is_not_utf8_is_rejected_and_the_source_goes_on(
        ingest: Ingest, drop: Path, db: psycopg.Connection) -> None:
    odd = os.fsdecode(b"BDI_QN_\xff\xfe_20261102081500.txt")
    (drop / odd).write_bytes(_file(local_time(8)).encode())
    wait_for(lambda: len(_listing(drop, "rejected")) == 2, what="the oddly named file rejected")
    _put(drop, _name(local_time(9)), _file(local_time(9)))
    wait_for(lambda: _listing(drop, "done") == [_name(local_time(9))], what="the next file done")
    assert _dead_letters(db) == [("station_file", "BDI_QN_\ufffd\ufffd_20261102081500.txt")]
    assert (drop / "rejected" / odd).exists() and ingest.failures() == []


def test_a_file_named_as_one_in_flight_waits_for_it(ingest: Ingest, drop: Path) -> None:
    source = ingest.sources[0]
    wait_for(lambda: source.scans >= 1, what="recovery done and a first scan")   # processing/ is not read again
    name = _name(local_time(8))
    (drop / "processing" / name).write_text("in flight")
    _put(drop, name, _file(local_time(8)))
    scans = source.scans
    wait_for(lambda: source.scans >= scans + 3, what="three scans")
    assert not source._claim(name, name, drop / "processing" / name)
    assert (drop / "processing" / name).read_text() == "in flight" and (drop / name).exists()


def test_a_rejected_file_committed_before_a_crash_keeps_its_receipt_and_is_not_dead_lettered_twice(
        database_url: str, drop: Path, station: str, db: psycopg.Connection) -> None:
    # On the real clock: receipt is the claim time, which a restart finds again in the file's ctime.
    at = datetime.now(ZONE).replace(minute=15, second=0, microsecond=0) - timedelta(hours=2)
    name = _name(at)
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=0, batch_max_wait_s=0.05)
    drop.mkdir(parents=True)
    (drop / "rejected").mkdir()
    _immutable(drop / "rejected", True)   # committed, then not movable: as if the process died right after
    try:
        first = Ingest(settings, database_url, sources=("files",))
        first.start()
        try:
            _put(drop, name, _file(at) + "not a reading\n")
            wait_for(lambda: len(_dead_letters(db)) == 1 and len(_heartbeats(db)) == 1, what="the file stored")
        finally:
            assert first.stop(10)
    finally:
        _immutable(drop / "rejected", False)
    assert _listing(drop, "processing") == [name]
    received = db.execute("SELECT received_at FROM dead_letters").fetchone()["received_at"]
    # As when the sink committed the rejections alone and died isolating a row the database refused.
    db.execute("DELETE FROM heartbeats")
    db.commit()
    second = Ingest(settings, database_url, sources=("files",))
    second.start()
    try:
        wait_for(lambda: _listing(drop, "rejected") == [name, name + ".reason.txt"], what="the file moved")
    finally:
        assert second.stop(10)
    assert _dead_letters(db) == [("station_file", name)]
    assert db.execute("SELECT received_at FROM dead_letters").fetchone()["received_at"] == received
    assert [(h[1], h[3]) for h in _heartbeats(db)] == [("ok", "files")]
    assert db.execute("SELECT received_at FROM heartbeats").fetchone()["received_at"] == received


def test_the_files_source_needs_its_directory(database_url: str) -> None:
    with pytest.raises(ValueError, match="CITYKPI_FILES_DIR"):
        Ingest(Settings(), database_url, sources=("files",))


def test_the_simulators_station_files_are_stored_as_the_fleets_heartbeats(
        database_url: str, tmp_path: Path, db: psycopg.Connection) -> None:
    monitors = [(f"air-{n}", "air_monitor", 600) for n in range(3)] + [("wq-1", "water_monitor", 900)]
    for device_id, kind, _interval in monitors:
        point(db, f"P-{device_id}", ["water_source" if kind == "water_monitor" else "air_quality"])
        device(db, device_id, f"P-{device_id}", kind=kind)
    db.commit()
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(hours=2)
    fleet = build_fleet(monitors + [("cam-1", "cctv", 300)], FaultShares.none(), start, end, seed=11)
    expected = sorted((m["device_id"], datetime.fromisoformat(m["ts"]).replace(microsecond=0), m["status"])
                      for m in (json.loads(o.body) for o in fleet_messages(fleet, start, end, seed=11))
                      if m["kind"] != "cctv")
    drop = tmp_path / "drop"
    transport = FilesTransport(drop, ZONE)
    backfill(fleet, transport, start, end, seed=11)
    assert (transport.written, transport.skipped > 0) == (len(expected), True)
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=0, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("files",))
    running.start()
    try:
        wait_for(lambda: len(_listing(drop, "done")) == len(expected), what="every simulated file done")
    finally:
        assert running.stop(10)
    db.commit()
    stored = sorted((r["device_id"], r["ts"], r["status"]) for r in db.execute(
        "SELECT device_id, ts, status FROM heartbeats WHERE source = 'files'"))
    assert stored == expected


def test_simulate_writes_station_files_only_into_a_named_directory(capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    assert main(["simulate", "--synthetic", "1", "--transport", "files", "--duration", "1s"]) == 2
    assert "--transport files writes station files into --dir DIR" in capsys.readouterr().err


def test_the_shipped_samples_read_as_their_readme_says(capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    samples = sorted((Path(__file__).resolve().parents[1] / "deploy" / "examples" / "stations").glob("*.txt"))
    assert main(["stations", "check", *map(str, samples)]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(h["device_id"], h["status"], len(h["measurements"]), h["healthy"]) for h in lines] == [
        ("BDI_NHONHOI_NT01", "fault", 4, False), ("BDI_QUYNHON_KK01", "ok", 6, True)]


def test_stations_check_names_the_file_and_line_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    bad = tmp_path / _name(local_time(8))
    bad.write_text(_file(local_time(8)) + "pH\t7\n")
    assert main(["stations", "check", str(bad)]) == 1
    assert f"station_file: {bad.name}: line 4: 2 fields, not 5" in capsys.readouterr().err


@pytest.mark.parametrize(("code", "category", "kind"), [
    ("18", "water_source", "water_monitor"), ("19", "air_hotspot", "air_monitor"),
    ("21", "wastewater_facility", "wastewater_station")])
def test_each_monitoring_indicator_moves_as_its_stations_files_say(
        database_url: str, tmp_path: Path, db: psycopg.Connection, code: str, category: str, kind: str) -> None:
    station = f"BDI_{kind.upper()}_01"
    point(db, "PT-1", [category])
    device(db, station, "PT-1", kind=kind)
    db.commit()
    drop = tmp_path / "drop"
    drop.mkdir()
    _put(drop, _name(local_time(8), station), _file(local_time(8)))
    _put(drop, _name(local_time(9), station), _file(local_time(9), {"pH": "02", "DO": "00", "TSS": "00"}))
    settings = Settings(files_dir=drop, files_poll_s=0.05, files_settle_s=0, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("files",), clock=lambda: NOW.astimezone(UTC))
    running.start()
    try:
        wait_for(lambda: len(_listing(drop, "done")) == 2, what="both files done")
    finally:
        assert running.stop(10)
    value = value_every_way(db, code, SECOND, SECOND + timedelta(days=1), now=NOW + timedelta(days=30))
    # 08:15 every instrument measured: up; 09:15 the pH probe in error: the station is in fault, not up.
    assert (value.evidence[0].buckets_up, value.evidence[0].device_up_hours) == (1, {station: 1})
