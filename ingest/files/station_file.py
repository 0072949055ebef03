"""An automatic monitoring station's data file, as its data logger pushes it to the receiving server.

The layout (README, "Monitoring-station files", says what comes from the regulation and what is the loggers'
common practice):

    file name   <station code>_<yyyyMMddHHmmss>.txt        e.g. BDI_PHUCAT_KK01_20261204101500.txt
    each line   parameter, value, unit, time (yyyyMMddHHmmss, local), instrument status
                separated by tabs (or, from loggers that pad with spaces, by runs of spaces)

Circular 10/2021/TT-BTNMT (Art. 39) requires the logger to keep and send, for every parameter, the value, the
unit, the measurement time and the instrument's state: measuring, calibrating or instrument error. Which code
says which state differs between loggers, so the codes are a setting (`CITYKPI_STATION_STATUS_CODES`,
default 00 / 01 / 02).

A file becomes one document — the station and, per measurement time, its readings — read by a mapping built
here, so that a station's heartbeat is made, validated and judged exactly as the same readings sent over MQTT
through `deploy/examples/mappings/env-station.toml` would be: measurements are the parameters whose instrument
measures, the status is the worst of the instruments'.
"""

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ingest.decode import Limits, decode_document
from ingest.mapping.spec import Mapping, parse_mappings
from ingest.message import Decoded, Rejection

FILE_NAME = re.compile(r"(?P<station>[A-Za-z0-9._-]{1,64})_(?P<time>[0-9]{14})\.txt", re.IGNORECASE)
_FIELDS = 5
_TIME = re.compile(r"[0-9]{14}")
_STATUS = re.compile(r"[A-Za-z0-9]{1,8}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})")
_PARAMETER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_NAME = 200

DEFAULT_STATUS_CODES = {"ok": ["00"], "degraded": ["01"], "fault": ["02"]}


@dataclass(frozen=True)
class StationFile:
    """What a station file said: its station code, the document its lines make, and each line it refused."""

    station: str | None
    document: dict[str, Any] | None
    problems: list[Rejection]


def station_mapping(status_codes: dict[str, list[str]] | None = None) -> Mapping:
    """The mapping every station file is read through; `status_codes` maps ok/degraded/fault to the logger's."""
    codes = status_codes or DEFAULT_STATUS_CODES
    entry = {
        "name": "station-files",
        # A mapping names its source; station files arrive by neither broker, so the placeholder is dropped.
        "mqtt": "station-files/+",
        "each": "times", "device_id": "$.station", "kind": "registry",
        "ts": {"path": "time", "format": "yyyyMMddHHmmss"},
        "readings": {"path": "data", "name": "parameter", "value": "value", "from_text": True,
                     "status": {"path": "status", "ok": codes.get("ok", []), "degraded": codes.get("degraded", []),
                                "fault": codes.get("fault", [])}},
    }
    return replace(parse_mappings({"mapping": [entry]}, "station files")[0], mqtt=None)


def read_station_file(name: str, raw: bytes) -> StationFile:
    """The document of a station file, or why it has none; lines that cannot be read are refused one by one
    (each rejection naming the file and the line), the others still make the document."""
    matched = FILE_NAME.fullmatch(name)
    if matched is None:
        return StationFile(None, None, [Rejection(
            "station_file", f"{name[:_MAX_NAME]!r}: the name is not <station>_<yyyyMMddHHmmss>.txt", raw[:1024])])
    station = matched["station"]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return StationFile(station, None, [Rejection("not_utf8", f"{name}: byte {exc.start} is not UTF-8", raw)])
    times: dict[str, list[dict[str, str]]] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        why = _line_problem(fields)
        if why is not None:
            problems.append(Rejection("station_file", f"{name}: line {number}: {why}", line.encode()[:1024]))
            continue
        parameter, value, unit, measured_at, status = fields
        times.setdefault(measured_at, []).append(
            {"parameter": parameter, "value": value, "unit": unit, "status": status})
    if not times and not problems:
        problems.append(Rejection("station_file", f"{name}: no lines", raw[:1024]))
    document = {"station": station, "times": [{"time": t, "data": data} for t, data in times.items()]}
    return StationFile(station, document if times else None, problems)


def _line_problem(fields: list[str]) -> str | None:
    if len(fields) != _FIELDS:
        return f"{len(fields)} fields, not {_FIELDS} (parameter, value, unit, time, status)"
    parameter, value, _unit, measured_at, status = fields
    if not _PARAMETER.fullmatch(parameter):
        return f"parameter {parameter[:64]!r} is not 1–64 of A-Z a-z 0-9 . _ -"
    if not _NUMBER.fullmatch(value):
        return f"value {value[:32]!r} is not a number written with digits and a decimal point"
    if not _TIME.fullmatch(measured_at):
        return f"time {measured_at[:32]!r} is not yyyyMMddHHmmss"
    if not _STATUS.fullmatch(status):
        return f"status {status[:32]!r} is not a status code"
    return None


def decode_station_file(name: str, raw: bytes, mapping: Mapping, *, received_at: datetime, limits: Limits,
                        zone: ZoneInfo) -> Decoded:
    """A station file as the sink takes it: its heartbeats (one per measurement time) and every refusal."""
    if len(raw) > limits.max_message_bytes:
        return Decoded([], [Rejection("too_large", f"{name[:_MAX_NAME]}: {len(raw)} bytes > "
                                      f"{limits.max_message_bytes}", raw[:1024])])
    read = read_station_file(name, raw)
    if read.document is None:
        return Decoded([], read.problems)
    decoded = decode_document(read.document, raw, mapping, received_at=received_at, limits=limits, zone=zone)
    named = [replace(r, detail=f"{name}: {r.detail}") for r in decoded.rejected]
    return Decoded(decoded.accepted, [*read.problems, *named], decoded.positions)
