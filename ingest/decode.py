"""Turns one broker message into accepted heartbeats and rejections.

Pure functions, no I/O: every source (MQTT, Kafka) and every test goes through `decode_message`, so there
is one answer to "is this message valid".
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from ingest.schema import Heartbeat


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 65536
    max_gateway_heartbeats: int = 1000
    future_tolerance: timedelta = timedelta(minutes=5)
    lateness_window: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Rejection:
    """Why (a part of) a message was refused; `reason` is a short stable code, `detail` is for a person."""

    reason: str
    detail: str
    raw: bytes


@dataclass(frozen=True)
class Decoded:
    accepted: list[Heartbeat]
    rejected: list[Rejection]
    # Where each accepted heartbeat stands in a gateway's array (0 for a single object): a check made later,
    # against the registry, can then dead-letter that element's bytes alone (`element_raw`).
    positions: list[int] = field(default_factory=list)


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
        item_raw = raw if len(items) == 1 else json.dumps(item, ensure_ascii=False).encode()
        where = f"[{index}] " if len(items) > 1 or isinstance(document, list) else ""
        if not isinstance(item, dict):
            rejected.append(Rejection("schema", f"{where}a heartbeat must be a JSON object", item_raw))
            continue
        try:
            heartbeat = Heartbeat.model_validate(item)
        except ValidationError as exc:
            rejected.append(Rejection("schema", where + _describe(exc), item_raw))
            continue
        if expected_device_id is not None and heartbeat.device_id != expected_device_id:
            vouched = repr(expected_device_id) if expected_device_id else "no device (a Kafka message without a key)"
            rejected.append(Rejection(
                "device_mismatch",
                f"{where}payload device_id {heartbeat.device_id!r} != {vouched} of the transport",
                item_raw))
            continue
        if heartbeat.ts > received_at + limits.future_tolerance:
            rejected.append(Rejection(
                "ts_future", f"{where}ts {heartbeat.ts.isoformat()} is ahead of receipt "
                f"{received_at.isoformat()} by more than {limits.future_tolerance}", item_raw))
            continue
        if heartbeat.ts < received_at - limits.lateness_window:
            rejected.append(Rejection(
                "ts_too_old", f"{where}ts {heartbeat.ts.isoformat()} is older than the lateness window "
                f"({limits.lateness_window}) at receipt {received_at.isoformat()}", item_raw))
            continue
        accepted.append(heartbeat)
        positions.append(index)
    return Decoded(accepted, rejected, positions)


def element_raw(raw: bytes, position: int) -> bytes:
    """The bytes a rejection of the heartbeat at `position` carries, the same as the decoder's own rejections:
    the message itself for a single object (or a one-element array), the element re-encoded otherwise."""
    document = json.loads(raw, parse_constant=_refuse_constant)
    if not isinstance(document, list):
        return raw
    return raw if len(document) == 1 else json.dumps(document[position], ensure_ascii=False).encode()


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")
