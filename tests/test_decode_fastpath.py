"""The hot-path decoder and the reference (json module + pydantic model) give the same answer to every message:
the same heartbeats accepted with the same values (types included), the same rejections with the same
reasons, details and raw bytes."""

import json
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import Limits, decode_message, decode_message_reference
from ingest.fastpath import accept
from ingest.message import Decoded
from tests.heartbeat_examples import EXAMPLES, RECEIVED


def _exact(value: object) -> object:
    """A form where equal means identical: `1 == 1.0 == True` and `0.0 == -0.0` in Python, not here."""
    if isinstance(value, dict):
        return ("dict", [(_exact(k), _exact(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_exact(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value.isoformat())
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(decoded: Decoded) -> object:
    return ([_exact(tuple(hb)) for hb in decoded.accepted],
            [(r.reason, r.detail, r.raw) for r in decoded.rejected])


def _both(raw: bytes, device_id: str | None, allow_array: bool, limits: Limits | None = None) -> Decoded:
    limits = limits or Limits()
    fast = decode_message(raw, received_at=RECEIVED, expected_device_id=device_id, allow_array=allow_array,
                          limits=limits)
    reference = decode_message_reference(raw, received_at=RECEIVED, expected_device_id=device_id,
                                         allow_array=allow_array, limits=limits)
    assert _outcome(fast) == _outcome(reference)
    return fast


@pytest.mark.parametrize(("raw", "device_id", "allow_array", "expected"),
                         [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_every_example_decodes_the_same_on_both_paths(raw: bytes, device_id: str | None, allow_array: bool,
                                                      expected: list[str]) -> None:
    decoded = _both(raw, device_id, allow_array)
    outcomes = ["ok" if hb.healthy else "ok:unhealthy" for hb in decoded.accepted]
    assert sorted(outcomes + [r.reason for r in decoded.rejected]) == sorted(expected)


def test_the_hot_path_takes_the_valid_examples_itself() -> None:
    """Else the agreement above would hold vacuously, every message going to the reference."""
    taken = [name for name, raw, _d, _a, expected in EXAMPLES
             if expected[0].startswith("ok") and raw.startswith(b"{") and accept(json.loads(raw)) is not None]
    valid = [name for name, raw, _d, _a, expected in EXAMPLES if expected[0].startswith("ok") and raw[:1] == b"{"]
    assert taken == valid and len(valid) >= 9


def test_the_hot_path_leaves_what_it_cannot_read_exactly_to_the_model() -> None:
    # orjson reads 2**64 as a float, the json module as an int: stored as sent only if the reference decides.
    raw = b'{"device_id":"cam-1","kind":"cctv","ts":1793530740000,"metrics":{"n":18446744073709551616}}'
    decoded = _both(raw, "cam-1", False)
    assert decoded.accepted[0].metrics == {"n": 18446744073709551616}
    assert type(decoded.accepted[0].metrics["n"]) is int
    assert accept({"device_id": "cam-1\n", "kind": "cctv", "ts": 1793530740000}) is None


RECEIVED_MS = int(RECEIVED.timestamp() * 1000)
WEEK_MS = 7 * 24 * 3600 * 1000
KINDS = ["cctv", "air_monitor", "water_monitor", "wastewater_station", "wifi_ap", "bus_display"]
names = st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=3), max_leaves=8)

# Around the edges of the window: a little older than 7 days, a little more than 5 minutes ahead.
near_received_ms = st.integers(-WEEK_MS - 60_000, 600_000)
valid_values = {
    "device_id": st.one_of(st.just("cam-1"), st.from_regex(r"\A[A-Za-z0-9._-]{1,64}\Z")),
    "kind": st.sampled_from(KINDS),
    "ts": st.one_of(
        near_received_ms.map(lambda ms: RECEIVED_MS + ms),
        st.builds(lambda ms, sep, frac, zone: (RECEIVED + timedelta(milliseconds=ms)).strftime(
            f"%Y-%m-%d{sep}%H:%M:%S") + frac + zone, near_received_ms, st.sampled_from(["T", "t", " "]),
            st.sampled_from(["", ".1", ".123456", ".1234567", ".123456789"]), st.sampled_from(["Z", "z", "+00:00"])),
        st.builds(lambda ms, zone: (RECEIVED + timedelta(milliseconds=ms)).astimezone(zone).isoformat(),
                  near_received_ms, st.timezones().filter(lambda z: z.key != "build/etc/localtime"))),
    "seq": st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    "status": st.sampled_from(["ok", "degraded", "fault"]),
    "checks": st.one_of(st.none(), st.dictionaries(names, st.booleans(), max_size=4)),
    "metrics": st.one_of(st.none(), st.dictionaries(names, st.integers(-(2**63), 2**64 - 1)
                                                    | st.floats(allow_nan=False, allow_infinity=False), max_size=4)),
}
valid_values["measurements"] = valid_values["metrics"]
# What a field may hold instead: wrong types, values at the parsers' limits, near misses of the contract.
odd_numbers = st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**70, 2.0**63, -(2.0**63), 1e19, 9.2e18, -0.0, 1e308,
                               True, False, "1", None, 1.5, -1])
wrong_values = {
    "device_id": st.one_of(st.text(max_size=70), st.sampled_from(["cam-1\n", "c" * 65, "", "cam/1", "cam 1"]),
                           st.integers(), st.none()),
    "kind": st.one_of(st.text(max_size=12), st.sampled_from(["CCTV", "cctv ", "camera"]), st.integers(), st.none()),
    "ts": st.one_of(st.integers(), st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none(),
                    st.text(max_size=40), st.sampled_from(["2026-11-01T18:59:00", "2026-11-01T18:59:00+0700",
                                                           "2026-11-01T18:59:00.Z", "2026-11-31T10:00:00Z",
                                                           "2026-W44-7T10:00:00Z", "2026-11-01T24:00:00Z",
                                                           str(RECEIVED_MS), f"{RECEIVED_MS}.0"])),
    "seq": st.one_of(st.integers(), st.booleans(), st.floats(), st.text(max_size=3), odd_numbers),
    "status": st.one_of(st.none(), st.text(max_size=8), st.integers(), st.sampled_from(["OK", "Fault"])),
    "checks": st.one_of(st.dictionaries(names, json_values, max_size=3), json_values,
                        st.dictionaries(names, odd_numbers, min_size=1, max_size=2)),
    "metrics": st.one_of(json_values, st.dictionaries(names, odd_numbers | json_values, min_size=1, max_size=3)),
}
wrong_values["measurements"] = wrong_values["metrics"]
heartbeats = st.fixed_dictionaries(
    {k: valid_values[k] for k in ("device_id", "kind", "ts")},
    optional={k: valid_values[k] for k in ("seq", "status", "checks", "metrics", "measurements")})


@st.composite
def near_valid(draw: st.DrawFn) -> dict:
    """A valid heartbeat, and in two cases of three one thing wrong with it."""
    body = draw(heartbeats)
    change = draw(st.sampled_from(["none", "field", "drop", "unknown"]))
    if change == "field":
        field = draw(st.sampled_from(sorted(wrong_values)))
        body[field] = draw(wrong_values[field])
    elif change == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif change == "unknown":
        body[draw(st.sampled_from(["measurments", "", "extra", "Device_id"]))] = draw(json_values)
    return body


def _encode(body: object, ascii_only: bool, spaced: bool) -> bytes:
    separators = (", ", ": ") if spaced else (",", ":")
    return json.dumps(body, ensure_ascii=ascii_only, allow_nan=True, separators=separators).encode()


@settings(max_examples=1500, deadline=None)
@given(near_valid(), st.booleans(), st.booleans(), st.sampled_from(["cam-1", None, ""]))
def test_near_valid_heartbeats_decode_the_same_on_both_paths(body: dict, ascii_only: bool, spaced: bool,
                                                             device_id: str | None) -> None:
    _both(_encode(body, ascii_only, spaced), device_id, False)


@settings(max_examples=400, deadline=None)
@given(st.lists(near_valid(), max_size=4), st.booleans(), st.sampled_from(["cam-1", None]))
def test_gateway_arrays_decode_the_same_on_both_paths(bodies: list, allow_array: bool,
                                                      device_id: str | None) -> None:
    _both(_encode(bodies, True, False), device_id, allow_array, Limits(max_gateway_heartbeats=3))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: _encode(v, False, False))), st.booleans())
def test_random_payloads_decode_the_same_on_both_paths(raw: bytes, allow_array: bool) -> None:
    _both(raw, "cam-1", allow_array, Limits(max_message_bytes=200))


LITERALS = [b"1e999", b"-1e999", b"18446744073709551615", b"18446744073709551616", b"-9223372036854775809",
            b"9223372036854775807", b"1.5", b"-0.0", b"0", b"-1", b"NaN", b"Infinity", b"1E400", b"0.1e-400",
            b'"\\ud800"', b'"cam-1\\n"', b'"ok"', b'"fault"', b"\xef\xbb\xbf1", b"true", b"false", b"null", b"[]",
            b"{}"]


@pytest.mark.parametrize("field", ["ts", "seq", "metrics", "measurements", "checks", "status", "device_id", "kind"])
@pytest.mark.parametrize("literal", LITERALS, ids=[repr(literal)[2:-1] for literal in LITERALS])
def test_values_at_the_edges_decode_the_same(literal: bytes, field: str) -> None:
    value = b'{"x":' + literal + b"}" if field in ("metrics", "measurements", "checks") else literal
    body = {"device_id": b'"cam-1"', "kind": b'"cctv"', "ts": b"1793530740000", field: value}
    raw = b"{" + b",".join(b'"' + k.encode() + b'":' + v for k, v in body.items()) + b"}"
    _both(raw, "cam-1", False)
