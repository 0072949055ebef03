"""A compiled `Mapping` applied to one decoded message: the heartbeats it holds, in the contract's terms, or the
problems that stop each of them, every problem naming the mapping's key and the path it read.

Pure: no I/O, no clock (the receive time is given). What comes out is a heartbeat document as a device would
have sent it; the decode stage validates it with the contract's own model, so a mapped heartbeat is held to
exactly what a native one is.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from base.vocabulary import ID_CHARACTERS, ID_PATTERN
from ingest.mapping.paths import MISSING, Where
from ingest.mapping.spec import Mapping, Readings, Source, Spread, StatusSource, Timestamp
from ingest.schema import parse_timestamp

_SEVERITY = {"ok": 0, "degraded": 1, "fault": 2}
# ASCII only: int("١٢") and float("1_0") read numbers no sender meant (the lesson of the form uploads).
_NUMBER_TEXT = re.compile(r"^[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?$")
_EPOCH_LIMIT_S = 253402300799  # 9999-12-31T23:59:59Z
_INT_LIMIT = 2 ** 63


@dataclass
class Mapped:
    """What one message became: heartbeat documents with their item's position (in `each`, else 0) and the
    problems of the items that became none. A document's `ts` is an aware datetime (not the contract's text:
    the decode stage's fast path takes it as it is)."""

    heartbeats: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Problem(Exception):
    pass


def apply_mapping(mapping: Mapping, document: Any, *, topic_levels: tuple[str, ...] = (), key: str | None = None,
                  received_at: datetime, zone: ZoneInfo) -> Mapped:
    out = Mapped()
    if mapping.each is None:
        items: list[Any] = [document]
    else:
        items = mapping.each.read(Where(document, document, topic_levels, key))
        if items is MISSING or type(items) is not list:
            out.problems.append(f"mapping {mapping.name!r}: each: no list at {mapping.each.text!r}")
            return out
        if len(items) > mapping.max_items:
            out.problems.append(f"mapping {mapping.name!r}: each: {len(items)} items > {mapping.max_items}")
            return out
    for position, item in enumerate(items):
        try:
            out.heartbeats.append((_heartbeat(mapping, Where(document, item, topic_levels, key), received_at, zone),
                                   position))
        except _Problem as problem:
            prefix = f"mapping {mapping.name!r}: " + (f"[{position}] " if mapping.each is not None else "")
            out.problems.append(prefix + str(problem))
    return out


def apply_availability(mapping: Mapping, document: Any, *, topic_levels: tuple[str, ...] = (),
                       key: str | None = None, received_at: datetime,
                       zone: ZoneInfo) -> tuple[tuple[str, datetime, bool] | None, str | None]:
    """An availability mapping applied to a message (its text, or its decoded JSON when the mapping reads a
    path): (device id, ts, online), or the problem that stops it, naming the mapping."""
    availability = mapping.availability
    assert availability is not None
    where = Where(document, document, topic_levels, key)
    try:
        device_id = _identifier(_value(mapping.device_id, where, "device_id"))
        if type(device_id) is not str or not ID_PATTERN.fullmatch(device_id):
            raise _Problem(f"device_id: {_shown(device_id)} is not a device id ({ID_CHARACTERS})")
        state = document if availability.path is None else availability.path.read(where)
        if state is MISSING:
            raise _Problem(f"availability: nothing at {availability.path.text!r}")  # type: ignore[union-attr]
        online = availability.says(state)
        if online is None:
            raise _Problem(f"availability: {_shown(state)} is neither online {list(availability.online)} nor "
                           f"offline {list(availability.offline)}")
        return (device_id, _timestamp(mapping.ts, where, received_at, zone), online), None
    except _Problem as problem:
        return None, f"mapping {mapping.name!r}: {problem}"


def _heartbeat(mapping: Mapping, where: Where, received_at: datetime, zone: ZoneInfo) -> dict[str, Any]:
    heartbeat: dict[str, Any] = {"device_id": _identifier(_value(mapping.device_id, where, "device_id"))}
    if mapping.kind is not None:
        heartbeat["kind"] = mapping.kind
    heartbeat["ts"] = _timestamp(mapping.ts, where, received_at, zone)
    if mapping.seq is not None and (seq := _value(mapping.seq, where, "seq")) is not MISSING:
        heartbeat["seq"] = seq
    if mapping.status is not None and (status := _status(mapping.status, where, "status")) is not None:
        heartbeat["status"] = status
    if mapping.checks:
        heartbeat["checks"] = checks = {}
        for name, source in mapping.checks:
            value = _value(source, where, f"checks.{name}")
            if value is MISSING:
                continue
            if source.healthy_when is not None:
                checks[name] = source.healthy_when.holds(value)
            elif type(value) is bool:
                checks[name] = value
            else:
                raise _Problem(f"checks.{name}: {_shown(value)} at {_path_text(source)} is not true/false "
                               "(add healthy_when)")
    for section, fields, spread in mapping.number_sections:
            numbers = heartbeat[section] = {}
            if spread is not None:
                _spread(spread, where, numbers, f"{section}_from")
            for name, source in fields:
                value = _value(source, where, f"{section}.{name}")
                if value is not MISSING:
                    numbers[name] = _number(value, source.scale, source.from_text, f"{section}.{name}", source)
    if mapping.readings is not None:
        _readings(mapping.readings, where, heartbeat)
    return heartbeat


def _value(source: Source, where: Where, name: str) -> Any:
    if source.path is None:
        return source.value
    value = source.path.read(where)
    if value is MISSING and not source.optional:
        raise _Problem(f"{name}: nothing at {source.path.text!r}")
    return value


def _path_text(source: Source) -> str:
    return repr(source.path.text) if source.path is not None else "value"


def _identifier(value: Any) -> Any:
    # Numeric device ids (a VMS channel number) are common; the contract's pattern judges the text.
    return str(value) if type(value) is int else value


def _number(value: Any, scale: float | None, from_text: bool, name: str, source: Source | None = None) -> float | int:
    if scale is None and (type(value) is int and -_INT_LIMIT <= value < _INT_LIMIT
                          or type(value) is float and math.isfinite(value)):
        return value  # the common case, as it came
    where = f" at {_path_text(source)}" if source is not None else ""
    if type(value) is str and from_text:
        if not _NUMBER_TEXT.match(value.strip()):
            raise _Problem(f"{name}: {_shown(value)}{where} is not a number")
        value = float(value)
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        raise _Problem(f"{name}: {_shown(value)}{where} is not a finite number"
                       + (" (from_text = true reads numbers written as text)" if type(value) is str else ""))
    if type(value) is int and abs(value) >= _INT_LIMIT:
        raise _Problem(f"{name}: {_shown(value)}{where} is beyond 64 bits")
    if scale is not None:
        value = value * scale
        if not math.isfinite(value):
            raise _Problem(f"{name}: {_shown(value)}{where} scaled is not finite")
    return value


def _spread(spread: Spread, where: Where, numbers: dict[str, Any], name: str) -> None:
    table = spread.path.read(where)
    if type(table) is not dict:
        raise _Problem(f"{name}: no object at {spread.path.text!r}")
    for key, value in table.items():
        if key not in spread.skip:
            numbers[key] = _number(value, None, False, f"{name} {key!r}")


def _status(source: StatusSource, where: Where, name: str) -> str | None:
    value = source.path.read(where)
    if value is MISSING:
        if source.optional:
            return None
        raise _Problem(f"{name}: nothing at {source.path.text!r}")
    if source.healthy_when is not None:
        return "ok" if source.healthy_when.holds(value) else (source.otherwise or "fault")
    status = _word(source.words, value)
    if status is None:
        if source.otherwise is None:
            raise _Problem(f"{name}: {_shown(value)} at {source.path.text!r} is in none of ok, degraded, fault "
                           "(or set otherwise)")
        return source.otherwise
    return status


def _word(words: dict[Any, str], value: Any) -> str | None:
    if type(value) not in (str, int, float, bool):
        return None
    for word, status in words.items():
        if value == word and (type(value) is type(word) or type(value) in (int, float) and type(word) in (int, float)):
            return status
    return None


def _readings(readings: Readings, where: Where, heartbeat: dict[str, Any]) -> None:
    rows = readings.path.read(where)
    if rows is MISSING or type(rows) is not list:
        raise _Problem(f"readings: no list at {readings.path.text!r}")
    measurements = heartbeat.setdefault("measurements", {})
    worst = "ok"
    for index, row in enumerate(rows):
        at = Where(where.root, row, where.topic_levels, where.key)
        name = readings.name.read(at)
        if type(name) is not str:
            raise _Problem(f"readings[{index}]: no name at {readings.name.text!r}")
        state = "ok" if readings.status is None else _status(readings.status, at, f"readings[{index}].status")
        if state is not None and _SEVERITY[state] > _SEVERITY[worst]:
            worst = state
        if state not in ("ok", None):
            continue  # calibrating or failed: its value is not a measurement
        value = readings.value.read(at)
        if value is MISSING:
            raise _Problem(f"readings[{index}] ({name}): no value at {readings.value.text!r}")
        if name in measurements:
            raise _Problem(f"readings[{index}]: {name!r} is read twice")
        measurements[name] = _number(value, readings.scale, readings.from_text, f"readings[{index}] ({name})")
    if readings.status is not None:
        heartbeat["status"] = worst


def _timestamp(spec: Timestamp, where: Where, received_at: datetime, zone: ZoneInfo) -> datetime:
    if spec.path is None:
        return received_at
    value = spec.path.read(where)
    if value is MISSING:
        raise _Problem(f"ts: nothing at {spec.path.text!r}")
    try:
        return _read_time(value, spec, zone)
    except (ValueError, OverflowError, OSError) as exc:
        raise _Problem(f"ts: {_shown(value)} at {spec.path.text!r} is not a {spec.format} time ({exc})") from None


def _read_time(value: Any, spec: Timestamp, zone: ZoneInfo) -> datetime:
    form = spec.format
    if form == "rfc3339":
        if type(value) is not str:
            raise ValueError("expected a string")
        return parse_timestamp(value)
    if form in ("epoch_s", "epoch_ms"):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError("expected a number")
        seconds = value / 1000 if form == "epoch_ms" else value
        if not 0 <= seconds <= _EPOCH_LIMIT_S:
            raise ValueError("out of range")
        return datetime.fromtimestamp(seconds, tz=UTC)
    if form == "local":
        if type(value) is not str or len(value) > 40:
            raise ValueError("expected a date and time without offset")
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    text = str(value) if type(value) is int else value
    if type(text) is not str or spec.shape is None or not spec.shape.fullmatch(text):
        raise ValueError("not in the pattern's shape")
    return datetime.strptime(text, form).replace(tzinfo=zone)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"

