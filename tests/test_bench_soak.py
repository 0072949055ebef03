"""The soak benchmark's accounting rests on its messages being what it counts them as."""

import time
from datetime import UTC, datetime

from bench.soak import BAD_REASONS, _bad_message, _good_message
from ingest.decode import Limits, decode_message


def _outcome(raw: bytes) -> list[str]:
    decoded = decode_message(raw, received_at=datetime.now(UTC), expected_device_id="cam-7", allow_array=False,
                             limits=Limits())
    return ["ok"] * len(decoded.accepted) + [r.reason for r in decoded.rejected]


def test_each_bad_message_is_rejected_for_its_reason() -> None:
    assert [_outcome(_bad_message(n, "cam-7")) for n in range(4)] == [[reason] for reason in BAD_REASONS]


def test_a_good_message_is_accepted() -> None:
    assert _outcome(_good_message(1, "cam-7", int(time.time() * 1000))) == ["ok"]
