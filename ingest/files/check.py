"""`citykpi stations check`: what an operator runs on a few of a logger's files before connecting its FTP
drop — each file read as ingest would read it (the registry aside), its heartbeats or every problem."""

from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from ingest.files.station_file import decode_station_file, station_mapping
from ingest.mapping.check import ANY_TIME, heartbeat_line


def check_station_files(files: list[Path], *, status_codes: dict[str, list[str]], zone: ZoneInfo, out: TextIO,
                        err: TextIO) -> int:
    mapping = station_mapping(status_codes)
    problems = 0
    for file in files:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            print(f"citykpi stations check: {file}: cannot be read ({exc.strerror or exc})", file=err)
            return 2
        decoded = decode_station_file(file.name, raw, mapping, received_at=datetime.now(UTC), limits=ANY_TIME,
                                      zone=zone)
        for heartbeat in decoded.accepted:
            print(heartbeat_line(heartbeat), file=out)
        for rejection in decoded.rejected:
            print(f"{rejection.reason}: {rejection.detail}", file=err)
        print(f"{file}: {len(decoded.accepted)} heartbeat(s), {len(decoded.rejected)} problem(s)", file=err)
        problems += len(decoded.rejected) + (not decoded.accepted)
    return 1 if problems else 0
