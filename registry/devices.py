"""Devices and their bindings to key points. A file is the complete list for the points it names."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from citykpi.settings import DEVICE_KINDS
from registry.changes import ChangeCount
from registry.points import ID_PATTERN
from registry.validation import Problems, read_csv, validity

COLUMNS = ["device_id", "kind", "point_id", "valid_from", "valid_to", "heartbeat_interval_s"]


@dataclass(frozen=True)
class Binding:
    device_id: str
    kind: str
    point_id: str
    valid_from: datetime
    valid_to: datetime | None
    heartbeat_interval_s: int | None


def parse_devices_csv(path: Path, zone: ZoneInfo, known_points: set[str],
                      registered_kinds: dict[str, str]) -> list[Binding]:
    """Every row checked against the file and the registry; raises RegistryFileError with every problem."""
    problems = Problems(str(path))
    bindings: list[Binding] = []
    rows_of: dict[Binding, int] = {}
    kinds_in_file: dict[str, tuple[str, int]] = {}
    for number, row in read_csv(path, COLUMNS, problems):
        ok = True
        device_id, kind, point_id = row["device_id"], row["kind"], row["point_id"]
        if not ID_PATTERN.match(device_id):
            problems.add(number, "device_id", f"{device_id!r} is not an id ([A-Za-z0-9._:-], 1–64 chars)")
            ok = False
        if kind not in DEVICE_KINDS:
            problems.add(number, "kind", f"unknown kind {kind!r}; expected one of {', '.join(DEVICE_KINDS)}")
            ok = False
        elif device_id in kinds_in_file and kinds_in_file[device_id][0] != kind:
            problems.add(number, "kind", f"{device_id} is {kinds_in_file[device_id][0]} on row "
                         f"{kinds_in_file[device_id][1]}; a device's kind does not change")
            ok = False
        elif registered_kinds.get(device_id, kind) != kind:
            problems.add(number, "kind", f"{device_id} is registered as {registered_kinds[device_id]}")
            ok = False
        kinds_in_file.setdefault(device_id, (kind, number))
        if point_id not in known_points:
            problems.add(number, "point_id", f"unknown key point {point_id!r}; import it with the points first")
            ok = False
        interval = None
        if row.get("heartbeat_interval_s"):
            try:
                interval = int(row["heartbeat_interval_s"])
                if interval <= 0:
                    raise ValueError
            except ValueError:
                problems.add(number, "heartbeat_interval_s", f"{row['heartbeat_interval_s']!r} is not a positive "
                             "whole number of seconds")
                ok = False
        valid_from, valid_to = validity(row, number, problems, zone)
        if ok and valid_from is not None:
            binding = Binding(device_id, kind, point_id, valid_from, valid_to, interval)
            bindings.append(binding)
            rows_of[binding] = number
    _check_overlaps(bindings, rows_of, problems)
    problems.raise_if_any()
    return bindings


def _check_overlaps(bindings: list[Binding], rows_of: dict[Binding, int], problems: Problems) -> None:
    """A device is in one place at a time: its bindings must not overlap."""
    by_device: dict[str, list[Binding]] = {}
    for b in bindings:
        by_device.setdefault(b.device_id, []).append(b)
    for device_id, rows in by_device.items():
        rows.sort(key=lambda b: b.valid_from)
        for earlier, later in zip(rows, rows[1:], strict=False):
            if earlier.valid_to is None or earlier.valid_to > later.valid_from:
                problems.add(rows_of[later], "valid_from", f"{device_id} is already bound to "
                             f"{earlier.point_id} then (row {rows_of[earlier]}); a device is in one place at a time")


def import_devices(conn: psycopg.Connection, bindings: list[Binding], *, effective: datetime) -> ChangeCount:
    """Apply in one transaction; bindings of the named points that the file no longer lists are closed."""
    count = ChangeCount()
    with conn.transaction():
        for device_id, kind in sorted({(b.device_id, b.kind) for b in bindings}):
            inserted = conn.execute("INSERT INTO devices (device_id, kind) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                                    (device_id, kind))
            count.added += inserted.rowcount
        points = sorted({b.point_id for b in bindings})
        existing = {(r["device_id"], r["valid_from"]): r for r in conn.execute(
            "SELECT device_id, point_id, valid_from, valid_to, heartbeat_interval_s FROM bindings"
            " WHERE point_id = ANY(%s) OR device_id = ANY(%s)", (points, sorted({b.device_id for b in bindings})))}
        for b in bindings:
            current = existing.get((b.device_id, b.valid_from))
            fields = (b.point_id, b.valid_to, b.heartbeat_interval_s)
            if current is None:
                conn.execute("INSERT INTO bindings (device_id, point_id, valid_from, valid_to, heartbeat_interval_s)"
                             " VALUES (%s, %s, %s, %s, %s)",
                             (b.device_id, b.point_id, b.valid_from, b.valid_to, b.heartbeat_interval_s))
                count.added += 1
            elif fields != (current["point_id"], current["valid_to"], current["heartbeat_interval_s"]):
                conn.execute("UPDATE bindings SET point_id = %s, valid_to = %s, heartbeat_interval_s = %s"
                             " WHERE device_id = %s AND valid_from = %s", (*fields, b.device_id, b.valid_from))
                count.changed += 1
        listed = [(b.device_id, b.valid_from) for b in bindings]
        closed = conn.execute(
            "UPDATE bindings SET valid_to = %s WHERE point_id = ANY(%s)"
            " AND (device_id, valid_from) NOT IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[]))"
            " AND valid_from < %s AND (valid_to IS NULL OR valid_to > %s)",
            (effective, points, [d for d, _ in listed], [v for _, v in listed], effective, effective))
        count.closed += closed.rowcount
    return count
