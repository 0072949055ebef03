"""CITYKPI_API_PUBLIC_READS=false: every read, JSON or HTML, needs a valid agency token; /metrics and the
OpenAPI document stay open."""

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from base.settings import Settings
from web.app import create_app
from web.tokens import create_token, revoke_token

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
READS = [
    ("/v1/kpis", {}),
    ("/v1/kpis/17", {"from": "2026-10-01", "to": "2026-10-02"}),
    ("/v1/kpis/17/evidence", {"from": "2026-10-01", "to": "2026-10-02"}),
    ("/v1/live", {}),
    ("/v1/report", {"period": "2026"}),
    ("/", {"period": "2026"}),
    ("/kpi/17/evidence", {"period": "2026-10"}),
]
MISSING = 'Bearer realm="citykpi"'
INVALID = 'Bearer realm="citykpi", error="invalid_token"'


@pytest.fixture
def private_api(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_public_reads=False), database_url, clock=lambda: NOW)) as client:
        yield client


def _challenge(response) -> tuple:
    return response.status_code, response.json()["error"], response.headers.get("www-authenticate")


def test_public_reads_are_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().api_public_reads is True
    monkeypatch.setenv("CITYKPI_API_PUBLIC_READS", "false")
    assert Settings().api_public_reads is False


@pytest.mark.parametrize(("path", "params"), READS)
def test_a_read_without_a_token_is_a_401_with_a_challenge(private_api: TestClient, path: str, params: dict) -> None:
    response = private_api.get(path, params=params)
    assert _challenge(response) == (401, "unauthorized", MISSING)
    assert "citykpi tokens create" in response.json()["detail"]


@pytest.mark.parametrize(("path", "params"), READS)
def test_any_valid_agency_token_reads(private_api: TestClient, db: psycopg.Connection, path: str,
                                      params: dict) -> None:
    # Scoped to one indicator of another agency: the scope limits what it may submit, not what it may read.
    _, token = create_token(db, "so-yt-gia-lai", indicator_codes=["10"])
    response = private_api.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def test_a_wrong_or_revoked_token_is_a_401_invalid_token(private_api: TestClient, db: psycopg.Connection) -> None:
    token_id, token = create_token(db, "so-yt-gia-lai")
    revoke_token(db, token_id, now=NOW)
    answers = [_challenge(private_api.get("/v1/live", headers={"Authorization": f"Bearer {t}"}))
               for t in ("ckpi_guess", "not-even-the-prefix", token)]
    assert answers == [(401, "unauthorized", INVALID)] * 3


def test_every_refused_read_is_audited_naming_a_known_token(private_api: TestClient, db: psycopg.Connection) -> None:
    token_id, token = create_token(db, "so-yt-gia-lai")
    revoke_token(db, token_id, now=NOW)
    for headers in ({}, {"Authorization": "Bearer ckpi_guess"}, {"Authorization": f"Bearer {token}"}):
        private_api.get("/v1/live", headers=headers)
    db.rollback()
    rows = db.execute("SELECT action, status, token_id, detail->>'path' AS path FROM audit_log ORDER BY id").fetchall()
    assert [(r["action"], r["status"], r["token_id"], r["path"]) for r in rows] == [
        ("read", 401, None, "/v1/live"), ("read", 401, None, "/v1/live"), ("read", 401, token_id, "/v1/live")]


def test_another_scheme_is_a_401_without_invalid_token(private_api: TestClient) -> None:
    response = private_api.get("/v1/live", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert _challenge(response) == (401, "unauthorized", MISSING)


def test_metrics_and_the_openapi_document_stay_open(private_api: TestClient) -> None:
    spec = private_api.get("/openapi.json")
    assert private_api.get("/metrics").status_code == 200
    assert spec.status_code == 200
    operation = spec.json()["paths"]["/v1/kpis/{code}"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "401" in operation["responses"]


def test_public_reads_describe_no_security_on_reads(database_url: str) -> None:
    with TestClient(create_app(Settings(), database_url, clock=lambda: NOW)) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/kpis/{code}"]["get"]
        live = client.get("/v1/live")
    assert ("security" not in operation, "401" not in operation["responses"]) == (True, True)
    assert live.status_code == 200
