"""Storing submissions with their provenance, and reading the current ones and their history."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from forms.submission import Submission, SubmissionError


@dataclass(frozen=True)
class StoreResult:
    stored: list[str]
    unchanged: list[str]
    superseded: list[str]

    def __str__(self) -> str:
        return (f"{len(self.stored)} indicator(s) stored ({len(self.superseded)} superseding an earlier "
                f"submission), {len(self.unchanged)} unchanged")


def store_submission(conn: psycopg.Connection, submission: Submission, *, catalog_id: str, file_name: str,
                     content: bytes, submitted_by: str, channel: str, now: datetime) -> StoreResult:
    """One transaction. Indicators whose values equal the current submission's are left as they are.

    A resubmission replaces the current one whole, so it must give every input that one gave: otherwise
    SubmissionError names what is missing and nothing is stored (an input left empty, or a cell a spreadsheet
    tool wrote as NaN, would silently drop a figure from the period)."""
    stored, unchanged, superseded, incomplete = [], [], [], []
    with conn.transaction():
        file_id = None
        for code, entry in sorted(submission.indicators.items(), key=lambda kv: (len(kv[0]), kv[0])):
            key = (catalog_id, code, submission.period.label, submission.agency_id, submission.reporting_unit)
            current = conn.execute(
                "SELECT id, inputs FROM form_submissions WHERE catalog_id = %s AND indicator_code = %s"
                " AND period = %s AND agency_id = %s AND reporting_unit = %s AND superseded_at IS NULL"
                " FOR UPDATE", key).fetchone()
            if current is not None and current["inputs"] == entry.values:
                unchanged.append(code)
                continue
            if current is not None and (lacking := sorted(set(current["inputs"]) - set(entry.values))):
                incomplete.append(f"indicator {code}: this resubmission lacks {', '.join(lacking)}, which the "
                                  f"current submission #{current['id']} gives; give every input again")
                continue
            if file_id is None:
                file_id = conn.execute(
                    "INSERT INTO form_files (file_name, sha256, content, submitted_by, submitted_at, channel)"
                    " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    (file_name, hashlib.sha256(content).hexdigest(), content, submitted_by, now, channel),
                ).fetchone()["id"]
            if current is not None:
                # Retire the old version first: the partial unique index allows one current row.
                conn.execute("UPDATE form_submissions SET superseded_at = %s WHERE id = %s", (now, current["id"]))
            new_id = conn.execute(
                "INSERT INTO form_submissions (file_id, catalog_id, indicator_code, period, agency_id,"
                " reporting_unit, inputs, submitted_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (file_id, *key, Jsonb(entry.values), now)).fetchone()["id"]
            if current is not None:
                conn.execute("UPDATE form_submissions SET superseded_by = %s WHERE id = %s", (new_id, current["id"]))
                superseded.append(code)
            stored.append(code)
        if incomplete:
            raise SubmissionError(incomplete, agency_id=submission.agency_id)
    return StoreResult(stored, unchanged, superseded)


def current_submissions(conn: psycopg.Connection, catalog_id: str, period: str) -> list[dict]:
    return conn.execute(
        "SELECT s.id, s.indicator_code, s.agency_id, s.reporting_unit, s.inputs, s.submitted_at, f.submitted_by,"
        " f.sha256 FROM form_submissions s JOIN form_files f ON f.id = s.file_id"
        " WHERE s.catalog_id = %s AND s.period = %s AND s.superseded_at IS NULL ORDER BY s.id",
        (catalog_id, period)).fetchall()


def history(conn: psycopg.Connection, catalog_id: str, code: str, period: str) -> list[dict]:
    """Every version, oldest first, with the file it came in and what replaced it."""
    return conn.execute(
        "SELECT s.id, s.agency_id, s.reporting_unit, s.inputs, s.submitted_at, s.superseded_by, f.submitted_by,"
        " f.file_name, f.sha256, f.channel FROM form_submissions s JOIN form_files f ON f.id = s.file_id"
        " WHERE s.catalog_id = %s AND s.indicator_code = %s AND s.period = %s ORDER BY s.id",
        (catalog_id, code, period)).fetchall()
