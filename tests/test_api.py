"""The KPI HTTP API, in process (Starlette's TestClient) against the real PostgreSQL fixture."""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from base.settings import Settings
from tests.kpi_builders import beats, device, hours, point, unit
from web.app import create_app

DAY = date(2026, 10, 1)
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)                  # latest complete month: October 2026


@pytest.fixture
def api(database_url: str, db: psycopg.Connection) -> Iterator[TestClient]:
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district")
    point(db, "SEC-A", ["security_point"], admin_unit="540")
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(DAY, *range(22)))                  # 22/24 = 0.9167
    point(db, "SEC-B", ["security_point"], admin_unit="52")
    device(db, "cam-b", "SEC-B")
    beats(db, "cam-b", hours(DAY, *range(12)) + [NOW])          # 12/24, and healthy right now
    db.commit()
    with TestClient(create_app(Settings(), database_url, clock=lambda: NOW)) as client:
        yield client


def test_one_indicator_over_a_period(api: TestClient) -> None:
    response = api.get("/v1/kpis/17", params={"from": "2026-10-01", "to": "2026-10-02"})
    assert response.status_code == 200
    assert response.json() == {
        "code": "17", "name_vi": "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng", "unit": "%",
        "from": "2026-10-01", "to": "2026-10-02", "numerator": 1, "denominator": 2, "value": 50.0,
        "status": "final", "admin_unit": None, "theta": "0.90"}


def test_one_indicator_for_one_unit(api: TestClient) -> None:
    body = api.get("/v1/kpis/17", params={"from": "2026-10-01", "to": "2026-10-02", "admin_unit": "540"}).json()
    assert (body["admin_unit"], body["numerator"], body["denominator"], body["value"]) == ("540", 1, 1, 100.0)


def test_evidence_lists_the_points_of_the_denominator(api: TestClient) -> None:
    body = api.get("/v1/kpis/17/evidence", params={"from": "2026-10-01", "to": "2026-10-02"}).json()
    assert [(p["point_id"], p["availability"], p["availability_percent"], p["covered"], p["devices"])
            for p in body["points"]] == [
        ("SEC-A", "22/24", 91.67, True, [{"device_id": "cam-a", "up_hours": 22, "online_only_hours": 0}]),
        ("SEC-B", "12/24", 50.0, False, [{"device_id": "cam-b", "up_hours": 12, "online_only_hours": 0}])]


def test_the_catalog_carries_the_latest_complete_months_values(api: TestClient) -> None:
    body = api.get("/v1/kpis").json()
    by_code = {i["code"]: i for i in body}
    assert len(body) == 27
    assert by_code["17"]["latest"] == {
        "code": "17", "name_vi": "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng", "unit": "%",
        "from": "2026-10-01", "to": "2026-11-01", "numerator": 0, "denominator": 2, "value": 0.0,
        "status": "final", "admin_unit": None, "theta": "0.90"}   # one good day of 31 covers nothing
    assert (by_code["5"]["kind"], by_code["5"]["latest"]) == ("form", None)


def test_live_coverage(api: TestClient) -> None:
    body = api.get("/v1/live").json()
    cctv = next(i for i in body["indicators"] if i["code"] == "17")
    assert (body["at"], cctv["points"], cctv["covered"], body["devices"]) == (
        "2026-11-20T03:00:00+00:00", 2, 1, {"cctv": {"up": 1, "down": 1}})


def test_metrics_exposes_live_gauges(api: TestClient) -> None:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert 'citykpi_live_coverage_ratio{indicator="17"} 0.5' in response.text


@pytest.mark.parametrize(("path", "params", "parameter"), [
    ("/v1/kpis/17", {"from": "2026-13-01", "to": "2026-10-02"}, "from"),
    ("/v1/kpis/17", {"to": "2026-10-02"}, "from"),
    ("/v1/kpis/17", {"from": "2026-10-02", "to": "2026-10-02"}, "to"),
    ("/v1/kpis/17", {"from": "2020-01-01", "to": "2026-10-02"}, "to"),
    ("/v1/kpis/17", {"from": "2026-10-01", "to": "2026-10-02", "admin_unit": "999"}, "admin_unit"),
    ("/v1/kpis/5", {"from": "2026-10-01", "to": "2026-10-02"}, "code"),
    ("/v1/kpis/17/evidence", {"from": "2026-10-01", "to": "yesterday"}, "to"),
    # Found by schemathesis (tests/test_api_schemathesis.py) as 500s: days whose UTC bounds overflow, and
    # years whose previous period does not exist.
    ("/v1/kpis/17", {"from": "0001-01-01", "to": "0001-01-02"}, "from"),
    ("/v1/kpis/17/evidence", {"from": "9998-12-31", "to": "9999-12-31"}, "to"),
    ("/v1/report", {"period": "0001"}, "period"),
    ("/v1/report", {"period": "1899-Q4"}, "period"),
])
def test_a_bad_parameter_is_a_400_naming_it(api: TestClient, path: str, params: dict, parameter: str) -> None:
    response = api.get(path, params=params)
    assert (response.status_code, response.json()["error"], response.json()["parameter"]) == (
        400, "bad_parameter", parameter)


def test_an_unknown_indicator_is_a_404(api: TestClient) -> None:
    response = api.get("/v1/kpis/99", params={"from": "2026-10-01", "to": "2026-10-02"})
    assert (response.status_code, response.json()) == (404, {
        "error": "unknown_indicator", "parameter": "code",
        "detail": "indicator '99' is not in catalog 'binh-dinh-2268-2023'"})


def test_the_api_is_described_by_openapi(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert {"/v1/kpis", "/v1/kpis/{code}", "/v1/kpis/{code}/evidence", "/v1/live"} <= set(spec["paths"])
    parameters = {p["name"] for p in spec["paths"]["/v1/kpis/{code}"]["get"]["parameters"]}
    assert parameters == {"code", "from", "to", "admin_unit"}


def test_the_apis_database_sessions_are_read_only(api: TestClient) -> None:
    with api.app.state.pool.connection() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("DELETE FROM key_points")


def test_citykpi_serve_answers_over_http(database_url: str) -> None:
    import os
    import subprocess
    import sys

    import httpx

    from devstack.ports import free_loopback_port, port_accepts
    from tests.helpers import wait_for

    port = free_loopback_port()
    server = subprocess.Popen([sys.executable, "-m", "citykpi.cli", "serve", "--port", str(port)],
                              env={**os.environ, "CITYKPI_DATABASE_URL": database_url},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_accepts(port) or server.poll() is not None, what="citykpi serve to listen")
        assert server.poll() is None, server.stdout.read().decode()
        response = httpx.get(f"http://127.0.0.1:{port}/v1/kpis/17?from=2026-10-01&to=2026-10-02", timeout=10)
        assert (response.status_code, response.json()["denominator"]) == (200, 0)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_pages_refuse_what_they_cannot_show_without_a_server_error(api: TestClient) -> None:
    # Found by tests/test_api_schemathesis.py: a form indicator's evidence page and year 0001 were 500s.
    form = api.get("/kpi/5/evidence", params={"period": "2026"})
    year_one = api.get("/", params={"period": "0001"})
    assert (form.status_code, year_one.status_code) == (404, 400)
    assert "form-based" in form.text and "between 1900 and 9998" in year_one.text


def test_a_page_error_does_not_echo_markup(api: TestClient) -> None:
    response = api.get("/", params={"period": "<script>alert(1)</script>"})
    assert response.status_code == 400
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text
