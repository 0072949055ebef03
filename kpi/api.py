"""The read-only KPI HTTP API (`citykpi serve`): catalog with latest values, one indicator, its evidence,
live coverage, and Prometheus /metrics. OpenAPI at /openapi.json, browsable at /docs.

Errors are JSON `{"error", "parameter"?, "detail"}`: 400 naming the bad parameter, 404 for an unknown
indicator code or path.
"""

from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta

import psycopg
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from citykpi.settings import Settings
from kpi.catalog import Catalog, UnknownIndicator, load_catalog
from kpi.export import evidence_dicts
from kpi.forms.periods import MAX_YEAR, MIN_YEAR
from kpi.forms.routes import add_forms_routes
from kpi.indicators import FormIndicator, latest_complete_month, sensor_value
from kpi.live import LiveCoverageCollector, live_coverage
from kpi.point_rollups import PointRollupRefresher
from kpi.read_access import Unauthorized, read_dependencies, unauthorized_response
from kpi.rollups import RollupZoneMismatch
from kpi.web.routes import add_page_routes
from registry.tree import UnknownAdminUnit

# A period longer than this is refused: it would hold a connection for minutes on a large province.
MAX_PERIOD = timedelta(days=400)
FIRST_DAY, LAST_DAY = date(MIN_YEAR, 1, 1), date(MAX_YEAR + 1, 1, 1)


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.parameter = status, error, detail, parameter


class ErrorBody(BaseModel):
    error: str = Field(description="bad_parameter, unknown_indicator, not_found, unauthorized or misconfigured")
    parameter: str | None = Field(None, description="the query or path parameter at fault")
    detail: str


class KpiValue(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    code: str
    name_vi: str
    unit: str
    from_: date = Field(alias="from", description="first local day")
    to: date = Field(description="local day after the last (half-open)")
    numerator: int = Field(description="covered key points")
    denominator: int = Field(description="key points in force in at least one hour of the period")
    value: float | None = Field(description="100 × numerator / denominator, 2 decimals; null without points")
    status: str = Field(description="final, provisional or insufficient_data")
    admin_unit: str | None = Field(None, description="the unit (and its descendants) the value is for")
    theta: str = Field(description="availability a point needs to be covered")


class DeviceHours(BaseModel):
    device_id: str
    up_hours: int


class PointEvidenceBody(BaseModel):
    point_id: str
    name: str
    admin_unit: str | None
    buckets_in_force: int
    buckets_up: int
    availability: str = Field(description="up hours / hours in force, exact")
    availability_percent: float
    covered: bool
    devices: list[DeviceHours]


class EvidenceBody(KpiValue):
    points: list[PointEvidenceBody]


class IndicatorSummary(BaseModel):
    code: str
    name_vi: str
    name_en: str
    unit: str
    layer: str
    kind: str = Field(description="sensor (computed from heartbeats) or form (agency submissions)")
    latest: KpiValue | None = Field(description="the latest complete local month; null for form indicators")


def create_app(settings: Settings, database_url: str, *, catalog: Catalog | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    catalog = catalog or load_catalog()
    now = clock or (lambda: datetime.now(UTC))
    # Read-only by construction: every transaction of the API's sessions is READ ONLY.
    pool = ConnectionPool(database_url, min_size=1, max_size=4, open=False, kwargs={
        "row_factory": dict_row, "autocommit": True, "application_name": "citykpi-api",
        "options": "-c timezone=UTC -c default_transaction_read_only=on"})

    @contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        with pool.connection() as conn:
            yield conn

    refresher = (PointRollupRefresher(database_url, catalog, settings.point_rollup_refresh_s,
                                      lateness_window=settings.lateness_window)
                 if settings.point_rollup_refresh_s > 0 else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.open()
        if refresher:
            refresher.start()
        try:
            yield
        finally:
            if refresher:
                refresher.stop()
            pool.close()

    app = FastAPI(title="citykpi", version="1", lifespan=lifespan,
                  description="Smart-city coverage indicators (Decision 2268/QĐ-UBND): values, evidence, live.",
                  responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}})
    app.state.pool = pool
    registry = CollectorRegistry()
    registry.register(LiveCoverageCollector(connection, settings, catalog=catalog, clock=now))
    if refresher:
        registry.register(refresher)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        # A route rather than a mounted app: a mount answers /metrics with a redirect to /metrics/.
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return unauthorized_response(exc)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail, exc.parameter)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return _error(400, "bad_parameter", f"{first['loc'][-1]}: {first['msg']}", str(first["loc"][-1]))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    def value_of(code: str, date_from: date, date_to: date, admin_unit: str | None, devices: bool = False):
        if date_to <= date_from:
            raise ApiError(400, "bad_parameter", f"to ({date_to}) must be after from ({date_from})", "to")
        for name, day in (("from", date_from), ("to", date_to)):
            # A local day at the ends of the calendar has UTC bounds the date type cannot hold.
            if not FIRST_DAY <= day <= LAST_DAY:
                raise ApiError(400, "bad_parameter", f"{name} must lie between {FIRST_DAY} and {LAST_DAY}", name)
        if date_to - date_from > MAX_PERIOD:
            raise ApiError(400, "bad_parameter", f"a period may span at most {MAX_PERIOD.days} days", "to")
        try:
            with connection() as conn:
                return sensor_value(conn, code, date_from, date_to, settings=settings, catalog=catalog, now=now(),
                                    admin_unit=admin_unit, devices=devices)
        except UnknownIndicator as exc:
            raise ApiError(404, "unknown_indicator", str(exc), "code") from None
        except FormIndicator as exc:
            raise ApiError(400, "bad_parameter", str(exc), "code") from None
        except UnknownAdminUnit as exc:
            raise ApiError(400, "bad_parameter", str(exc), "admin_unit") from None
        except RollupZoneMismatch as exc:
            raise ApiError(500, "misconfigured", str(exc)) from None

    reads = read_dependencies(settings.api_public_reads, connection)
    read_responses = {} if settings.api_public_reads else {401: {"model": ErrorBody}}
    code_path = Path(description="indicator number in the decision's detailed table, e.g. 17")
    from_query = Query(alias="from", description="first local day, YYYY-MM-DD")
    to_query = Query(description="local day after the last, YYYY-MM-DD (half-open)")
    unit_query = Query(None, description="administrative unit code: that unit and its descendants")

    @app.get("/v1/kpis", response_model=list[IndicatorSummary], dependencies=reads, responses=read_responses,
             summary="The catalog, with each sensor indicator's value for the latest complete month")
    def list_kpis() -> list[dict]:
        first, last = latest_complete_month(now(), settings)
        out = []
        for indicator in catalog.indicators:
            latest = None
            if indicator.sensor is not None:
                latest = _value_body(value_of(indicator.code, first, last, None))
            out.append({"code": indicator.code, "name_vi": indicator.name_vi, "name_en": indicator.name_en,
                        "unit": indicator.unit, "layer": indicator.layer, "kind": indicator.kind, "latest": latest})
        return out

    @app.get("/v1/kpis/{code}", response_model=KpiValue, dependencies=reads, responses=read_responses,
             summary="One sensor indicator over [from, to)")
    def get_kpi(code: str = code_path, date_from: date = from_query, to: date = to_query,
                admin_unit: str | None = unit_query) -> dict:
        return _value_body(value_of(code, date_from, to, admin_unit))

    @app.get("/v1/kpis/{code}/evidence", response_model=EvidenceBody, dependencies=reads, responses=read_responses,
             summary="Every key point in the denominator: availability, covered, devices and their up-hours")
    def get_evidence(code: str = code_path, date_from: date = from_query, to: date = to_query,
                     admin_unit: str | None = unit_query) -> dict:
        value = value_of(code, date_from, to, admin_unit, devices=True)
        return {**_value_body(value), "points": evidence_dicts(value)}

    add_page_routes(app, connection, settings, catalog, now, reads)
    add_forms_routes(app, database_url, connection, settings, catalog, now, reads, read_responses)

    @app.get("/v1/live", dependencies=reads, responses=read_responses,
             summary="Coverage now: a point is covered if a bound device of the kind sent a "
             "healthy heartbeat within 3 × its heartbeat interval")
    def get_live() -> dict:
        with connection() as conn:
            return live_coverage(conn, settings=settings, catalog=catalog, now=now()).as_dict()

    return app


def _value_body(value) -> dict:
    return {**value.as_dict(), "admin_unit": value.admin_unit, "theta": str(value.theta)}


def _error(status: int, error: str, detail: str, parameter: str | None = None) -> JSONResponse:
    body = {"error": error, "detail": detail}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse(body, status_code=status)
