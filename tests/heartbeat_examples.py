"""The one table of valid and invalid heartbeat messages that every decoder and every source must agree on.

Each example: (name, raw bytes, the transport's device id or None, allow_array, expected) where expected is
a list with, per heartbeat in the message, either "ok", "ok:unhealthy" or the rejection reason.
RECEIVED is the receive time every example is judged against.
"""

from datetime import UTC, datetime

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # 19:00 in Quy Nhơn


def _hb(**fields: object) -> dict:
    body = {"device_id": "cam-1", "kind": "cctv", "ts": "2026-11-01T18:59:00+07:00"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def _bytes(value: object) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()


EXAMPLES = [
    ("minimal camera", _bytes(_hb()), "cam-1", False, ["ok"]),
    ("epoch milliseconds", _bytes(_hb(ts=1793530740000)), "cam-1", False, ["ok"]),
    ("Z offset and nanoseconds", _bytes(_hb(ts="2026-11-01T11:59:00.123456789Z")), "cam-1", False, ["ok"]),
    ("all optional fields", _bytes(_hb(seq=7, status="degraded", checks={"stream_ok": True},
                                       metrics={"fps": 25, "bitrate_kbps": 2048.5})), "cam-1", False, ["ok"]),
    ("fault status is stored, unhealthy", _bytes(_hb(status="fault")), "cam-1", False, ["ok:unhealthy"]),
    ("a failed check is stored, unhealthy", _bytes(_hb(checks={"stream_ok": False})), "cam-1", False,
     ["ok:unhealthy"]),
    ("monitor without measurements is unhealthy",
     _bytes(_hb(device_id="air-1", kind="air_monitor")), "air-1", False, ["ok:unhealthy"]),
    ("monitor with measurements is healthy",
     _bytes(_hb(device_id="air-1", kind="air_monitor", measurements={"pm2_5": 31.2})), "air-1", False, ["ok"]),
    ("unicode-free id with allowed punctuation", _bytes(_hb(device_id="VMS.01.cam_3-b")), "VMS.01.cam_3-b", False,
     ["ok"]),
    # ':' separates a broker account's name from its hash in Mosquitto's password file (DESIGN.md).
    ("an id with a colon", _bytes(_hb(device_id="VMS.01:cam_3")), "VMS.01:cam_3", False, ["schema"]),
    ("gateway array, one bad element", _bytes([_hb(device_id="cam-1"), _hb(device_id="cam-2", kind="tv")]),
     None, True, ["ok", "schema"]),
    ("not JSON", b"{device_id: cam-1", "cam-1", False, ["not_json"]),
    ("not UTF-8", b'{"device_id": "cam-\xff"}', "cam-1", False, ["not_utf8"]),
    ("over 64 KiB", _bytes(_hb(metrics={f"m{i}": i for i in range(8000)})), "cam-1", False, ["too_large"]),
    ("topic names another device", _bytes(_hb(device_id="cam-2")), "cam-1", False, ["device_mismatch"]),
    ("unknown kind", _bytes(_hb(kind="toaster")), "cam-1", False, ["schema"]),
    ("missing ts", _bytes(_hb(ts=None)), "cam-1", False, ["schema"]),
    ("ts without offset", _bytes(_hb(ts="2026-11-01T18:59:00")), "cam-1", False, ["schema"]),
    ("ts as a boolean", _bytes(_hb(ts=True)), "cam-1", False, ["schema"]),
    ("ts as a float", _bytes(_hb(ts=1793530740000.5)), "cam-1", False, ["schema"]),
    ("ts more than 5 minutes ahead", _bytes(_hb(ts="2026-11-01T19:05:01+07:00")), "cam-1", False, ["ts_future"]),
    ("ts just under 5 minutes ahead", _bytes(_hb(ts="2026-11-01T19:05:00+07:00")), "cam-1", False, ["ok"]),
    ("ts older than the 7-day window", _bytes(_hb(ts="2026-10-25T18:59:59+07:00")), "cam-1", False,
     ["ts_too_old"]),
    ("NaN in metrics", b'{"device_id":"cam-1","kind":"cctv","ts":1793530740000,"metrics":{"fps":NaN}}', "cam-1",
     False, ["not_json"]),
    ("overflow to infinity", b'{"device_id":"cam-1","kind":"cctv","ts":1793530740000,"metrics":{"fps":1e999}}',
     "cam-1", False, ["schema"]),
    ("boolean as a metric", _bytes(_hb(metrics={"on": True})), "cam-1", False, ["schema"]),
    ("string as a check", _bytes(_hb(checks={"stream_ok": "yes"})), "cam-1", False, ["schema"]),
    ("negative seq", _bytes(_hb(seq=-1)), "cam-1", False, ["schema"]),
    ("unknown field (a typo must not pass silently)", _bytes(_hb(measurments={"pm2_5": 3})), "cam-1", False,
     ["schema"]),
    ("device id too long", _bytes(_hb(device_id="c" * 65)), None, False, ["schema"]),
    ("device id with a slash", _bytes(_hb(device_id="cam/1")), None, False, ["schema"]),
    ("array on a device topic", _bytes([_hb()]), "cam-1", False, ["schema"]),
    ("a JSON string, not an object", b'"cam-1"', "cam-1", False, ["schema"]),
]
