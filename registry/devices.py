"""Devices and their bindings to key points: reading and checking a file row by row.

Checks that need the registry (the point exists and is of a category the kind serves, the device's
registered kind, overlaps with bindings already registered) run at import, in `registry.devices_import`.
"""

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from base.probe_target import ProbeTargetError, parse_probe
from base.vocabulary import DEVICE_KINDS
from registry.validation import Problems, bulk_allocation, read_csv, valid_id, validity

COLUMNS = ["device_id", "kind", "point_id", "valid_from", "valid_to", "heartbeat_interval_s"]
# Optional trailing columns: files written before gateways or probes existed import unchanged.
GATEWAY_COLUMN = "gateway_id"
PROBE_COLUMN = "probe"


@dataclass(frozen=True, slots=True)
class Binding:
    """A device bound to a key point over [valid_from, valid_to), reporting itself (`gateway_id` None) or
    through that gateway; `row` is where the file holds it."""

    device_id: str
    kind: str
    point_id: str
    valid_from: datetime
    valid_to: datetime | None
    heartbeat_interval_s: int | None
    row: int = field(default=0, compare=False)
    gateway_id: str | None = None
    probe: str | None = None


def read_devices(path: Path, zone: ZoneInfo, problems: Problems) -> list[Binding]:
    """The bindings that passed every row check; the others are in `problems`."""
    with bulk_allocation():
        return _read_devices(path, zone, problems)


def _read_devices(path: Path, zone: ZoneInfo, problems: Problems) -> list[Binding]:
    bindings: list[Binding] = []
    kinds_in_file: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, datetime], int] = {}
    for number, row in read_csv(path, COLUMNS, problems,
                                optional=("valid_to", "heartbeat_interval_s", GATEWAY_COLUMN, PROBE_COLUMN)):
        device_id, kind, point_id = row["device_id"], row["kind"], row["point_id"]
        ok = valid_id(device_id, number, "device_id", problems, account=True)
        if kind not in DEVICE_KINDS:
            problems.add(number, "kind", f"unknown kind {kind!r}; expected one of {', '.join(DEVICE_KINDS)}")
            ok = False
        elif device_id in kinds_in_file and kinds_in_file[device_id][0] != kind:
            problems.add(number, "kind", f"{device_id} is {kinds_in_file[device_id][0]} on row "
                         f"{kinds_in_file[device_id][1]}; a device's kind does not change")
            ok = False
        else:
            kinds_in_file.setdefault(device_id, (kind, number))
        ok = valid_id(point_id, number, "point_id", problems) and ok
        gateway_id = row[GATEWAY_COLUMN] or None
        if gateway_id is not None:
            ok = valid_id(gateway_id, number, GATEWAY_COLUMN, problems, account=True) and ok
        probe = row[PROBE_COLUMN] or None
        if probe is not None:
            try:
                parse_probe(probe)
            except ProbeTargetError as exc:
                problems.add(number, PROBE_COLUMN, f"{probe[:80]!r}: {exc}")
                ok = False
        interval = _interval(row["heartbeat_interval_s"], number, problems)
        if interval == 0:
            ok = False
        valid_from, valid_to = validity(row, number, problems, zone)
        if valid_from is None or (row["valid_to"] and valid_to is None) or (valid_to and valid_to <= valid_from):
            ok = False
        elif (device_id, valid_from) in seen:
            problems.add(number, "valid_from", f"{device_id} from {row['valid_from']} already on row "
                         f"{seen[(device_id, valid_from)]}")
            ok = False
        if ok:
            seen[(device_id, valid_from)] = number
            bindings.append(Binding(device_id, kind, point_id, valid_from, valid_to, interval, number, gateway_id,
                                    probe))
    return bindings


def _interval(text: str, number: int, problems: Problems) -> int | None:
    """Seconds, None when empty (the kind's default applies); 0 marks a problem already reported."""
    if not text:
        return None
    # At most 9 digits: the column is a PostgreSQL integer, and nobody means a heartbeat every 30 years.
    if text.isascii() and text.isdigit() and len(text) <= 9 and int(text) > 0:
        return int(text)
    problems.add(number, "heartbeat_interval_s", f"{text!r} is not a positive whole number of seconds")
    return 0


def parse_devices_csv(path: Path, zone: ZoneInfo) -> list[Binding]:
    """Every row checked against the file; raises RegistryFileError with every problem. The registry's
    checks are left to `import_devices`."""
    problems = Problems(str(path))
    bindings = read_devices(path, zone, problems)
    problems.raise_if_any()
    return bindings
