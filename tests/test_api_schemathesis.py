"""Schemathesis over every operation of the API's OpenAPI document, in process against the ASGI app on a
migrated database with a registry, heartbeats and a stored submission, so that reads do real work.

Three streams of requests per operation: schemathesis's positive and negative generation from the document,
and realistic ones (catalog codes, dates and periods near and far, the example submissions with one value
changed) that get past validation into the queries. Each request is sent without a token, with a wrong one
and with the agency's valid token; none may get a 5xx. Derandomized and bounded: the same ~50 cases per
operation on every run.
"""

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from base.settings import Settings
from catalog import load_catalog
from forms.store import store_submission
from forms.submission import parse_submission
from tests.kpi_builders import beats, device, every_hour, hours, point, unit
from web.app import create_app
from web.tokens import create_token

DAY = date(2026, 10, 1)
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
EXAMPLES = sorted(Path(__file__).parent.parent.joinpath("deploy/examples/forms").glob("*.json"))
BODIES = [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES]
CATALOG = load_catalog()
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOUNDED = settings(max_examples=50, derandomize=True, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                          HealthCheck.data_too_large])


@schemathesis.serializer(XLSX)
def _xlsx(ctx, value: object) -> dict:
    # Generated "binary" bodies are bytes already; the app must refuse a damaged workbook with a 422.
    return {"data": value if isinstance(value, bytes) else str(value).encode()}


def _seed(db: psycopg.Connection) -> dict[str, str]:
    """Two districts with cameras and an air monitor, a month of heartbeats, a stored submission; a valid token
    per agency of the example submissions."""
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district")
    unit(db, "541", "52", "district")
    for n, (admin_unit, category, kind) in enumerate([("540", "security_point", "cctv"),
                                                      ("541", "security_point", "cctv"),
                                                      ("540", "air_hotspot", "air_monitor")]):
        point(db, f"P-{n}", [category], admin_unit=admin_unit)
        device(db, f"d-{n}", f"P-{n}", kind)
        beats(db, f"d-{n}", every_hour(DAY, 30 - 10 * n) + [NOW], kind=kind)
    beats(db, "d-0", hours(date(2026, 11, 2), 1, 2), healthy=False)
    db.commit()
    store_submission(db, parse_submission(EXAMPLES[0], CATALOG), catalog_id=CATALOG.id, file_name=EXAMPLES[0].name,
                     content=EXAMPLES[0].read_bytes(), submitted_by="test", channel="cli", now=NOW)
    return {body["agency"]: create_token(db, body["agency"])[1] for body in BODIES}


# -- realistic requests ---------------------------------------------------------------------------------------

CODES = st.one_of(st.sampled_from([i.code for i in CATALOG.indicators if i.sensor is not None]),
                  st.sampled_from([i.code for i in CATALOG.indicators] + ["99", "0", "017", " 17"]))
# Near the data, or at the ends of the calendar (where a local day's UTC bounds overflow).
DAYS = st.one_of(st.dates(date(2025, 1, 1), date(2027, 12, 31)),
                 st.sampled_from([date.min, date(1, 1, 2), date(1899, 12, 31), date(9999, 12, 1), date.max]))
PERIODS = st.one_of(st.integers(2020, 2030).map(str), st.integers(0, 9999).map(lambda y: f"{y:04d}"),
                    st.builds(lambda y, q: f"{y:04d}-Q{q}", st.integers(0, 9999), st.integers(1, 4)),
                    st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(0, 9999), st.integers(1, 12)))
ANY_VALUE = st.one_of(st.integers(), st.floats(), st.text(max_size=12), st.booleans(), st.none(),
                      st.lists(st.integers(), max_size=2))


@st.composite
def _parameters(draw: st.DrawFn, names: dict[str, list[str]]) -> tuple[dict, dict]:
    start = draw(DAYS)
    span = timedelta(days=draw(st.one_of(st.integers(1, 62), st.integers(-1, 420))))
    try:
        end = start + span
    except OverflowError:
        end = date.max if span.days > 0 else date.min
    values = {"code": draw(CODES), "from": start.isoformat(), "to": end.isoformat(),
              "admin_unit": draw(st.sampled_from([None, "52", "540", "541", "999", ""])), "period": draw(PERIODS),
              "format": draw(st.sampled_from(["json", "csv", "md"]))}
    return ({n: values[n] for n in names.get("path", [])},
            {n: values[n] for n in names.get("query", []) if values.get(n) is not None})


@st.composite
def _near_valid_submission(draw: st.DrawFn) -> dict:
    body = copy.deepcopy(draw(st.sampled_from(BODIES)))
    if draw(st.booleans()):
        body["period"] = draw(PERIODS)
    values = body["indicators"][draw(st.sampled_from(sorted(body["indicators"])))]["values"]
    if values and draw(st.booleans()):
        values[draw(st.sampled_from(sorted(values)))] = draw(ANY_VALUE)
    return body


def _realistic(operation, spec: dict):
    if "requestBody" in spec:
        return _near_valid_submission().flatmap(
            lambda body: operation.as_strategy(body=body, media_type="application/json"))
    names: dict[str, list[str]] = {}
    for parameter in spec.get("parameters", []):
        names.setdefault(parameter["in"], []).append(parameter["name"])
    return _parameters(names).flatmap(
        lambda pq: operation.as_strategy(path_parameters=pq[0] or None, query=pq[1] or None))


# The operations, read from an app that never opens its database: the document does not depend on the data.
DOCUMENT = create_app(Settings(), "postgresql://unused/unused").openapi()
OPERATIONS = [(path, method.upper()) for path, methods in DOCUMENT["paths"].items() for method in methods]


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_generated_request_gets_a_server_error(database_url: str, db: psycopg.Connection, path: str,
                                                  method: str) -> None:
    tokens = _seed(db)
    app = create_app(Settings(api_max_body_bytes=64 * 1024), database_url, clock=lambda: NOW)
    statuses: list[int] = []
    # The app's lifespan (its connection pool) is ours to run and end; schemathesis's client, not entered,
    # only carries requests to it in process.
    with TestClient(app):
        operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
        session = schemathesis.python.asgi.get_client(app)
        realistic = _realistic(operation, DOCUMENT["paths"][path][method.lower()])
        # Half the cases realistic: generated ones from the document rarely get past parameter validation.
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE), realistic, realistic)

        @given(case=strategy)
        @BOUNDED
        def no_server_error(case) -> None:
            agency = case.body.get("agency") if isinstance(case.body, dict) else None
            valid = tokens.get(agency, tokens["so-yt-gia-lai"])
            for authorization in (None, "Bearer ckpi_wrong", f"Bearer {valid}"):
                response = case.call(session=session, headers={"Authorization": authorization} if authorization
                                     else None)
                case.validate_response(response, checks=[not_a_server_error])
                statuses.append(response.status_code)

        no_server_error()
    # Something got through to real work: a success for every operation that has one to give.
    assert 200 in statuses or 201 in statuses, sorted(set(statuses))


@given(period=st.one_of(PERIODS, st.text(max_size=10)), code=st.one_of(CODES, st.text(max_size=5)))
@settings(BOUNDED, max_examples=25)  # the report page computes five periods: each example costs more
def test_the_html_pages_never_answer_a_server_error(html_api: TestClient, period: str, code: str) -> None:
    # Not in the OpenAPI document (they are pages), so schemathesis does not reach them.
    for response in (html_api.get("/", params={"period": period}),
                     html_api.get(f"/kpi/{quote(code, safe='')}/evidence", params={"period": period})):
        assert response.status_code < 500, (response.request.url, response.text[:300])


@pytest.fixture(scope="module")
def html_api(postgres_server: str, migrated_template: str):
    from devstack.databases import scratch_database

    with scratch_database(postgres_server, "citykpi_pages", template=migrated_template) as url:
        with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
            _seed(conn)
        with TestClient(create_app(Settings(), url, clock=lambda: NOW)) as client:
            yield client
