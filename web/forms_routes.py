"""Form submissions and the full report over HTTP. Reads are open unless CITYKPI_API_PUBLIC_READS=false
(web/read_access.py); every write needs an agency's token, is limited in size, and is recorded in the audit log
whatever its outcome."""

import asyncio
import logging
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import psycopg
from fastapi import FastAPI, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from base.periods import parse_period
from base.settings import Settings
from catalog import Catalog
from forms.provenance import file_name, printable
from forms.store import store_submission
from forms.submission import SubmissionError, SubmissionLimits, parse_submission
from report.build import build_report
from report.formats import render
from web.read_access import REALM, bearer
from web.tokens import TokenHolder, audit, find_token

log = logging.getLogger(__name__)
Connections = Callable[[], AbstractContextManager[psycopg.Connection]]

SUFFIX_FOR = {"application/json": ".json", "text/csv": ".csv",
              "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx"}
# The body is read as bytes (to bound it before parsing), so FastAPI cannot describe it: this does, for /docs
# and for clients generated from the OpenAPI document.
SUBMISSION_BODY = {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["period", "agency", "indicators"],
        "properties": {
            "period": {"type": "string", "description": "2026, 2026-Q1 or 2026-03"},
            "agency": {"type": "string", "description": "agency id or its Vietnamese name"},
            "reporting_unit": {"type": "string"},
            "indicators": {"type": "object", "description": "indicator code: {values: {input: value}}",
                           "additionalProperties": {"type": "object", "properties": {"values": {"type": "object"}}}}},
    }, "example": {"period": "2026", "agency": "so-yt-gia-lai", "reporting_unit": "", "indicators": {
        "10": {"values": {"residents_with_electronic_record": 1450000, "population": 3120000}}}}},
    "text/csv": {"schema": {"type": "string", "description": "the CSV template (citykpi forms template)"}},
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
        "schema": {"type": "string", "format": "binary", "description": "the XLSX template, filled in"}},
}}


def add_forms_routes(app: FastAPI, connection: Connections, write_connection: Connections,
                     settings: Settings, catalog: Catalog, now: Callable[[], datetime], reads: list[Depends],
                     read_responses: dict) -> None:
    """`connection` reads (read-only sessions); `write_connection` stores submissions and audit rows."""

    @app.get("/v1/report", dependencies=reads, responses=read_responses,
             summary="All indicators of the set for a period (json, csv or md)")
    def get_report(period: str = Query(description="2026, 2026-Q1 or 2026-03"),
                   format: str = Query("json", pattern="^(json|csv|md)$")) -> Response:
        try:
            chosen = parse_period(period)
        except ValueError as exc:
            return JSONResponse({"error": "bad_parameter", "parameter": "period", "detail": str(exc)}, 400)
        with connection() as conn:
            rows = build_report(conn, catalog, chosen, settings=settings, now=now())
        text = render(rows, catalog, chosen, format)
        media = {"json": "application/json", "csv": "text/csv", "md": "text/markdown"}[format]
        return PlainTextResponse(text, media_type=f"{media}; charset=utf-8")

    # At most this many submissions are read and checked at once: each holds its body and its parse in memory.
    uploads = asyncio.Semaphore(settings.api_max_concurrent_uploads)
    limits = SubmissionLimits.from_settings(settings)

    # `bearer` only describes the scheme in the OpenAPI document: `submit` checks the token itself, first, so
    # that it can audit a refusal and read no body for it.
    @app.post("/v1/forms/submissions", status_code=201, openapi_extra={"requestBody": SUBMISSION_BODY},
              dependencies=[Security(bearer)],
              summary="Submit a filled-in template (CSV, JSON or XLSX body); needs the agency's bearer token")
    async def submit(request: Request, x_submitted_by: str | None = Header(None),
                     x_filename: str | None = Header(None)) -> JSONResponse:
        attempt = _Attempt(write_connection, request.client.host if request.client else "unknown", x_filename)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer_token = token.strip() if scheme.lower() == "bearer" else ""
        attempt.holder = await run_in_threadpool(_find_token, bearer_token)
        if attempt.holder is None or attempt.holder.revoked:
            challenge = REALM + (', error="invalid_token"' if bearer_token else "")
            return await attempt.answer(401, {"error": "unauthorized", "detail": "a valid agency token is required "
                                              "(Authorization: Bearer …); ask the administrator: citykpi tokens "
                                              "create"}, {"WWW-Authenticate": challenge})
        try:
            # Headers are ASCII; names with diacritics arrive percent-encoded as UTF-8.
            who = printable(unquote(x_submitted_by), "X-Submitted-By") if x_submitted_by else None
            name = file_name(unquote(x_filename)) if x_filename else None
        except ValueError as exc:
            return await attempt.answer(400, {"error": "bad_header", "detail": str(exc)})
        suffix = SUFFIX_FOR.get(request.headers.get("content-type", "").split(";")[0].strip())
        if suffix is None:
            return await attempt.answer(415, {"error": "unsupported_media_type",
                                              "detail": f"send one of {', '.join(SUFFIX_FOR)}"})
        if uploads.locked():
            return await attempt.answer(429, {"error": "busy", "detail": f"{settings.api_max_concurrent_uploads} "
                                              "submissions are being read; send again in a moment"},
                                        {"Retry-After": "5"})
        async with uploads:
            try:
                async with asyncio.timeout(settings.api_body_timeout_s):
                    body = await _bounded_body(request, settings.api_max_body_bytes)
            except TimeoutError:
                return await attempt.answer(408, {"error": "timeout", "detail": "the body did not arrive within "
                                                  f"{settings.api_body_timeout_s:g} s"})
            if body is None:
                return await attempt.answer(413, {"error": "too_large",
                                                  "detail": f"body over {settings.api_max_body_bytes} bytes"})
            name = name or f"submission{suffix}"
            path_name = name if name.endswith(suffix) else name + suffix
            return await run_in_threadpool(_submit, attempt, body, path_name, who)

    def _find_token(token: str) -> TokenHolder | None:
        with write_connection() as conn:
            return find_token(conn, token) if token else None

    def _submit(attempt: _Attempt, body: bytes, name: str, submitted_by: str | None) -> JSONResponse:
        holder = attempt.holder
        assert holder is not None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(body)
            try:
                submission = parse_submission(path, catalog, limits)
            except SubmissionError as exc:
                return attempt.record(*_refused(exc, holder, path, catalog))
            except Exception as exc:  # a file no check foresaw: refused and logged, never a 500
                log.exception("submission %s could not be read", name)
                return attempt.record(422, {"error": "invalid_submission", "detail": "the file could not be read "
                                            f"({exc.__class__.__name__}); nothing stored"})
        refused = _refusal(holder, submission.agency_id, list(submission.indicators), catalog)
        if refused:
            return attempt.record(403, {"error": "forbidden", "detail": refused})
        try:
            with write_connection() as conn:
                result = store_submission(conn, submission, catalog_id=catalog.id, file_name=name, content=body,
                                          submitted_by=f"{submitted_by or 'api'} (token #{holder.token_id})",
                                          channel="api", now=now())
        except SubmissionError as exc:
            return attempt.record(*_refused(exc, holder, path, catalog))
        return attempt.record(201, {"period": submission.period.label, "agency": submission.agency_id,
                                    "stored": result.stored, "unchanged": result.unchanged,
                                    "superseded": result.superseded})


@dataclass
class _Attempt:
    """One write attempt, answered once and audited once, whatever it carried."""

    write_connection: Connections
    remote: str
    file: str | None
    holder: TokenHolder | None = None

    async def answer(self, status: int, payload: dict, headers: dict | None = None) -> JSONResponse:
        return await run_in_threadpool(self.record, status, payload, headers)

    def record(self, status: int, payload: dict, headers: dict | None = None) -> JSONResponse:
        with self.write_connection() as conn:
            audit(conn, action="forms.submit", remote=self.remote, status=status, holder=self.holder,
                  detail={k: v for k, v in payload.items() if k != "problems"} | {"file": self.file})
        return JSONResponse(payload, status, headers=headers)


def _refused(exc: SubmissionError, holder: TokenHolder, path: Path, catalog: Catalog) -> tuple[int, dict]:
    """The answer to a file that was read and refused."""
    # Whose file it is comes before whether its figures are right: a token of one agency learns nothing about
    # another agency's indicators from the error.
    if exc.agency_id is not None and exc.agency_id != holder.agency_id:
        return 403, {"error": "forbidden", "detail": _refusal(holder, exc.agency_id, [], catalog)}
    if exc.refused:
        return 403, {"error": "forbidden", "detail": "; ".join(p.replace(str(path), path.name) for p in exc.refused)}
    problems = [p.replace(str(path), path.name) for p in exc.problems]
    return 422, {"error": "invalid_submission", "detail": f"{len(problems)} problem(s), nothing stored",
                 "problems": problems}


def _refusal(holder: TokenHolder, agency_id: str, codes: list[str], catalog: Catalog) -> str | None:
    def name(agency: str) -> str:
        found = catalog.agency(agency)
        return found.name_vi if found else agency

    if agency_id != holder.agency_id:
        return f"a token of {name(holder.agency_id)} cannot submit for {name(agency_id)}"
    outside = [c for c in codes if not holder.may_submit(c)]
    if outside:
        return f"this token of {name(holder.agency_id)} is not allowed indicator(s) {', '.join(outside)}"
    return None


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes — read no further than that."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            return None
    return bytes(received)
