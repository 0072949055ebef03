import pytest

from ingest.decode import Limits, decode_message
from tests.heartbeat_examples import EXAMPLES, RECEIVED


@pytest.mark.parametrize(("raw", "device_id", "allow_array", "expected"),
                         [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES])
def test_decoder_agrees_with_the_example_table(raw: bytes, device_id: str | None, allow_array: bool,
                                               expected: list[str]) -> None:
    decoded = decode_message(raw, received_at=RECEIVED, expected_device_id=device_id, allow_array=allow_array,
                             limits=Limits())
    outcomes = ["ok" if hb.healthy else "ok:unhealthy" for hb in decoded.accepted]
    outcomes += [r.reason for r in decoded.rejected]
    assert sorted(outcomes) == sorted(expected)


def test_rejection_detail_names_the_field() -> None:
    raw = b'{"device_id":"cam-1","kind":"toaster","ts":1793530740000}'
    decoded = decode_message(raw, received_at=RECEIVED, expected_device_id="cam-1", allow_array=False,
                             limits=Limits())
    assert decoded.rejected[0].detail.startswith("kind: ")
    assert decoded.rejected[0].raw == raw


def test_gateway_array_over_the_limit_is_rejected_whole() -> None:
    raw = b"[" + b",".join([b'{"device_id":"c","kind":"cctv","ts":1793530740000}'] * 3) + b"]"
    decoded = decode_message(raw, received_at=RECEIVED, expected_device_id=None, allow_array=True,
                             limits=Limits(max_gateway_heartbeats=2))
    assert [r.reason for r in decoded.rejected] == ["too_many"]
    assert decoded.accepted == []
