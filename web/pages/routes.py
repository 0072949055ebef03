"""HTML routes of `citykpi serve`: the report page at `/` and each sensor indicator's evidence."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from html import escape

import psycopg
from fastapi import FastAPI, Query
from fastapi.params import Depends
from fastapi.responses import HTMLResponse

from base.periods import Period, parse_period
from base.settings import Settings
from catalog import Catalog, UnknownIndicator
from kpi.export import evidence_dicts
from kpi.indicators import FormIndicator, sensor_value
from report.build import build_report
from web.pages.evidence_page import render_evidence_page
from web.pages.report_page import render_report_page

TREND_PERIODS = 5


def _trail(period: Period, count: int) -> list[Period]:
    """`count` periods ending with `period`, oldest first."""
    periods = [period]
    while len(periods) < count and (previous := periods[0].previous()) is not None:
        periods.insert(0, previous)
    return periods


def add_page_routes(app: FastAPI, connection: Callable[[], AbstractContextManager[psycopg.Connection]],
                    settings: Settings, catalog: Catalog, now: Callable[[], datetime], reads: list[Depends]) -> None:
    def period_of(text: str | None) -> Period:
        try:
            return parse_period(text or str(now().astimezone(settings.zone).year))
        except ValueError as exc:
            raise _BadPage(str(exc)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, dependencies=reads)
    def report_page(period: str | None = Query(None, description="2026, 2026-Q1 or 2026-03")) -> HTMLResponse:
        try:
            chosen = period_of(period)
        except _BadPage as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=400)
        trail = _trail(chosen, TREND_PERIODS)
        with connection() as conn:
            reports = {p.label: build_report(conn, catalog, p, settings=settings, now=now()) for p in trail}
        rows = reports[chosen.label]
        trends = {row.code: [(p.label, next(r.value for r in reports[p.label] if r.code == row.code))
                             for p in trail] for row in rows}
        years = [str(now().astimezone(settings.zone).year - k) for k in range(TREND_PERIODS)]
        return HTMLResponse(render_report_page(
            catalog, chosen, rows, trends,
            lambda code: f"/kpi/{code}/evidence?period={chosen.label}", years))

    @app.get("/kpi/{code}/evidence", response_class=HTMLResponse, include_in_schema=False, dependencies=reads)
    def evidence_page(code: str, period: str | None = None) -> HTMLResponse:
        try:
            chosen = period_of(period)
        except _BadPage as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=400)
        try:
            with connection() as conn:
                value = sensor_value(conn, code, chosen.start, chosen.end, settings=settings, catalog=catalog,
                                     now=now(), devices=True)
        except UnknownIndicator as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=404)
        except FormIndicator as exc:
            # Submitted figures have no heartbeats behind them: the report page shows their files instead.
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=404)
        return HTMLResponse(render_evidence_page(value, evidence_dicts(value), f"/?period={chosen.label}"))


class _BadPage(ValueError):
    pass


