"""The sensor indicators over HTTP: the catalog with each one's latest month, one value, its evidence, live
coverage."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta

import psycopg
from fastapi import FastAPI, Path, Query
from fastapi.params import Depends
from pydantic import BaseModel, ConfigDict, Field

from base.periods import MAX_YEAR, MIN_YEAR
from base.settings import Settings
from catalog import Catalog, UnknownIndicator
from kpi.export import evidence_dicts
from kpi.indicators import FormIndicator, latest_complete_month, sensor_value
from kpi.live import live_coverage
from kpi.rollups import RollupZoneMismatch
from registry.tree import UnknownAdminUnit
from web.errors import ApiError

# A period longer than this is refused: it would hold a connection for minutes on a large province.
MAX_PERIOD = timedelta(days=400)
FIRST_DAY, LAST_DAY = date(MIN_YEAR, 1, 1), date(MAX_YEAR + 1, 1, 1)


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
    online_only_hours: int = Field(0, description="of up_hours, those only an availability message made up")


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
    lat: float | None = Field(None, description="latitude of the point's last version in the period (WGS 84)")
    lon: float | None = Field(None, description="longitude, likewise")


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


def add_kpi_routes(app: FastAPI, connection: Callable[[], AbstractContextManager[psycopg.Connection]],
                   settings: Settings, catalog: Catalog, now: Callable[[], datetime], reads: list[Depends],
                   read_responses: dict) -> None:
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

    @app.get("/v1/live", dependencies=reads, responses=read_responses,
             summary="Coverage now: a point is covered if a bound device of the kind sent a "
             "healthy heartbeat within 3 × its heartbeat interval")
    def get_live() -> dict:
        with connection() as conn:
            return live_coverage(conn, settings=settings, catalog=catalog, now=now()).as_dict()


def _value_body(value) -> dict:
    return {**value.as_dict(), "admin_unit": value.admin_unit, "theta": str(value.theta)}
