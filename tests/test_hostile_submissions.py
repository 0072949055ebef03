"""Hostile submissions against the real API and database: whatever a token holder sends is answered 2xx or 4xx,
never 5xx; every attempt leaves exactly one audit row, NULs and all; nothing partial is stored; numbers are
ASCII digits within the catalog's bounds; a resubmission gives every input again or is refused."""

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.settings import Settings
from tests.submission_files import HEALTH, SHEET, XLSX, endless_rows, health_json, health_xlsx, sheet_xml, with_sheet
from web.app import create_app
from web.tokens import create_token

NOW = datetime(2027, 2, 1, tzinfo=UTC)


@pytest.fixture
def api(database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), database_url, clock=lambda: NOW)) as client:
        yield client


@pytest.fixture
def token(db: psycopg.Connection) -> str:
    return create_token(db, "so-yt-gia-lai")[1]


def _post(api: TestClient, body: bytes, token: str | None, *, content_type: str = "application/json",
          **headers: str):
    sent = {"Content-Type": content_type, **headers}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return api.post("/v1/forms/submissions", content=body, headers=sent)


def _counts(db: psycopg.Connection) -> tuple[int, int, int]:
    db.rollback()
    row = db.execute("SELECT (SELECT count(*) FROM audit_log) AS audit, (SELECT count(*) FROM form_files) AS files,"
                     " (SELECT count(*) FROM form_submissions) AS submissions").fetchone()
    return row["audit"], row["files"], row["submissions"]


def _xlsx_cell(value: str) -> bytes:
    """The health workbook with indicator 10's population cell holding `value` as the XML writes it."""
    xml = sheet_xml(health_xlsx()).decode()
    return with_sheet(health_xlsx(), [xml.replace("<v>3120000</v>", f"<v>{value}</v>").encode()])


MALFORMED = [
    ("NaN in a JSON value", lambda: health_json(indicators={"10": {"values": {"population": float("nan")}}}), {}),
    ("NaN in a workbook cell", lambda: _xlsx_cell("NaN"), {"content_type": XLSX}),
    ("1e30 in a workbook cell", lambda: _xlsx_cell("1e30"), {"content_type": XLSX}),
    ("a count of a thousand digits", lambda: health_json().replace(b"3120000", b"9" * 1000), {}),
    ("Arabic-Indic digits", lambda: health_json(indicators={"10": {"values": {"population": "١٢٣٤٥"}}}), {}),
    ("an underscore in a number", lambda: health_json(indicators={"10": {"values": {"population": "1_0"}}}), {}),
    ("JSON nested very deep",
     lambda: b'{"period": "2026", "indicators": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
    ("a NUL in reporting_unit", lambda: health_json(reporting_unit="54\u00000"), {}),
    ("a DOCTYPE declaring entities", lambda: with_sheet(health_xlsx(), [
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>',
        sheet_xml(health_xlsx())]), {"content_type": XLSX}),
    ("a row shorter than its header, no <dimension>", lambda: with_sheet(health_xlsx(), [
        sheet_xml(health_xlsx()).replace(b'<dimension ref="A1:H5" />', b"").replace(
            b"</sheetData>", b'<row r="9"><c r="A9" t="inlineStr"><is><t>2026</t></is></c></row></sheetData>')]),
     {"content_type": XLSX}),
    ("a sheet of a million empty rows", lambda: endless_rows(health_xlsx(), 1_000_000), {"content_type": XLSX}),
    ("a NUL in X-Submitted-By", health_json, {"X-Submitted-By": "A%00B"}),
    ("a line break and an escape in X-Submitted-By", health_json, {"X-Submitted-By": "A%0D%0A%1B%5B31mB"}),
    ("a NUL in X-Filename", health_json, {"X-Filename": "a%00.json"}),
    ("not a zip at all", lambda: b"PK\x03\x04 but no more", {"content_type": XLSX}),
]


@pytest.mark.parametrize(("make", "headers"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_malformed_submission_is_refused_with_4xx_audited_once_and_nothing_stored(
        api: TestClient, db: psycopg.Connection, token: str, make: Callable[[], bytes], headers: dict) -> None:
    response = _post(api, make(), token, **headers)
    assert 400 <= response.status_code < 500, response.text[:500]
    assert _counts(db) == (1, 0, 0)


def test_a_nul_in_the_file_name_of_an_unauthenticated_attempt_is_still_audited(
        api: TestClient, db: psycopg.Connection) -> None:
    response = _post(api, health_json(), "ckpi_not-a-token", **{"X-Filename": "a%00.json"})
    stored = db.execute("SELECT status, detail->>'file' AS file FROM audit_log").fetchall()
    assert response.status_code == 401
    assert stored == [{"status": 401, "file": "a%00.json"}]


def test_numbers_beyond_the_catalogs_bound_are_refused_naming_it(api: TestClient, token: str) -> None:
    response = _post(api, health_json(indicators={"10": {"values": {"population": 20_000_001}}}), token)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        "submission.json:indicators.10.values.population: 20000001 is more than 20000000, the most a province can "
        "count of population (the catalog's bound)"]


def test_a_refusal_lists_at_most_the_problem_limit(database_url: str, token: str) -> None:
    rows = "period,agency,reporting_unit,indicator,indicator_name_vi,input,label_vi,value\n" + "".join(
        f"2026,so-yt-gia-lai,,10,,population,,not-{n}\n" for n in range(500))
    with TestClient(create_app(Settings(submission_max_problems=20), database_url, clock=lambda: NOW)) as client:
        response = _post(client, rows.encode(), token, content_type="text/csv")
    problems = response.json()["problems"]
    assert response.status_code == 422
    assert len(problems) == 21 and problems[-1] == "submission.csv: … and 480 more problem(s)"


def test_a_sheet_of_more_rows_than_the_limit_is_refused_at_the_limit(api: TestClient, token: str) -> None:
    xml = sheet_xml(health_xlsx()).replace(b'<dimension ref="A1:H5" />', b"")
    filler = b"".join(f'<row r="{n}"/>'.encode() for n in range(10, 1200))
    response = _post(api, with_sheet(health_xlsx(), [xml.replace(b"</sheetData>", filler + b"</sheetData>")]),
                     token, content_type=XLSX)
    assert response.status_code == 422
    assert "more than 1000 rows (CITYKPI_SUBMISSION_MAX_ROWS)" in response.json()["problems"][-1]


def test_a_resubmission_that_leaves_an_input_out_is_refused_naming_it(
        api: TestClient, db: psycopg.Connection, token: str) -> None:
    first = _post(api, health_json(), token)
    partial = _post(api, health_json(indicators={"10": {"values": {"population": 3200000}}}), token)
    current = db.execute("SELECT inputs FROM form_submissions WHERE superseded_at IS NULL").fetchall()
    assert first.status_code == 201
    assert partial.status_code == 422
    assert partial.json()["problems"] == [
        "indicator 10: this resubmission lacks residents_with_electronic_record, which the current submission #1 "
        "gives; give every input again"]
    assert current == [{"inputs": HEALTH["indicators"]["10"]["values"]}]


def test_the_submitters_name_is_kept_as_typed_with_its_diacritics(api: TestClient, db: psycopg.Connection,
                                                                   token: str) -> None:
    response = _post(api, health_json(), token, **{"X-Submitted-By": quote("Nguyễn Văn A"),
                                                   "X-Filename": quote("ytế.json")})
    assert response.status_code == 201
    assert db.execute("SELECT submitted_by, file_name FROM form_files").fetchone() == {
        "submitted_by": "Nguyễn Văn A (token #1)", "file_name": "ytế.json"}


@pytest.mark.parametrize("path", ["/v1/report?period=1900", "/v1/report?period=1900-Q1", "/v1/report?period=1900-01",
                                  "/?period=1900", "/?period=1901", "/?period=1904", "/v1/report?period=9998"])
def test_periods_at_the_calendars_edge_are_answered(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 200


# -- mutated real submissions: bytes and XML ---------------------------------------------------------------

def _flip(raw: bytes, positions: list[int], values: list[int]) -> bytes:
    data = bytearray(raw)
    for position, value in zip(positions, values, strict=False):
        data[position % len(data)] = value
    return bytes(data)


def _xml_mutation(xlsx: bytes, start: int, length: int, replacement: str) -> bytes:
    xml = sheet_xml(xlsx).decode()
    start %= len(xml)
    return with_sheet(xlsx, [(xml[:start] + replacement + xml[start + length:]).encode()])


XML_PIECES = ["<", ">", "&", "&amp;", "<v>NaN</v>", "<v>1e308</v>", "<v>-1</v>", '<c r="H3"><v>9</v></c>',
              "<!DOCTYPE x>", '<row r="4">', "</row>", '<dimension ref="A1:XFD1048576"/>', "\x00", "é", ""]
JSON_VALUES = st.one_of(st.integers(), st.floats(), st.text(max_size=20), st.none(), st.booleans(),
                        st.lists(st.integers(), max_size=3))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=st.one_of(
    st.tuples(st.just("xlsx-bytes"), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8),
              st.lists(st.integers(0, 255), min_size=1, max_size=8)),
    st.tuples(st.just("xlsx-xml"), st.integers(0, 1 << 16), st.integers(0, 40), st.sampled_from(XML_PIECES)),
    st.tuples(st.just("json-bytes"), st.lists(st.integers(0, 1 << 12), min_size=1, max_size=8),
              st.lists(st.integers(0, 255), min_size=1, max_size=8)),
    st.tuples(st.just("json-value"), st.sampled_from(["period", "agency", "reporting_unit", "population",
                                                      "residents_with_electronic_record"]), JSON_VALUES)))
def test_any_mutation_of_a_real_submission_is_answered_2xx_or_4xx_and_stores_all_or_nothing(
        api: TestClient, db: psycopg.Connection, token: str, mutation: tuple) -> None:
    kind = mutation[0]
    if kind == "xlsx-bytes":
        body, content_type = _flip(XLSX_BODY, mutation[1], mutation[2]), XLSX
    elif kind == "xlsx-xml":
        body, content_type = _xml_mutation(XLSX_BODY, *mutation[1:]), XLSX
    elif kind == "json-bytes":
        body, content_type = _flip(JSON_BODY, mutation[1], mutation[2]), "application/json"
    else:
        document = json.loads(JSON_BODY)
        if mutation[1] in ("period", "agency", "reporting_unit"):
            document[mutation[1]] = mutation[2]
        else:
            document["indicators"]["10"]["values"][mutation[1]] = mutation[2]
        body, content_type = json.dumps(document, allow_nan=True).encode(), "application/json"
    audited, files, submissions = _counts(db)
    response = _post(api, body, token, content_type=content_type)
    after = _counts(db)
    assert response.status_code in (201,) or 400 <= response.status_code < 500, response.text[:300]
    assert after[0] == audited + 1
    if response.status_code != 201:
        assert after[1:] == (files, submissions)


XLSX_BODY = health_xlsx()
JSON_BODY = health_json()


def test_the_mutated_workbook_is_a_real_one() -> None:
    assert zipfile.ZipFile(io.BytesIO(XLSX_BODY)).read(SHEET).count(b"<row") == 5
