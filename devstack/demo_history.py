"""History for the report page's trends (the 5 periods ending with the one chosen): months of heartbeats, one an
hour per device, and the shipped example submissions for each month.

The heartbeats go straight to ingest's sink — decoded by the one decode stage, written and checked against the
registry as the brokers' messages are — but not over MQTT, so that months of them take seconds; the demo says so.
"""

import json
import random
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from base.periods import Period, parse_period
from catalog import Catalog
from devstack.demo_fleet import device_profiles
from forms.store import store_submission
from forms.submission import SubmissionError, parse_submission
from ingest.decode import DecodeStage, Limits
from ingest.sink import BatchResult, HeartbeatSink
from simulators.fleet import heartbeats

EXAMPLE_FORMS = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "forms"
# The report page draws the trend of 5 periods (web/pages/routes.py, TREND_PERIODS).
HISTORY_MONTHS = 5
HISTORY_INTERVAL_S = 3600
# A month's failures last days, not hours: an outage past 10 % of the month's hours uncovers its point.
MONTHLY_TROUBLE_HOURS = (24, 240)
# Each month before the current one gives its numerators this much less (2 % a month): a province improving.
MONTHLY_GROWTH = 0.02
HISTORY_SOURCE = "demo-history"
BATCH = 5000


def months_ending(today: date, count: int = HISTORY_MONTHS) -> list[Period]:
    """The `count` months ending with `today`'s, oldest first."""
    months = [parse_period(f"{today.year}-{today.month:02d}")]
    while len(months) < count:
        months.insert(0, months[0].previous())
    return months


def write_heartbeat_history(database_url: str, devices: list, months: list[Period], start: datetime,
                            end: datetime, *, rng: random.Random,
                            advance: Callable[[int], None] = lambda n: None) -> BatchResult:
    """One heartbeat an hour per device over [start, end), each month's failures drawn anew (`device_profiles`,
    troubles of days), each heartbeat received a second after its time. `advance` hears of the device-hours
    done, silent ones included."""
    decode = DecodeStage(Limits())
    sink = HeartbeatSink(database_url)
    totals = BatchResult()
    batch = []
    try:
        for month in months:
            month_start = max(start, datetime.combine(month.start, datetime.min.time(), tzinfo=start.tzinfo))
            month_end = min(end, datetime.combine(month.end, datetime.min.time(), tzinfo=start.tzinfo))
            if month_start >= month_end:
                continue
            hours = (month_end - month_start).total_seconds() / 3600
            for profile in device_profiles(devices, month_start, hours, rng, interval_s=HISTORY_INTERVAL_S,
                                           trouble_hours=MONTHLY_TROUBLE_HOURS):
                # No jitter: one heartbeat in every hour, unless the device's trouble says otherwise.
                for payload in heartbeats(profile, month_start, month_end, rng, jitter=0):
                    batch.append(decode.message(
                        source=HISTORY_SOURCE, origin=f"devices/{profile.device_id}/heartbeat",
                        payload=json.dumps(payload, ensure_ascii=False).encode(),
                        received_at=datetime.fromisoformat(payload["ts"]) + timedelta(seconds=1),
                        expected_device_id=profile.device_id, allow_array=False, acknowledge=_nothing))
                    if len(batch) >= BATCH:
                        totals.add(sink.write(batch))
                        batch = []
                advance(int(hours))
        if batch:
            totals.add(sink.write(batch))
    finally:
        sink.close()
    return totals


def _nothing() -> None:
    """Nothing to acknowledge: no broker delivered these."""


def submit_examples(conn: psycopg.Connection, catalog: Catalog, period: Period, *,
                    numerator_share: float = 1.0) -> tuple[int, list[str]]:
    """The shipped example submissions relabelled to `period`, each numerator input × `numerator_share` (rounded
    down, so never above its denominator); the files stored, and the first problem of each that does not fit
    the period (its agency not in force then); (0, []) when installed without the source tree."""
    stored, problems = 0, []
    with tempfile.TemporaryDirectory(prefix="citykpi-forms-") as folder:
        for example in sorted(EXAMPLE_FORMS.glob("*.json")):
            document = json.loads(example.read_text(encoding="utf-8"))
            document["period"] = period.label
            for code, entry in document["indicators"].items():
                roles = {i.id: i.role for i in catalog.indicator(code).inputs}
                entry["values"] = {k: int(v * numerator_share) if roles.get(k) == "numerator" else v
                                   for k, v in entry["values"].items()}
            relabelled = Path(folder) / example.name
            relabelled.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
            try:
                submission = parse_submission(relabelled, catalog)
            except SubmissionError as exc:
                problems.append(exc.problems[0])
                continue
            store_submission(conn, submission, catalog_id=catalog.id, file_name=example.name,
                             content=relabelled.read_bytes(), submitted_by="citykpi demo", channel="cli",
                             now=datetime.now(UTC))
            stored += 1
    return stored, problems


def submit_monthly_examples(conn: psycopg.Connection, catalog: Catalog, months: list[Period]) -> tuple[int, list[str]]:
    """`submit_examples` for each month, the numerators 2 % lower for each month before the last."""
    stored, problems = 0, []
    for back, month in enumerate(reversed(months)):
        done, unfit = submit_examples(conn, catalog, month, numerator_share=1 - MONTHLY_GROWTH * back)
        stored += done
        problems += [f"{month.label}: {p}" for p in unfit]
    return stored, problems
