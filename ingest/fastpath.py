"""The hot path of `decode_message`: says yes, with the values, to a heartbeat the model certainly accepts.

Plain type checks on what orjson parsed, for the common valid case. It never says no: whatever it is unsure
of (every invalid heartbeat, and a few valid ones) returns None and goes to the pydantic model
(`ingest.schema.Heartbeat`, the one definition of valid), which decides and names the reason. Each check
below mirrors a field of the model; `tests/test_decode_fastpath.py` holds the two to the same answers.
"""

from datetime import datetime
from typing import Any

from base.vocabulary import ID_PATTERN, DeviceKind
from ingest.schema import Status, is_healthy, parse_timestamp

_FIELDS = frozenset({"device_id", "kind", "ts", "seq", "status", "checks", "metrics", "measurements"})
_KINDS = {kind.value: kind for kind in DeviceKind}
_STATUSES = {status.value: status for status in Status}
# orjson reads an integer beyond 64 bits as a float, where the json module keeps an int; a float this large
# may be either, so it is left to the reference decoder. (NaN and infinities fail the comparison too.)
_FLOAT_LIMIT = 2.0**63


def accept(item: dict[str, Any]) -> tuple | None:
    """The `Accepted` fields of a heartbeat object, or None when the model must decide."""
    if (device_id := _device_id(item)) is None:
        return None
    kind = item.get("kind")
    if type(kind) is not str or (kind := _KINDS.get(kind)) is None:
        return None
    ts = item.get("ts")
    if type(ts) is not int and type(ts) is not str:
        return None
    try:
        ts = parse_timestamp(ts)
    except ValueError:
        return None
    return _rest(item, device_id, kind, ts)


def accept_mapped(item: dict[str, Any]) -> tuple | None:
    """`accept` for what a mapping made (ingest/mapping/apply.py): the kind may be absent (None: the registry's)
    and `ts` is already an aware datetime."""
    if (device_id := _device_id(item)) is None:
        return None
    kind = item.get("kind")
    if kind is not None and (type(kind) is not str or (kind := _KINDS.get(kind)) is None):
        return None
    ts = item.get("ts")
    if type(ts) is not datetime or ts.tzinfo is None:
        return None
    return _rest(item, device_id, kind, ts)


def _device_id(item: dict[str, Any]) -> str | None:
    """The device id of an object holding only the contract's fields, when the model's pattern matches it."""
    if not item.keys() <= _FIELDS:
        return None
    device_id = item.get("device_id")
    # fullmatch: the model's pattern ends at the end of the text (pydantic's `$` is not before a final newline).
    if type(device_id) is not str or ID_PATTERN.fullmatch(device_id) is None:
        return None
    return device_id


def _rest(item: dict[str, Any], device_id: str, kind: DeviceKind | None, ts: datetime) -> tuple | None:
    seq = item.get("seq")
    if seq is not None and (type(seq) is not int or seq < 0):
        return None
    status = item.get("status", Status.OK)
    if status is not Status.OK and (type(status) is not str or (status := _STATUSES.get(status)) is None):
        return None
    checks = item.get("checks")
    if checks is not None and (type(checks) is not dict or not all(type(v) is bool for v in checks.values())):
        return None
    metrics = item.get("metrics")
    if metrics is not None and not _numbers(metrics):
        return None
    measurements = item.get("measurements")
    if measurements is not None and not _numbers(measurements):
        return None
    return (device_id, kind, ts, seq, status, checks, metrics, measurements,
            is_healthy(kind, status, checks, measurements))


def _numbers(values: object) -> bool:
    if type(values) is not dict:
        return False
    for number in values.values():
        kind = type(number)
        if kind is float:
            if not -_FLOAT_LIMIT < number < _FLOAT_LIMIT:
                return False
        elif kind is not int:
            return False
    return True
