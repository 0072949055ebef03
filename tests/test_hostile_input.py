"""Hostile input: whatever bytes arrive, the decoder and the submission parser answer with an accepted value
or a clean rejection naming the reason — never an exception, never a silent drop."""

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import load_catalog
from forms.submission import SubmissionError, parse_submission
from ingest.decode import Limits, decode_message

RECEIVED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
REASONS = {"too_large", "not_utf8", "not_json", "schema", "too_many", "device_mismatch", "ts_future", "ts_too_old"}
CATALOG = load_catalog()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)

near_heartbeats = st.fixed_dictionaries(
    {"device_id": st.one_of(st.just("cam-1"), st.text(max_size=70)),
     "kind": st.one_of(st.sampled_from(["cctv", "air_monitor", "wifi_ap"]), st.text(max_size=12)),
     "ts": st.one_of(st.integers(), st.text(max_size=40), st.just("2026-11-01T18:59:00+07:00"), st.floats())},
    optional={"seq": st.one_of(st.integers(), st.text()), "status": st.text(max_size=10),
              "checks": json_values, "metrics": json_values, "measurements": json_values})


def _decode(raw: bytes, allow_array: bool) -> None:
    decoded = decode_message(raw, received_at=RECEIVED, expected_device_id="cam-1", allow_array=allow_array,
                             limits=Limits(max_message_bytes=4096))
    assert decoded.accepted or decoded.rejected  # nothing vanishes
    assert {r.reason for r in decoded.rejected} <= REASONS
    for heartbeat in decoded.accepted:
        assert heartbeat.device_id == "cam-1"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.booleans())
def test_random_bytes_are_answered_never_raised(raw: bytes, allow_array: bool) -> None:
    _decode(raw, allow_array)


@settings(max_examples=300, deadline=None)
@given(near_heartbeats, st.booleans())
def test_near_valid_heartbeats_are_accepted_or_rejected_with_a_reason(body: dict, allow_array: bool) -> None:
    _decode(json.dumps(body, allow_nan=True).encode(), allow_array)


def test_deep_nesting_and_huge_numbers_are_rejected_cleanly() -> None:
    deep = b'{"device_id":"cam-1","kind":"cctv","ts":1793530740000,"metrics":' + b"[" * 3000 + b"]" * 3000 + b"}"
    huge = b'{"device_id":"cam-1","kind":"cctv","ts":' + b"9" * 400 + b"}"
    for raw in (deep, huge):
        decoded = decode_message(raw, received_at=RECEIVED, expected_device_id="cam-1", allow_array=False,
                                 limits=Limits(max_message_bytes=65536))
        assert decoded.accepted == [] and len(decoded.rejected) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000), st.sampled_from([".csv", ".json", ".xlsx"]))
def test_any_submission_file_is_parsed_or_refused_with_problems(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = tmp_path / f"submission{suffix}"
    path.write_bytes(raw)
    try:
        parse_submission(path, CATALOG)
    except SubmissionError as exc:
        assert exc.problems and all(p.startswith(str(path)) for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["period", "agency", "reporting_unit", "indicators"]), json_values))
def test_any_json_submission_document_is_parsed_or_refused(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "submission.json"
    path.write_text(json.dumps(document, allow_nan=True), encoding="utf-8")
    try:
        parse_submission(path, CATALOG)
    except SubmissionError as exc:
        assert exc.problems
