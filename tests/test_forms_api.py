"""Submissions over HTTP: a token per agency, scoped to what it reports; every write audited."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient

from base.settings import Settings
from web.app import create_app
from web.tokens import create_token, revoke_token

NOW = datetime(2027, 2, 1, tzinfo=UTC)
HEALTH_FILE = {"period": "2026", "agency": "Sở Y tế tỉnh Gia Lai", "reporting_unit": "",
               "indicators": {"10": {"values": {"residents_with_electronic_record": 1450000, "population": 3120000}}}}


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    settings = Settings(api_max_body_bytes=4096)
    with TestClient(create_app(settings, database_url, clock=lambda: NOW)) as client:
        yield client


def _post(api: TestClient, body: bytes | dict, token: str | None, content_type: str = "application/json"):
    data = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else body
    # HTTP headers are ASCII: a Vietnamese name travels percent-encoded as UTF-8.
    headers = {"Content-Type": content_type, "X-Submitted-By": quote("Nguyễn Văn A"), "X-Filename": "so-y-te.json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return api.post("/v1/forms/submissions", content=data, headers=headers)


def _audit(db: psycopg.Connection) -> list[tuple]:
    db.rollback()
    return [(r["action"], r["status"], r["agency_id"]) for r in db.execute(
        "SELECT action, status, agency_id FROM audit_log ORDER BY id")]


def test_an_agency_token_submits_its_own_indicators(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    response = _post(api, HEALTH_FILE, token)
    stored = db.execute("SELECT indicator_code, agency_id FROM form_submissions").fetchall()
    submitter = db.execute("SELECT submitted_by, channel FROM form_files").fetchone()
    report = api.get("/v1/report", params={"period": "2026"}).json()
    ten = next(i for layer in report["layers"] for g in layer["groups"] for i in g["indicators"] if i["code"] == "10")
    assert response.status_code == 201
    assert response.json() == {"period": "2026", "agency": "so-yt-gia-lai", "stored": ["10"], "unchanged": [],
                               "superseded": []}
    assert [(r["indicator_code"], r["agency_id"]) for r in stored] == [("10", "so-yt-gia-lai")]
    assert (submitter["submitted_by"], submitter["channel"]) == ("Nguyễn Văn A (token #1)", "api")
    assert (ten["value"], ten["status"]) == (46.47, "final")
    assert _audit(db) == [("forms.submit", 201, "so-yt-gia-lai")]


def test_a_health_token_cannot_submit_for_the_police(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    police = {**HEALTH_FILE, "agency": "Công an tỉnh Gia Lai"}
    response = _post(api, police, token)
    assert response.status_code == 403
    assert response.json()["detail"] == ("a token of Sở Y tế tỉnh Gia Lai cannot submit for Công an tỉnh Gia Lai")
    assert db.execute("SELECT count(*) AS n FROM form_submissions").fetchone()["n"] == 0
    assert _audit(db) == [("forms.submit", 403, "so-yt-gia-lai")]


def test_a_token_scoped_to_some_indicators_is_refused_the_others(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai", indicator_codes=["11"])
    response = _post(api, HEALTH_FILE, token)
    assert (response.status_code, response.json()["detail"]) == (
        403, "this token of Sở Y tế tỉnh Gia Lai is not allowed indicator(s) 10")


def test_no_token_a_wrong_token_or_a_revoked_one_is_unauthorized(api: TestClient, db: psycopg.Connection) -> None:
    token_id, token = create_token(db, "so-yt-gia-lai")
    revoke_token(db, token_id, now=NOW)
    responses = [_post(api, HEALTH_FILE, t) for t in (None, "ckpi_guess", token)]
    assert [(r.status_code, r.headers["www-authenticate"]) for r in responses] == [
        (401, 'Bearer realm="citykpi"')] + [(401, 'Bearer realm="citykpi", error="invalid_token"')] * 2
    # A revoked token is named in the log: whose it was matters to an auditor.
    assert _audit(db) == [("forms.submit", 401, None)] * 2 + [("forms.submit", 401, "so-yt-gia-lai")]
    assert db.execute("SELECT token_id, detail->>'token' AS state FROM audit_log ORDER BY id DESC LIMIT 1"
                      ).fetchone() == {"token_id": token_id, "state": "revoked"}


def test_an_oversized_body_is_refused_before_it_is_read(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    response = _post(api, b"x" * 5000, token)
    assert response.status_code == 413


def test_an_invalid_submission_lists_every_problem_and_stores_nothing(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    bad = {**HEALTH_FILE, "indicators": {"10": {"values": {"residents_with_electronic_record": -1,
                                                           "population": "many"}}}}
    response = _post(api, bad, token)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "so-y-te.json:indicators.10.values.residents_with_electronic_record: -1 is negative; counts are 0 or more",
        "so-y-te.json:indicators.10.values.population: 'many' is not a whole number (write digits 0–9 only, e.g. 1250)",
    ]
    assert db.execute("SELECT count(*) AS n FROM form_files").fetchone()["n"] == 0


def test_an_unknown_body_type_is_refused(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    assert _post(api, HEALTH_FILE, token, content_type="text/plain").status_code == 415


def test_reads_need_no_token_and_the_report_can_be_csv(api: TestClient) -> None:
    response = api.get("/v1/report", params={"period": "2026", "format": "csv"})
    bad = api.get("/v1/report", params={"period": "2026-13"})
    assert response.status_code == 200 and response.text.lstrip("\ufeff").startswith("layer,group_vi,")
    assert response.text.count("\n") == 28  # header and the 27 indicators
    assert (bad.status_code, bad.json()["parameter"]) == (400, "period")


def test_a_health_token_cannot_submit_a_police_indicator(api: TestClient, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    cameras = {**HEALTH_FILE, "indicators": {"17": {"values": {"cameras": 10}}}}
    response = _post(api, cameras, token)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "so-y-te.json:indicators.17.values.cameras: Sở Y tế tỉnh Gia Lai does not report indicator 17 "
        "(Tình hình lắp đặt camera giám sát an ninh trật tự công cộng) for 2026")


def test_a_token_for_a_department_the_reform_retired_belongs_to_its_successor(
        database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    monkeypatch.setenv("CITYKPI_DATABASE_URL", database_url)
    assert main(["tokens", "create", "--agency", "Sở Y tế"]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()
    db.rollback()
    assert db.execute("SELECT agency_id FROM api_tokens").fetchone()["agency_id"] == "so-yt-gia-lai"
    assert "Sở Y tế → Sở Y tế tỉnh Gia Lai" in printed.err
    assert token.startswith("ckpi_")
