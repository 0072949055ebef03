"""Form submissions and the full report over HTTP. Reads are open unless CITYKPI_API_PUBLIC_READS=false
(web/read_access.py); every write needs an agency's token, is limited in size, and is recorded in the audit log
whatever its outcome."""

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import psycopg
from fastapi import FastAPI, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.params import Depends
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from base.db import connect
from base.periods import parse_period
from base.settings import Settings
from catalog import Catalog
from forms.store import store_submission
from forms.submission import SubmissionError, parse_submission
from report.build import build_report
from report.formats import render
from web.read_access import REALM, bearer
from web.tokens import TokenHolder, audit, holder_of

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


def add_forms_routes(app: FastAPI, database_url: str,
                     connection: Callable[[], AbstractContextManager[psycopg.Connection]],
                     settings: Settings, catalog: Catalog, now: Callable[[], datetime], reads: list[Depends],
                     read_responses: dict) -> None:

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

    # `bearer` only describes the scheme in the OpenAPI document: _submit checks the token itself, to audit refusals.
    @app.post("/v1/forms/submissions", status_code=201, openapi_extra={"requestBody": SUBMISSION_BODY},
              dependencies=[Security(bearer)],
              summary="Submit a filled-in template (CSV, JSON or XLSX body); needs the agency's bearer token")
    async def submit(request: Request, x_submitted_by: str | None = Header(None),
                     x_filename: str | None = Header(None)) -> JSONResponse:
        remote = request.client.host if request.client else "unknown"
        body = await _bounded_body(request, settings.api_max_body_bytes)
        # Headers are ASCII; names with diacritics arrive percent-encoded as UTF-8.
        who = unquote(x_submitted_by) if x_submitted_by else None
        filename = unquote(x_filename) if x_filename else None
        return await run_in_threadpool(_submit, request.headers, body, remote, who, filename)

    def _submit(headers, body: bytes | None, remote: str, submitted_by: str | None,
                filename: str | None) -> JSONResponse:
        with connect(database_url) as conn:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            holder = holder_of(conn, token.strip()) if scheme.lower() == "bearer" else None

            def answer(status: int, payload: dict, headers: dict | None = None) -> JSONResponse:
                audit(conn, action="forms.submit", remote=remote, status=status, holder=holder,
                      detail={k: v for k, v in payload.items() if k != "problems"} | {"file": filename})
                return JSONResponse(payload, status, headers=headers)

            if holder is None:
                challenge = REALM + (', error="invalid_token"' if scheme.lower() == "bearer" and token.strip() else "")
                return answer(401, {"error": "unauthorized", "detail": "a valid agency token is required "
                                    "(Authorization: Bearer …); ask the administrator: citykpi tokens create"},
                              {"WWW-Authenticate": challenge})
            if body is None:
                return answer(413, {"error": "too_large", "detail": f"body over {settings.api_max_body_bytes} bytes"})
            suffix = SUFFIX_FOR.get(headers.get("content-type", "").split(";")[0].strip())
            if suffix is None:
                return answer(415, {"error": "unsupported_media_type",
                                    "detail": f"send one of {', '.join(SUFFIX_FOR)}"})
            name = Path(filename).name if filename else f"submission{suffix}"
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / (name if name.endswith(suffix) else name + suffix)
                path.write_bytes(body)
                try:
                    submission = parse_submission(path, catalog)
                except SubmissionError as exc:
                    # Whose file it is comes before whether its figures are right: a token of one agency
                    # learns nothing about another agency's indicators from the error.
                    if exc.agency_id is not None and exc.agency_id != holder.agency_id:
                        return answer(403, {"error": "forbidden",
                                            "detail": _refusal(holder, exc.agency_id, [], catalog)})
                    if exc.refused:
                        return answer(403, {"error": "forbidden", "detail": "; ".join(
                            p.replace(str(path), path.name) for p in exc.refused)})
                    problems = [p.replace(str(path), path.name) for p in exc.problems]
                    return answer(422, {"error": "invalid_submission", "detail": f"{len(problems)} problem(s), "
                                        "nothing stored", "problems": problems})
            refused = _refusal(holder, submission.agency_id, list(submission.indicators), catalog)
            if refused:
                return answer(403, {"error": "forbidden", "detail": refused})
            result = store_submission(conn, submission, catalog_id=catalog.id, file_name=path.name, content=body,
                                      submitted_by=f"{submitted_by or 'api'} (token #{holder.token_id})",
                                      channel="api", now=now())
            return answer(201, {"period": submission.period.label, "agency": submission.agency_id,
                                "stored": result.stored, "unchanged": result.unchanged,
                                "superseded": result.superseded})


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
