"""`citykpi kpi show | evidence | export` over a small hand-built province."""

import csv
import io
import json
from datetime import date

import psycopg
import pytest

from citykpi.cli import main
from tests.kpi_builders import beats, device, hours, point, unit

DAY = date(2026, 11, 1)
PERIOD = ["--from", "2026-11-01", "--to", "2026-11-02"]


@pytest.fixture
def province(database_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    unit(db, "52", None, "province", name="Tỉnh Bình Định")
    unit(db, "540", "52", "district", name="=HYPERLINK(\"http://x\")")
    point(db, "SEC-A", ["security_point"], admin_unit="540", name="Quảng trường Nguyễn Tất Thành")
    device(db, "cam-a1", "SEC-A")
    device(db, "cam-a2", "SEC-A")
    beats(db, "cam-a1", hours(DAY, *range(12)))
    beats(db, "cam-a2", hours(DAY, *range(10, 24)))
    point(db, "SEC-B", ["security_point"], admin_unit="52", name="-2+3 @SUM(A1)")
    device(db, "cam-b", "SEC-B")
    beats(db, "cam-b", hours(DAY, *range(20)))                  # 20/24 = 0.8333
    point(db, "PUB-C", ["public_place"], admin_unit="540", name="Thư viện tỉnh")
    device(db, "wifi-c", "PUB-C", kind="wifi_ap")
    beats(db, "wifi-c", hours(DAY, *range(24)), kind="wifi_ap")
    db.commit()
    monkeypatch.setenv("CITYKPI_DATABASE_URL", database_url)


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    try:
        status = main(list(args))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_show_for_one_unit_adds_the_unit_to_the_contract(province: None, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = _run(capsys, "kpi", "show", "17", *PERIOD, "--admin-unit", "540", "--json")
    assert status == 0
    assert json.loads(out) == {
        "code": "17", "name_vi": "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng", "unit": "%",
        "from": "2026-11-01", "to": "2026-11-02", "numerator": 1, "denominator": 1, "value": 100.0,
        "status": "final", "admin_unit": "540"}


def test_show_names_an_unknown_unit_and_exits_2(province: None, capsys: pytest.CaptureFixture) -> None:
    status, out, err = _run(capsys, "kpi", "show", "17", *PERIOD, "--admin-unit", "999")
    assert (status, out) == (2, "")
    assert err == ("citykpi kpi show: administrative unit '999' is not in the unit tree in force at "
                   "2026-11-01T23:00:00+07:00\n")


def test_show_refuses_a_day_at_the_ends_of_the_calendar(capsys: pytest.CaptureFixture) -> None:
    status, out, err = _run(capsys, "kpi", "show", "17", "--from", "0001-01-01", "--to", "0001-01-02")
    assert (status, out) == (2, "")
    assert "argument --from: '0001-01-01' must lie between 1900-01-01 and 9999-01-01" in err


def test_show_refuses_a_form_indicator(province: None, capsys: pytest.CaptureFixture) -> None:
    status, _, err = _run(capsys, "kpi", "show", "5", *PERIOD)
    assert (status, err) == (2, "citykpi kpi show: indicator 5 is form-based; its values come from agency "
                                "submissions\n")


def test_evidence_lists_each_point_with_its_availability_and_devices(province: None,
                                                                     capsys: pytest.CaptureFixture) -> None:
    status, out, _ = _run(capsys, "kpi", "evidence", "17", *PERIOD, "--format", "json")
    assert status == 0
    shown = json.loads(out)
    assert (shown["numerator"], shown["denominator"], shown["theta"]) == (1, 2, "0.90")
    assert shown["points"] == [
        {"code": "17", "from": "2026-11-01", "to": "2026-11-02", "point_id": "SEC-A",
         "name": "Quảng trường Nguyễn Tất Thành", "admin_unit": "540", "buckets_in_force": 24, "buckets_up": 24,
         "availability": "24/24", "availability_percent": 100.0, "covered": True,
         "devices": [{"device_id": "cam-a1", "up_hours": 12, "online_only_hours": 0},
                     {"device_id": "cam-a2", "up_hours": 14, "online_only_hours": 0}],
         "lat": 13.77, "lon": 109.22},
        {"code": "17", "from": "2026-11-01", "to": "2026-11-02", "point_id": "SEC-B", "name": "-2+3 @SUM(A1)",
         "admin_unit": "52", "buckets_in_force": 24, "buckets_up": 20, "availability": "20/24",
         "availability_percent": 83.33, "covered": False,
         "devices": [{"device_id": "cam-b", "up_hours": 20, "online_only_hours": 0}],
         "lat": 13.77, "lon": 109.22},
    ]


def test_evidence_csv_neutralises_cells_a_spreadsheet_would_run(province: None,
                                                                capsys: pytest.CaptureFixture) -> None:
    status, out, _ = _run(capsys, "kpi", "evidence", "17", *PERIOD, "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert status == 0
    assert rows == [
        ["code", "from", "to", "point_id", "name", "admin_unit", "buckets_in_force", "buckets_up", "availability",
         "availability_percent", "covered", "devices"],
        ["17", "2026-11-01", "2026-11-02", "SEC-A", "Quảng trường Nguyễn Tất Thành", "540", "24", "24", "24/24",
         "100.0", "yes", "cam-a1:12;cam-a2:14"],
        ["17", "2026-11-01", "2026-11-02", "SEC-B", "'-2+3 @SUM(A1)", "52", "24", "20", "20/24", "83.33", "no",
         "cam-b:20"],
    ]


def test_export_reports_every_sensor_indicator_for_the_province_and_each_unit(
        province: None, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = _run(capsys, "kpi", "export", *PERIOD, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [(r["code"], r["admin_unit"]) for r in rows] == [
        (code, unit_code) for code in ("9", "17", "18", "19", "21", "22") for unit_code in ("", "52", "540")]
    shown = {(r["code"], r["admin_unit"]): (r["admin_unit_name"], r["numerator"], r["denominator"], r["value"],
                                            r["status"]) for r in rows}
    assert shown[("17", "")] == ("", "1", "2", "50.0", "final")
    assert shown[("17", "52")] == ("Tỉnh Bình Định", "1", "2", "50.0", "final")
    assert shown[("17", "540")] == ("'=HYPERLINK(\"http://x\")", "1", "1", "100.0", "final")
    assert shown[("22", "540")] == ("'=HYPERLINK(\"http://x\")", "1", "1", "100.0", "final")
    assert shown[("9", "")] == ("", "0", "0", "", "insufficient_data")


def test_export_json_carries_the_same_rows(province: None, capsys: pytest.CaptureFixture, tmp_path) -> None:
    target = tmp_path / "report.json"
    status, _, _ = _run(capsys, "kpi", "export", *PERIOD, "--format", "json", "--output", str(target))
    report = json.loads(target.read_text(encoding="utf-8"))
    assert status == 0
    assert (report["from"], report["to"], len(report["rows"])) == ("2026-11-01", "2026-11-02", 18)
    assert report["rows"][4] == {
        "code": "17", "name_vi": "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng", "unit": "%",
        "admin_unit": "52", "admin_unit_name": "Tỉnh Bình Định", "admin_unit_level": "province",
        "from": "2026-11-01", "to": "2026-11-02", "numerator": 1, "denominator": 2, "value": 50.0,
        "status": "final", "theta": "0.90"}


def test_storage_policies_say_there_is_nothing_to_set_on_plain_postgresql(
        database_url: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYKPI_DATABASE_URL", database_url)
    status, out, _ = _run(capsys, "kpi", "storage-policies")
    assert (status, out) == (0, "plain PostgreSQL: rollups are kept by a trigger; no refresh, compression or "
                                "retention policy\n")


def test_evidence_as_text_for_a_person(province: None, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = _run(capsys, "kpi", "evidence", "17", *PERIOD)
    assert status == 0
    assert out.splitlines() == [
        "#17 2026-11-01 → 2026-11-02: 1/2 điểm đạt (θ = 0.90) [final]",
        "  SEC-A                24/24  100.00%  đạt        cam-a1 12 h, cam-a2 14 h",
        "  SEC-B                20/24   83.33%  không đạt  cam-b 20 h",
    ]


def test_refresh_computes_the_stale_days_and_says_how_many(
        province: None, capsys: pytest.CaptureFixture) -> None:
    status, out, err = _run(capsys, "kpi", "refresh")
    assert status == 0
    assert out.startswith("1 days, 1 months, ")
    assert out.endswith(" months of device hours refreshed\n")
    # Not a terminal: the stage's line is drawn once, at its end.
    assert err.count("Tổng hợp theo điểm (ngày)") == 1 and "1/1" in err
    status, out, _ = _run(capsys, "kpi", "refresh")
    assert (status, out) == (0, "0 days, 0 months, 0 point-days, 0 months of device hours refreshed\n")
