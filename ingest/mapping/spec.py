"""A mapping file: how a vendor's message becomes heartbeats, read once at start-up into compiled `Mapping`s.

TOML, read with the standard library (`tomllib`): the format Telegraf's and Mosquitto's users already write
by hand, with comments, and no dependency. Every mistake is named by file, mapping and key; nothing in the
file is evaluated as code. See deploy/examples/mappings/ and ingest/README.md ("Mapped sources").
"""

import math
import re
import tomllib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path as FilePath
from typing import Any

from base.vocabulary import DEVICE_KINDS, ID_CHARACTERS
from ingest.mapping.paths import Path, PathError, compile_path

MAX_FILE_BYTES = 1024 * 1024
MAX_MAPPINGS = 64
MAX_FIELDS = 64
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAPPING_NAME = re.compile(f"^{ID_CHARACTERS}$")
_STATUSES = ("ok", "degraded", "fault")
# Java/Telegraf-style date patterns (as data loggers and their manuals write them) into strptime's.
_PATTERN_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_TIME_FORMATS = ("rfc3339", "epoch_s", "epoch_ms", "local")


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, the mapping and the key."""


@dataclass(frozen=True)
class Rule:
    """`healthy_when`: the value equals one of `accepted`, or lies in [low, high]."""

    accepted: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None

    def holds(self, value: Any) -> bool:
        if self.accepted is not None:
            # True == 1 in Python; a vendor's `1` is not a JSON `true`.
            return any(value == a and type(value) is type(a) or _both_numbers(value, a) and value == a
                       for a in self.accepted)
        if type(value) not in (int, float) or not math.isfinite(value):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


def _both_numbers(a: Any, b: Any) -> bool:
    return type(a) in (int, float) and type(b) in (int, float)


@dataclass(frozen=True)
class Source:
    """One heartbeat field's origin: a path, or a fixed value; numbers optionally scaled or read from text."""

    path: Path | None
    value: Any = None
    optional: bool = False
    scale: float | None = None
    from_text: bool = False
    healthy_when: Rule | None = None


@dataclass(frozen=True)
class Timestamp:
    path: Path | None  # None: the time the message was received
    format: str = "rfc3339"  # or epoch_s, epoch_ms, local, or a strptime pattern (from a yyyyMMddHHmmss one)
    # A pattern's exact shape, every field at its full width: strptime alone reads "2026120410" as
    # 2026-01-20 04:01 from yyyyMMddHHmmss.
    shape: re.Pattern[str] | None = None


@dataclass(frozen=True)
class StatusSource:
    path: Path
    words: dict[Any, str]  # value → ok | degraded | fault
    healthy_when: Rule | None
    otherwise: str | None  # None: a value not listed is a problem
    optional: bool = False


@dataclass(frozen=True)
class Spread:
    """Every entry of an object becomes a field of the same name (`measurements_from`, `metrics_from`): vendors
    such as ThingsBoard put whatever a device measures under one key. `skip` names entries that are not."""

    path: Path
    skip: frozenset[str]


@dataclass(frozen=True)
class Readings:
    """A list of readings in one message (`[{"code": "PM2_5", "value": 12.1, "status": "00"}, …]`): each
    becomes a measurement named by `name`; its instrument's state (`status`) sets the heartbeat's — the worst
    of them — and only readings whose state is ok are measurements."""

    path: Path
    name: Path
    value: Path
    status: StatusSource | None
    scale: float | None = None
    from_text: bool = False


@dataclass(frozen=True)
class Availability:
    """What an availability message says (a retained online/offline topic, an MQTT Last Will): the state is the
    whole payload as text (`path` None: Tasmota's `Online`, ESPHome's `online`), or the value at `path` of a JSON
    payload (Zigbee2MQTT's `{"state": "online"}`); it is online when it is one of `online`, offline when one of
    `offline`, and a problem otherwise."""

    path: Path | None
    online: tuple[Any, ...]
    offline: tuple[Any, ...]

    def says(self, value: Any) -> bool | None:
        """True online, False offline, None neither (compared by type too: a vendor's 1 is not `true`)."""
        for answer, values in ((True, self.online), (False, self.offline)):
            if any(type(value) is type(v) and value == v for v in values):
                return answer
        return None


@dataclass(frozen=True)
class Mapping:
    name: str
    mqtt: str | None
    kafka: str | None
    each: Path | None
    device_id: Source
    kind: str | None  # None: the registry's kind of the device
    ts: Timestamp
    seq: Source | None
    status: StatusSource | None
    checks: tuple[tuple[str, Source], ...]
    metrics: tuple[tuple[str, Source], ...]
    measurements: tuple[tuple[str, Source], ...]
    readings: Readings | None
    measurements_from: Spread | None
    metrics_from: Spread | None
    gateway_id: Path | None
    max_items: int
    # Set: an availability mapping, whose messages are state changes, not heartbeats (only name, the topic,
    # device_id and ts apply).
    availability: Availability | None = None

    @cached_property
    def number_sections(self) -> tuple[tuple[str, tuple[tuple[str, Source], ...], Spread | None], ...]:
        """(section, its fields, its spread) of the numeric sections this mapping fills, once."""
        return tuple((name, fields, spread) for name, fields, spread in (
            ("metrics", self.metrics, self.metrics_from), ("measurements", self.measurements, self.measurements_from))
            if fields or spread is not None)


def load_mappings(file: str | FilePath, *, max_items: int = 1000) -> list[Mapping]:
    path = FilePath(file)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MappingError(f"{path}: {size} bytes > {MAX_FILE_BYTES}")
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise MappingError(f"{path}: not UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not TOML: {exc}") from exc
    return parse_mappings(document, str(path), max_items=max_items)


def parse_mappings(document: dict[str, Any], file: str, *, max_items: int = 1000) -> list[Mapping]:
    _only(document, {"mapping"}, file)
    entries = document.get("mapping")
    if not isinstance(entries, list) or not entries:
        raise MappingError(f"{file}: no [[mapping]] tables")
    if len(entries) > MAX_MAPPINGS:
        raise MappingError(f"{file}: {len(entries)} mappings > {MAX_MAPPINGS}")
    mappings, names = [], set()
    for number, entry in enumerate(entries, 1):
        where = f"{file}: mapping {number}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where = f"{file}: mapping {entry['name']!r}"
        try:
            mapping = _mapping(entry, max_items)
        except (MappingError, PathError) as exc:
            raise MappingError(f"{where}: {exc}") from exc
        if mapping.name in names:
            raise MappingError(f"{where}: the name is used twice")
        names.add(mapping.name)
        mappings.append(mapping)
    return mappings


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise MappingError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _mapping(entry: Any, max_items: int) -> Mapping:
    if not isinstance(entry, dict):
        raise MappingError("must be a table")
    if "availability" in entry:
        return _availability_mapping(entry, max_items)
    _only(entry, {"name", "mqtt", "kafka", "each", "device_id", "kind", "ts", "seq", "status", "checks", "metrics",
                  "measurements", "readings", "gateway_id", "max_items", "measurements_from", "metrics_from",
                  "availability"}, "keys")
    name = entry.get("name")
    if not isinstance(name, str) or not _MAPPING_NAME.match(name):
        raise MappingError(f"name: required, {ID_CHARACTERS} (it labels metrics and dead letters)")
    mqtt, kafka = entry.get("mqtt"), entry.get("kafka")
    if (mqtt is None) == (kafka is None):
        raise MappingError("exactly one of mqtt (a topic filter) or kafka (a topic) is required")
    if mqtt is not None:
        _check_topic_filter(mqtt)
    if kafka is not None and (not isinstance(kafka, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", kafka)):
        raise MappingError(f"kafka: {kafka!r} is not a Kafka topic name")
    if "device_id" not in entry:
        raise MappingError("device_id: required (a topic level such as 'topic[1]', a path, or 'key')")
    kind = entry.get("kind", "registry")
    if kind != "registry" and kind not in DEVICE_KINDS:
        raise MappingError(f"kind: {kind!r} is neither 'registry' nor one of {', '.join(DEVICE_KINDS)}")
    gateway = entry.get("gateway_id")
    gateway_path = _path(gateway, "gateway_id") if gateway is not None else None
    if gateway_path is not None and gateway_path.origin not in ("topic", "key"):
        raise MappingError("gateway_id: only a topic level or the Kafka key: the transport must vouch for it")
    limit = entry.get("max_items", max_items)
    if type(limit) is not int or not 1 <= limit <= max_items:
        raise MappingError(f"max_items: an integer from 1 to {max_items}")
    mapping = Mapping(
        name=name, mqtt=mqtt, kafka=kafka,
        each=_path(entry["each"], "each") if "each" in entry else None,
        device_id=_source(entry["device_id"], "device_id"),
        kind=None if kind == "registry" else kind,
        ts=_timestamp(entry.get("ts", "received")),
        seq=_source(entry["seq"], "seq") if "seq" in entry else None,
        status=_status(entry["status"], "status") if "status" in entry else None,
        checks=_fields(entry.get("checks", {}), "checks"),
        metrics=_fields(entry.get("metrics", {}), "metrics"),
        measurements=_fields(entry.get("measurements", {}), "measurements"),
        readings=_readings(entry["readings"]) if "readings" in entry else None,
        measurements_from=_spread(entry["measurements_from"], "measurements_from")
        if "measurements_from" in entry else None,
        metrics_from=_spread(entry["metrics_from"], "metrics_from") if "metrics_from" in entry else None,
        gateway_id=gateway_path, max_items=limit)
    if mapping.readings is not None and mapping.status is not None:
        raise MappingError("status and readings.status both set the status: keep one")
    return mapping


def _availability_mapping(entry: dict[str, Any], max_items: int) -> Mapping:
    unknown = sorted(set(entry) - {"name", "mqtt", "kafka", "device_id", "ts", "availability"})
    if unknown:
        raise MappingError(f"{unknown[0]!r} belongs to heartbeat mappings; an availability mapping takes name, mqtt "
                           "or kafka, device_id, ts and availability")
    spec = entry["availability"]
    if not isinstance(spec, dict):
        raise MappingError("availability: { online = [values], offline = [values] }, and path for a JSON payload")
    _only(spec, {"path", "online", "offline"}, "availability")
    said: dict[Any, str] = {}
    for state in ("online", "offline"):
        values = spec.get(state)
        if not isinstance(values, list) or not 0 < len(values) <= MAX_FIELDS:
            raise MappingError(f"availability.{state}: a list of 1 to {MAX_FIELDS} values")
        for value in values:
            if type(value) not in (str, int, bool):
                raise MappingError(f"availability.{state}: {value!r} is not a string, integer or boolean")
            if "path" not in spec and type(value) is not str:
                raise MappingError(f"availability.{state}: {value!r}: a text payload is compared with strings")
            if (type(value), value) in said:
                raise MappingError(f"availability: {value!r} is both {said[(type(value), value)]} and {state}")
            said[(type(value), value)] = state
    path = _path(spec["path"], "availability.path") if "path" in spec else None
    base = _mapping({"name": entry.get("name"), **{k: entry[k] for k in ("mqtt", "kafka", "device_id", "ts")
                                                    if k in entry}}, max_items)
    if path is None and (base.device_id.path is None or base.device_id.path.origin not in ("topic", "key")):
        raise MappingError("device_id: a text payload holds no field: a topic level such as 'topic[1]', or 'key'")
    if path is None and base.ts.path is not None:
        raise MappingError("ts: a text payload holds no time: leave ts out (the time it is received)")
    return replace(base, availability=Availability(path, tuple(spec["online"]), tuple(spec["offline"])))


def _check_topic_filter(text: Any) -> None:
    if not isinstance(text, str) or not 0 < len(text) <= 256 or "\0" in text:
        raise MappingError("mqtt: a topic filter of 1 to 256 characters")
    levels = text.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise MappingError(f"mqtt: {text!r}: '#' only as the whole last level")
        if "+" in level and level != "+":
            raise MappingError(f"mqtt: {text!r}: '+' only as a whole level")
    if text.startswith("$"):
        raise MappingError(f"mqtt: {text!r}: topics starting with '$' belong to the broker")


def _path(text: Any, where: str) -> Path:
    try:
        return compile_path(text)
    except PathError as exc:
        raise MappingError(f"{where}: {exc}") from exc


def _source(spec: Any, where: str) -> Source:
    if isinstance(spec, str):
        return Source(_path(spec, where))
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: a path, or a table with path or value")
    _only(spec, {"path", "value", "optional", "scale", "from_text", "healthy_when"}, where)
    if ("path" in spec) == ("value" in spec):
        raise MappingError(f"{where}: exactly one of path or value")
    scale = spec.get("scale")
    if scale is not None and (type(scale) not in (int, float) or not math.isfinite(scale) or scale == 0):
        raise MappingError(f"{where}.scale: a finite, non-zero number")
    for flag in ("optional", "from_text"):
        if flag in spec and type(spec[flag]) is not bool:
            raise MappingError(f"{where}.{flag}: true or false")
    return Source(path=_path(spec["path"], f"{where}.path") if "path" in spec else None, value=spec.get("value"),
                  optional=spec.get("optional", False), scale=float(scale) if scale is not None else None,
                  from_text=spec.get("from_text", False),
                  healthy_when=_rule(spec["healthy_when"], f"{where}.healthy_when") if "healthy_when" in spec else None)


def _rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise MappingError(f"{where}: one of {{ equals = V }}, {{ one_of = [V, …] }}, {{ range = [low, high] }}")
    (how, value), = spec.items()
    if how == "equals":
        return Rule(accepted=(value,))
    if how == "one_of":
        if not isinstance(value, list) or not 0 < len(value) <= MAX_FIELDS:
            raise MappingError(f"{where}.one_of: a list of 1 to {MAX_FIELDS} values")
        return Rule(accepted=tuple(value))
    if how == "range":
        if (not isinstance(value, list) or len(value) != 2
                or any(type(v) not in (int, float) or not math.isfinite(v) for v in value) or value[0] > value[1]):
            raise MappingError(f"{where}.range: [low, high], finite numbers, low ≤ high")
        return Rule(low=float(value[0]), high=float(value[1]))
    raise MappingError(f"{where}: unknown rule {how!r} (equals, one_of, range)")


def _fields(table: Any, where: str) -> tuple[tuple[str, Source], ...]:
    if not isinstance(table, dict):
        raise MappingError(f"{where}: a table of name = source")
    if len(table) > MAX_FIELDS:
        raise MappingError(f"{where}: {len(table)} fields > {MAX_FIELDS}")
    fields = []
    for name, spec in table.items():
        if not _FIELD_NAME.match(name):
            raise MappingError(f"{where}: {name!r} is not a field name ([A-Za-z0-9_.-], at most 64)")
        source = _source(spec, f"{where}.{name}")
        if where != "checks" and source.healthy_when is not None:
            raise MappingError(f"{where}.{name}: healthy_when belongs to checks and status")
        fields.append((name, source))
    return tuple(fields)


def _timestamp(spec: Any) -> Timestamp:
    if spec == "received":
        return Timestamp(None)
    if isinstance(spec, str):
        return Timestamp(_path(spec, "ts"))
    if not isinstance(spec, dict):
        raise MappingError("ts: 'received', a path, or { path = …, format = … }")
    _only(spec, {"path", "format"}, "ts")
    if "path" not in spec:
        raise MappingError("ts: path is required (or write ts = \"received\")")
    form = spec.get("format", "rfc3339")
    if not isinstance(form, str):
        raise MappingError("ts.format: a string")
    if form in _TIME_FORMATS:
        return Timestamp(_path(spec["path"], "ts.path"), form)
    form, shape = _strptime_pattern(form)
    return Timestamp(_path(spec["path"], "ts.path"), form, re.compile(shape, re.ASCII))


def _strptime_pattern(pattern: str) -> tuple[str, str]:
    out, shape, at = [], [], 0
    while at < len(pattern):
        token = next((t for t in _PATTERN_TOKENS if pattern.startswith(t, at)), None)
        if token is not None:
            out.append(_PATTERN_TOKENS[token])
            shape.append(f"[0-9]{{{len(token)}}}")
            at += len(token)
        elif pattern[at] in " -:/T._":
            out.append(pattern[at])
            shape.append(re.escape(pattern[at]))
            at += 1
        else:
            raise MappingError(f"ts.format: {pattern!r}: one of {', '.join(_TIME_FORMATS)}, or a pattern of "
                               f"yyyy MM dd HH mm ss and the separators ' -:/T._'")
    if not all(t in out for t in ("%Y", "%m", "%d", "%H", "%M")):
        raise MappingError(f"ts.format: {pattern!r} lacks one of yyyy, MM, dd, HH, mm")
    return "".join(out), "".join(shape)


def _status(spec: Any, where: str) -> StatusSource:
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: a table with path and ok/degraded/fault lists, or healthy_when")
    _only(spec, {"path", "ok", "degraded", "fault", "healthy_when", "otherwise", "optional"}, where)
    if "path" not in spec:
        raise MappingError(f"{where}: path is required")
    words: dict[Any, str] = {}
    for status in _STATUSES:
        values = spec.get(status, [])
        if not isinstance(values, list) or len(values) > MAX_FIELDS:
            raise MappingError(f"{where}.{status}: a list of at most {MAX_FIELDS} values")
        for value in values:
            if type(value) not in (str, int, float, bool):
                raise MappingError(f"{where}.{status}: {value!r} is not a string, number or boolean")
            if value in words:
                raise MappingError(f"{where}: {value!r} is both {words[value]} and {status}")
            words[value] = status
    rule = _rule(spec["healthy_when"], f"{where}.healthy_when") if "healthy_when" in spec else None
    if (rule is None) == (not words):
        raise MappingError(f"{where}: either ok/degraded/fault lists or healthy_when")
    otherwise = spec.get("otherwise")
    if otherwise is not None and otherwise not in _STATUSES:
        raise MappingError(f"{where}.otherwise: one of {', '.join(_STATUSES)}")
    optional = spec.get("optional", False)
    if type(optional) is not bool:
        raise MappingError(f"{where}.optional: true or false")
    return StatusSource(_path(spec["path"], f"{where}.path"), words, rule, otherwise, optional)


def _spread(spec: Any, where: str) -> Spread:
    if isinstance(spec, str):
        return Spread(_path(spec, where), frozenset())
    if not isinstance(spec, dict):
        raise MappingError(f"{where}: a path, or {{ path = …, skip = [names] }}")
    _only(spec, {"path", "skip"}, where)
    skip = spec.get("skip", [])
    if "path" not in spec:
        raise MappingError(f"{where}.path: required")
    if not isinstance(skip, list) or len(skip) > MAX_FIELDS or not all(isinstance(n, str) for n in skip):
        raise MappingError(f"{where}.skip: a list of at most {MAX_FIELDS} names")
    return Spread(_path(spec["path"], f"{where}.path"), frozenset(skip))


def _readings(spec: Any) -> Readings:
    if not isinstance(spec, dict):
        raise MappingError("readings: a table with path, name and value")
    _only(spec, {"path", "name", "value", "status", "scale", "from_text"}, "readings")
    for key in ("path", "name", "value"):
        if key not in spec:
            raise MappingError(f"readings.{key}: required")
    scale = spec.get("scale")
    if scale is not None and (type(scale) not in (int, float) or not math.isfinite(scale) or scale == 0):
        raise MappingError("readings.scale: a finite, non-zero number")
    from_text = spec.get("from_text", False)
    if type(from_text) is not bool:
        raise MappingError("readings.from_text: true or false")
    return Readings(_path(spec["path"], "readings.path"), _path(spec["name"], "readings.name"),
                    _path(spec["value"], "readings.value"),
                    _status(spec["status"], "readings.status") if "status" in spec else None,
                    float(scale) if scale is not None else None, from_text)
