"""HTML routes of `citykpi serve`: the report page at `/`, each sensor indicator's evidence, each key point's
history. The pages with a map carry a Content-Security-Policy (`map_parts.content_security_policy`)."""

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
from base.time import local_midnight
from base.vocabulary import ID_PATTERN
from catalog import Catalog, UnknownIndicator
from kpi.coverage import completed_end
from kpi.export import evidence_dicts
from kpi.indicators import FormIndicator, sensor_indicator, sensor_value
from registry.queries import devices_bound_during, point_history
from registry.tree import tree_for_period
from report.build import build_report
from web.pages.evidence_map import map_entries
from web.pages.evidence_page import render_evidence_page
from web.pages.map_parts import content_security_policy, tile_layer
from web.pages.point_page import render_point_page, render_point_problem
from web.pages.report_page import render_report_page
from web.pages.unit_map import render_unit_map, unit_entries

TREND_PERIODS = 5
# The overview map's indicator unless the page is asked for another: #17, the cameras at security points.
DEFAULT_MAP_INDICATOR = "17"


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

    tiles = tile_layer(settings)
    policy = {"Content-Security-Policy": content_security_policy(settings)}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False, dependencies=reads)
    def report_page(period: str | None = Query(None, description="2026, 2026-Q1 or 2026-03"),
                    map_indicator: str = Query(DEFAULT_MAP_INDICATOR, description="the overview map's indicator")
                    ) -> HTMLResponse:
        try:
            chosen = period_of(period)
        except _BadPage as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=400)
        try:
            mapped = sensor_indicator(catalog, map_indicator)
        except (UnknownIndicator, FormIndicator) as exc:
            return HTMLResponse(f"<p>map_indicator: {escape(str(exc))}</p>", status_code=400)
        at = now()
        trail = _trail(chosen, TREND_PERIODS)
        with connection() as conn:
            reports = {p.label: build_report(conn, catalog, p, settings=settings, now=at) for p in trail}
            # The report's rows carry no points: one evidence read of the mapped indicator gives the per-unit
            # values and the points' places together.
            mapped_value = sensor_value(conn, mapped.code, chosen.start, chosen.end, settings=settings,
                                        catalog=catalog, now=at)
            tree = tree_for_period(conn, chosen.start, chosen.end, settings.zone)
        rows = reports[chosen.label]
        trends = {row.code: [(p.label, next(r.value for r in reports[p.label] if r.code == row.code))
                             for p in trail] for row in rows}
        years = [str(at.astimezone(settings.zone).year - k) for k in range(TREND_PERIODS)]
        units, outside = unit_entries(mapped_value.evidence, tree)
        unit_map = render_unit_map(catalog.sensor_indicators(), mapped, chosen.label, units, outside, tiles)
        return HTMLResponse(render_report_page(
            catalog, chosen, rows, trends,
            lambda code: f"/kpi/{code}/evidence?period={chosen.label}", years, unit_map), headers=policy)

    @app.get("/kpi/{code}/evidence", response_class=HTMLResponse, include_in_schema=False, dependencies=reads)
    def evidence_page(code: str, period: str | None = None) -> HTMLResponse:
        try:
            chosen = period_of(period)
        except _BadPage as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=400)
        at = now()
        try:
            with connection() as conn:
                value = sensor_value(conn, code, chosen.start, chosen.end, settings=settings, catalog=catalog,
                                     now=at, devices=True)
                bound = _bound_during(conn, catalog, code, chosen, settings, at)
        except UnknownIndicator as exc:
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=404)
        except FormIndicator as exc:
            # Submitted figures have no heartbeats behind them: the report page shows their files instead.
            return HTMLResponse(f"<p>{escape(str(exc))}</p>", status_code=404)
        points = evidence_dicts(value)
        return HTMLResponse(render_evidence_page(value, points, f"/?period={chosen.label}",
                                                 map_entries=map_entries(points, bound), tiles=tiles), headers=policy)

    @app.get("/points/{point_id}", response_class=HTMLResponse, include_in_schema=False, dependencies=reads)
    def point_page(point_id: str) -> HTMLResponse:
        if not ID_PATTERN.fullmatch(point_id):
            return HTMLResponse(render_point_problem(422, f"“{point_id}” không phải là mã điểm: mã điểm gồm 1 đến 64 "
                                                     "ký tự A–Z, a–z, 0–9, '.', '_' hoặc '-'."), status_code=422)
        with connection() as conn:
            history = point_history(conn, point_id)
        if history is None:
            return HTMLResponse(render_point_problem(404, f"Danh mục điểm trọng yếu không có điểm “{point_id}”."),
                                status_code=404)
        return HTMLResponse(render_point_page(point_id, history, settings.zone), headers=policy)


def _bound_during(conn: psycopg.Connection, catalog: Catalog, code: str, period: Period, settings: Settings,
                  now: datetime) -> dict[str, list[str]]:
    """The devices of the indicator's kind bound to each point in the hours of the period that have ended."""
    start = local_midnight(period.start, settings.zone)
    end = completed_end(start, local_midnight(period.end, settings.zone), now)
    if end <= start:
        return {}
    return devices_bound_during(conn, catalog.indicator(code).sensor.device_kind, start, end)


class _BadPage(ValueError):
    pass


