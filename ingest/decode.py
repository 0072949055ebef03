"""The decode stage between the sources and the sink: one broker message into accepted heartbeats and
rejections.

Pure functions, no I/O: every source (MQTT, Kafka) and every test goes through `decode_message`, so there
is one answer to "is this message valid". That answer is the pydantic model's (`ingest.schema.Heartbeat`):
the hot path (`ingest.fastpath`) only ever accepts what the model accepts, with the same values, and hands
everything else — every rejection included — to the model, which says why. `DecodeStage` holds the limits
and makes the `Message` a source hands to the sink.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from ingest import metrics
from ingest.fastpath import accept, accept_mapped
from ingest.mapping.apply import apply_availability, apply_mapping
from ingest.mapping.spec import Mapping
from ingest.message import Accepted, Acknowledge, AvailabilityChange, Decoded, Message, Rejection
from ingest.schema import Heartbeat, MappedHeartbeat


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 65536
    max_gateway_heartbeats: int = 1000
    future_tolerance: timedelta = timedelta(minutes=5)
    lateness_window: timedelta = timedelta(days=7)


class DecodeStage:
    """Turns what a source received into the `Message` it hands to the sink, decoded.

    Called on the source's own thread (paho's network thread, the Kafka consumer's), so that decoding
    overlaps the sink's waits on the database; the sink only writes.
    """

    def __init__(self, limits: Limits, zone: ZoneInfo | None = None) -> None:
        self.limits = limits
        self.zone = zone or ZoneInfo("Asia/Ho_Chi_Minh")

    def message(self, *, source: str, origin: str, payload: bytes, received_at: datetime,
                expected_device_id: str | None, allow_array: bool, acknowledge: Acknowledge,
                gateway_id: str | None = None, flush: Acknowledge | None = None,
                mapping: Mapping | None = None, topic_levels: tuple[str, ...] = (), key: str | None = None,
                retained: bool = False) -> Message:
        if mapping is None:
            decoded = decode_message(payload, received_at=received_at, expected_device_id=expected_device_id,
                                     allow_array=allow_array, limits=self.limits)
        elif mapping.availability is not None:
            decoded = decode_availability(payload, mapping, topic_levels=topic_levels, key=key,
                                          received_at=received_at, retained=retained, limits=self.limits,
                                          zone=self.zone)
        else:
            decoded = decode_mapped(payload, mapping, topic_levels=topic_levels, key=key, received_at=received_at,
                                    limits=self.limits, zone=self.zone)
        return Message(source, origin, payload, received_at, expected_device_id, allow_array, acknowledge, decoded,
                       gateway_id, flush)


def _reject(reason: str, detail: str, raw: bytes) -> Decoded:
    return Decoded([], [Rejection(reason, detail, raw)])


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in item["loc"]) or "message"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def decode_message(raw: bytes, *, received_at: datetime, expected_device_id: str | None,
                   allow_array: bool, limits: Limits) -> Decoded:
    """Decode a message body.

    `expected_device_id` is the id the transport vouches for (the MQTT topic, the Kafka key); every
    heartbeat in the message must carry it. A gateway message (`allow_array`) may hold a JSON array, and
    is then checked element by element: one bad element is rejected alone, its neighbours proceed.
    """
    if len(raw) > limits.max_message_bytes:
        return _reject("too_large", f"{len(raw)} bytes > {limits.max_message_bytes}", raw[:1024])
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None  # not UTF-8, not JSON, or JSON orjson reads differently: the reference decides
    if type(document) is dict:
        items, where = [document], [""]
    elif type(document) is list and allow_array and len(document) <= limits.max_gateway_heartbeats:
        items, where = document, [f"[{index}] " for index in range(len(document))]
    else:
        items = []
    valid = [accept(item) if type(item) is dict else None for item in items]
    if valid and None not in valid:
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        positions: list[int] = []
        for index, values in enumerate(valid):
            _judge(Accepted._make(values), where[index], raw, items, index, received_at, expected_device_id,
                   limits, accepted, rejected, positions)
        return Decoded(accepted, rejected, positions)
    return decode_message_reference(raw, received_at=received_at, expected_device_id=expected_device_id,
                                    allow_array=allow_array, limits=limits)


def decode_message_reference(raw: bytes, *, received_at: datetime, expected_device_id: str | None,
                             allow_array: bool, limits: Limits) -> Decoded:
    """`decode_message` through the standard json module and the pydantic model alone: the definition the
    hot path is tested against, and what names the reason of every rejection."""
    if len(raw) > limits.max_message_bytes:
        return _reject("too_large", f"{len(raw)} bytes > {limits.max_message_bytes}", raw[:1024])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reject("not_utf8", f"invalid UTF-8 at byte {exc.start}", raw)
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        return _reject("not_json", str(exc)[:200], raw)
    if isinstance(document, list):
        if not allow_array:
            return _reject("schema", "an array is accepted only on a gateway topic or from Kafka", raw)
        if len(document) > limits.max_gateway_heartbeats:
            return _reject("too_many", f"{len(document)} heartbeats > {limits.max_gateway_heartbeats}", raw)
        items = document
    else:
        items = [document]

    accepted, rejected, positions = [], [], []
    for index, item in enumerate(items):
        where = f"[{index}] " if len(items) > 1 or isinstance(document, list) else ""
        if not isinstance(item, dict):
            rejected.append(Rejection("schema", f"{where}a heartbeat must be a JSON object",
                                      _item_raw(raw, items, index)))
            continue
        try:
            heartbeat = Accepted.of(Heartbeat.model_validate(item))
        except ValidationError as exc:
            rejected.append(Rejection("schema", where + _describe(exc), _item_raw(raw, items, index)))
            continue
        _judge(heartbeat, where, raw, items, index, received_at, expected_device_id, limits, accepted, rejected,
               positions)
    return Decoded(accepted, rejected, positions)


def decode_mapped(raw: bytes, mapping: Mapping, *, topic_levels: tuple[str, ...] = (), key: str | None = None,
                  received_at: datetime, limits: Limits, zone: ZoneInfo) -> Decoded:
    """A vendor's message through its mapping (ingest/mapping/), then the contract's model and the same checks
    of transport and clock as a native heartbeat. Every refusal names the mapping; its bytes are the message's."""
    if len(raw) > limits.max_message_bytes:
        decoded = _reject("too_large", f"mapping {mapping.name!r}: {len(raw)} bytes > {limits.max_message_bytes}",
                          raw[:1024])
        _count_mapped(mapping.name, "refused")
        return decoded
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:  # integers beyond 64 bits and the like: the json module reads them, the mapping judges them
            document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            _count_mapped(mapping.name, "refused")
            return _reject("not_json", f"mapping {mapping.name!r}: {str(exc)[:200]}", raw)
    return decode_document(document, raw, mapping, topic_levels=topic_levels, key=key, received_at=received_at,
                           limits=limits, zone=zone)


def decode_document(document: Any, raw: bytes, mapping: Mapping, *, topic_levels: tuple[str, ...] = (),
                    key: str | None = None, received_at: datetime, limits: Limits, zone: ZoneInfo) -> Decoded:
    """A document already read (JSON, or a station file's lines: ingest/files/) through its mapping; `raw` is
    what a dead letter keeps of it."""
    mapped = apply_mapping(mapping, document, topic_levels=topic_levels, key=key, received_at=received_at,
                           zone=zone)
    rejected = [Rejection("mapping", problem, raw) for problem in mapped.problems]
    accepted: list[Accepted] = []
    earliest, latest = received_at - limits.lateness_window, received_at + limits.future_tolerance
    for heartbeat, position in mapped.heartbeats:
        values = accept_mapped(heartbeat)
        if values is not None:
            valid = Accepted._make(values)
        else:  # the model decides, and names the reason
            where = f"mapping {mapping.name!r}: " + (f"[{position}] " if mapping.each is not None else "")
            try:
                valid = Accepted.of(MappedHeartbeat.model_validate(heartbeat | {"ts": heartbeat["ts"].isoformat()}))
            except ValidationError as exc:
                rejected.append(Rejection("schema", where + _describe(exc), raw))
                continue
        if earliest <= valid.ts <= latest:
            accepted.append(valid)
        else:
            where = f"mapping {mapping.name!r}: " + (f"[{position}] " if mapping.each is not None else "")
            _judge(valid, where, raw, [heartbeat], 0, received_at, None, limits, accepted, rejected, [])
    _count_mapped(mapping.name, "refused" if not accepted else "partly" if rejected else "mapped")
    # -1: a later refusal (against the registry) carries the whole message, not an element of it.
    return Decoded(accepted, rejected, [-1] * len(accepted))


def decode_availability(raw: bytes, mapping: Mapping, *, topic_levels: tuple[str, ...] = (), key: str | None = None,
                        received_at: datetime, retained: bool, limits: Limits, zone: ZoneInfo) -> Decoded:
    """An availability message through its mapping: one state change, or the rejection naming the mapping."""
    assert mapping.availability is not None
    where = f"mapping {mapping.name!r}: "
    if len(raw) > limits.max_message_bytes:
        _count_mapped(mapping.name, "refused")
        return _reject("too_large", f"{where}{len(raw)} bytes > {limits.max_message_bytes}", raw[:1024])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _count_mapped(mapping.name, "refused")
        return _reject("not_utf8", f"{where}byte {exc.start} is not UTF-8", raw)
    if mapping.availability.path is None:
        document: Any = text.strip()
    else:
        try:
            document = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            _count_mapped(mapping.name, "refused")
            return _reject("not_json", f"{where}{str(exc)[:200]}", raw)
    change, problem = apply_availability(mapping, document, topic_levels=topic_levels, key=key,
                                         received_at=received_at, zone=zone)
    if change is None:
        _count_mapped(mapping.name, "refused")
        return _reject("mapping", problem or where, raw)
    device_id, ts, online = change
    if ts > received_at + limits.future_tolerance:
        _count_mapped(mapping.name, "refused")
        return _reject("ts_future", f"{where}ts {ts.isoformat()} is ahead of receipt {received_at.isoformat()} by "
                       f"more than {limits.future_tolerance}", raw)
    if ts < received_at - limits.lateness_window:
        _count_mapped(mapping.name, "refused")
        return _reject("ts_too_old", f"{where}ts {ts.isoformat()} is older than the lateness window "
                       f"({limits.lateness_window}) at receipt {received_at.isoformat()}", raw)
    _count_mapped(mapping.name, "mapped")
    return Decoded([], [], [], [AvailabilityChange(device_id, ts, online, retained)])


# The labelled counters, looked up once each: `labels()` costs more than the rest of counting a message.
_MAPPED_COUNTERS: dict[tuple[str, str], Any] = {}


def _count_mapped(mapping: str, outcome: str) -> None:
    counter = _MAPPED_COUNTERS.get((mapping, outcome))
    if counter is None:
        counter = _MAPPED_COUNTERS[(mapping, outcome)] = metrics.MAPPED_MESSAGES.labels(mapping, outcome)
    counter.inc()


def element_raw(raw: bytes, position: int) -> bytes:
    """The bytes a rejection of the heartbeat at `position` carries, the same as the decoder's own rejections:
    the message itself for a single object (or a one-element array), the element re-encoded otherwise."""
    if position < 0:
        return raw
    document = json.loads(raw, parse_constant=_refuse_constant)
    if not isinstance(document, list):
        return raw
    return raw if len(document) == 1 else json.dumps(document[position], ensure_ascii=False).encode()


def _item_raw(raw: bytes, items: list, index: int) -> bytes:
    return raw if len(items) == 1 else json.dumps(items[index], ensure_ascii=False).encode()


def _judge(heartbeat: Accepted, where: str, raw: bytes, items: list, index: int, received_at: datetime,
           expected_device_id: str | None, limits: Limits, accepted: list[Accepted],
           rejected: list[Rejection], positions: list[int]) -> None:
    """The checks that need the transport and the clock, on a heartbeat the contract accepts."""
    if expected_device_id is not None and heartbeat.device_id != expected_device_id:
        vouched = repr(expected_device_id) if expected_device_id else "no device (a Kafka message without a key)"
        rejected.append(Rejection(
            "device_mismatch", f"{where}payload device_id {heartbeat.device_id!r} != {vouched} of the transport",
            _item_raw(raw, items, index)))
    elif heartbeat.ts > received_at + limits.future_tolerance:
        rejected.append(Rejection(
            "ts_future", f"{where}ts {heartbeat.ts.isoformat()} is ahead of receipt "
            f"{received_at.isoformat()} by more than {limits.future_tolerance}", _item_raw(raw, items, index)))
    elif heartbeat.ts < received_at - limits.lateness_window:
        rejected.append(Rejection(
            "ts_too_old", f"{where}ts {heartbeat.ts.isoformat()} is older than the lateness window "
            f"({limits.lateness_window}) at receipt {received_at.isoformat()}", _item_raw(raw, items, index)))
    else:
        accepted.append(heartbeat)
        positions.append(index)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")
