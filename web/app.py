"""`citykpi serve`: the HTTP app — the KPI API (web/kpi_routes.py), the report, evidence and point pages
(web/pages/) and their scripts (web/static/), form submissions and the full report (web/forms_routes.py),
Prometheus /metrics. OpenAPI at /openapi.json, browsable at /docs. Reads are open unless
CITYKPI_API_PUBLIC_READS=false (web/read_access.py); every write needs an agency's token and is audited
(web/tokens.py). Errors: web/errors.py.
"""

from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from starlette.exceptions import HTTPException

from base.settings import Settings
from catalog import Catalog, load_catalog
from kpi.live import LiveCoverageCollector
from kpi.point_rollups import PointRollupRefresher
from web.errors import ApiError, ErrorBody, error_response
from web.forms_routes import add_forms_routes
from web.kpi_routes import add_kpi_routes
from web.pages.routes import add_page_routes
from web.read_access import Unauthorized, read_dependencies, unauthorized_response

# The pages' scripts and Leaflet (static/leaflet/README.md): files of this package, so nothing comes from a CDN.
STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, database_url: str, *, catalog: Catalog | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    catalog = catalog or load_catalog()
    now = clock or (lambda: datetime.now(UTC))
    # Read-only by construction: every transaction of the API's sessions is READ ONLY.
    pool = ConnectionPool(database_url, min_size=1, max_size=4, open=False, kwargs={
        "row_factory": dict_row, "autocommit": True, "application_name": "citykpi-api",
        "options": "-c timezone=UTC -c default_transaction_read_only=on"})

    # Submissions and the audit log: the only writes. Sized for the uploads read at once, a token look-up and
    # an audit row beside them; a flood of refused requests waits for these, not for more connections.
    write_pool = ConnectionPool(database_url, min_size=0, max_size=settings.api_max_concurrent_uploads + 2,
                                open=False, kwargs={"row_factory": dict_row, "autocommit": True,
                                                    "application_name": "citykpi-api-writes",
                                                    "options": "-c timezone=UTC"})

    @contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        with pool.connection() as conn:
            yield conn

    @contextmanager
    def write_connection() -> Iterator[psycopg.Connection]:
        with write_pool.connection() as conn:
            yield conn

    refresher = (PointRollupRefresher(database_url, catalog, settings.point_rollup_refresh_s,
                                      lateness_window=settings.lateness_window)
                 if settings.point_rollup_refresh_s > 0 else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.open()
        write_pool.open()
        if refresher:
            refresher.start()
        try:
            yield
        finally:
            if refresher:
                refresher.stop()
            write_pool.close()
            pool.close()

    # /docs and /redoc from files in the fastapi-offline package: an IOC network often reaches no CDN.
    app = FastAPIOffline(title="citykpi", version="1", lifespan=lifespan,
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

    # Open even when reads need a token: code and images, no data (a mount carries no route's dependencies), and
    # outside the OpenAPI document (mounts are never in it).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return unauthorized_response(exc)

    @app.exception_handler(ApiError)
    async def _apierror_response(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.detail, exc.parameter)

    @app.exception_handler(RequestValidationError)
    async def _bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        return error_response(400, "bad_parameter", f"{first['loc'][-1]}: {first['msg']}", str(first["loc"][-1]))

    @app.exception_handler(HTTPException)
    async def _httperror_response(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    reads = read_dependencies(settings.api_public_reads, write_connection)
    read_responses = {} if settings.api_public_reads else {401: {"model": ErrorBody}}
    add_kpi_routes(app, connection, settings, catalog, now, reads, read_responses)
    add_page_routes(app, connection, settings, catalog, now, reads)
    add_forms_routes(app, connection, write_connection, settings, catalog, now, reads, read_responses)
    return app
