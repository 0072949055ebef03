"""Form-based indicators: templates, submission rules, versions, completeness, the full report."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from base.periods import parse_period
from base.settings import Settings
from catalog import load_catalog
from forms.store import current_submissions, history, store_submission
from forms.submission import SubmissionError, parse_submission
from forms.template import csv_template
from forms.values import form_value
from report.build import build_report
from report.formats import render

CATALOG = load_catalog()
NOW = datetime(2027, 2, 1, tzinfo=UTC)


def _json_file(tmp_path: Path, document: dict, name: str = "submission.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def _submission(agency: str, period: str, values: dict[str, dict], unit: str = "") -> dict:
    return {"period": period, "agency": agency, "reporting_unit": unit,
            "indicators": {code: {"values": v} for code, v in values.items()}}


def _store(db: psycopg.Connection, path: Path, by: str = "chuyên viên A", now: datetime = NOW):
    return store_submission(db, parse_submission(path, CATALOG), catalog_id=CATALOG.id, file_name=path.name,
                            content=path.read_bytes(), submitted_by=by, channel="cli", now=now)


def _problems(path: Path) -> list[str]:
    with pytest.raises(SubmissionError) as raised:
        parse_submission(path, CATALOG)
    return raised.value.problems


def test_a_filled_in_template_round_trips_to_the_report(db: psycopg.Connection, tmp_path: Path) -> None:
    period = parse_period("2026")
    template = csv_template(CATALOG, "so-yt-gia-lai", period)
    filled = template.replace("residents_with_electronic_record,Số cư dân có bệnh án điện tử,",
                              "residents_with_electronic_record,Số cư dân có bệnh án điện tử,1450000")
    filled = filled.replace("population,Tổng số dân cư của tỉnh,", "population,Tổng số dân cư của tỉnh,3583693")
    path = tmp_path / "so-y-te-2026.csv"
    path.write_text(filled, encoding="utf-8")
    assert str(_store(db, path)) == "1 indicator(s) stored (0 superseding an earlier submission), 0 unchanged"
    rows = {r.code: r for r in build_report(db, CATALOG, period, settings=Settings(), now=NOW)}
    assert (rows["10"].numerator, rows["10"].denominator, rows["10"].value, rows["10"].status) == (
        1450000, 3583693, Decimal("40.46"), "final")
    assert rows["10"].source == "Sở Y tế tỉnh Gia Lai"
    assert rows["11"].status == "insufficient_data"  # left blank in the template


def test_every_problem_is_named_with_its_field(tmp_path: Path) -> None:
    path = _json_file(tmp_path, _submission("Sở Y tế tỉnh Gia Lai", "2026", {
        "10": {"residents_with_electronic_record": -3, "population": "ba triệu"},
        "11": {"facilities_with_ict_registration": 40, "health_facilities": 35},
        "12": {"schools": 100},
        "99": {"x": 1},
    }))
    assert _problems(path) == [
        f"{path}:indicators.10.values.residents_with_electronic_record: -3 is negative; counts are 0 or more",
        f"{path}:indicators.10.values.population: 'ba triệu' is not a whole number (write digits 0–9 only, e.g. 1250)",
        f"{path}:indicators.12.values.schools: Sở Y tế tỉnh Gia Lai does not report indicator 12 "
        "(Tình hình ứng dụng ICT trong kết nối gia đình và nhà trường) for 2026",
        f"{path}:indicators.99.values.x: indicator '99' is not in catalog 'binh-dinh-2268-2023'",
        f"{path}:indicators.11.values.facilities_with_ict_registration: facilities_with_ict_registration = 40 "
        "exceeds health_facilities = 35 (indicator 11)",
    ]


def test_indicator_14_may_exceed_100_percent_as_the_decision_writes_it(db: psycopg.Connection,
                                                                       tmp_path: Path) -> None:
    _store(db, _json_file(tmp_path, _submission("ubnd-cap-huyen", "2024", {
        "14": {"households_paying_electricity_online": 300, "households_paying_water_online": 250,
               "households": 500}})))
    value = form_value(CATALOG.indicator("14"), parse_period("2024"),
                       current_submissions(db, CATALOG.id, "2024"), CATALOG, now=NOW)
    assert (value.numerator, value.denominator, value.value) == (550, 500, Decimal("110.00"))


def test_the_successor_agency_submits_after_the_merger(tmp_path: Path) -> None:
    def file(agency: str, period: str) -> Path:
        return _json_file(tmp_path, _submission(agency, period, {"27": {"has_smart_city_policy": "Có"}}),
                          f"{agency}-{period}.json")

    assert parse_submission(file("Sở Thông tin và Truyền thông", "2024"), CATALOG).agency_id == "so-tttt"
    # The old names people still write resolve, through both 2025 successions, to the body in force.
    assert parse_submission(file("Sở Khoa học và Công nghệ", "2026"), CATALOG).agency_id == "so-khcn-gia-lai"
    assert parse_submission(file("Sở Thông tin và Truyền thông", "2026"), CATALOG).agency_id == "so-khcn-gia-lai"
    too_early = file("so-khcn-gia-lai", "2024")
    assert _problems(too_early) == [f"{too_early}:agency: Sở Khoa học và Công nghệ tỉnh Gia Lai does not exist "
                                    "in 2024; in force: none"]


def test_a_resubmission_supersedes_without_deleting(db: psycopg.Connection, tmp_path: Path) -> None:
    first = _json_file(tmp_path, _submission("so-gddt-gia-lai", "2026", {
        "12": {"schools_with_electronic_contact_book": 400, "schools": 700}}), "v1.json")
    second = _json_file(tmp_path, _submission("so-gddt-gia-lai", "2026", {
        "12": {"schools_with_electronic_contact_book": 420, "schools": 700}}), "v2.json")
    _store(db, first, by="cán bộ 1")
    again = _store(db, first, by="cán bộ 1")
    replaced = _store(db, second, by="cán bộ 2")
    chain = history(db, CATALOG.id, "12", "2026")
    assert (again.unchanged, replaced.superseded) == (["12"], ["12"])
    assert [(r["file_name"], r["submitted_by"], r["inputs"]["schools_with_electronic_contact_book"],
             r["superseded_by"] is None) for r in chain] == [
        ("v1.json", "cán bộ 1", 400, False), ("v2.json", "cán bộ 2", 420, True)]
    assert len(chain[0]["sha256"]) == 64


def test_incomplete_inputs_name_what_is_missing_and_from_whom(db: psycopg.Connection, tmp_path: Path) -> None:
    _store(db, _json_file(tmp_path, _submission("dien-luc-binh-dinh", "2024", {
        "14": {"households_paying_electricity_online": 300}})))
    value = form_value(CATALOG.indicator("14"), parse_period("2024"),
                       current_submissions(db, CATALOG.id, "2024"), CATALOG, now=NOW)
    assert value.status == "insufficient_data"
    assert value.missing == [
        "households_paying_water_online (Số hộ thanh toán nước trực tuyến) — nguồn: Công ty Điện lực Bình Định, "
        "Công ty Cổ phần Cấp thoát nước Bình Định, Ủy ban nhân dân cấp huyện",
        "households (Tổng số hộ gia đình trên địa bàn đô thị) — nguồn: Công ty Điện lực Bình Định, "
        "Công ty Cổ phần Cấp thoát nước Bình Định, Ủy ban nhân dân cấp huyện",
    ]


def test_district_figures_add_up_to_the_province(db: psycopg.Connection, tmp_path: Path) -> None:
    for unit, published, mandatory in (("540", 40, 50), ("549", 18, 30)):
        _store(db, _json_file(tmp_path, _submission("ubnd-cap-huyen", "2024", {
            "1": {"published_items": published, "mandatory_disclosure_items": mandatory}}, unit=unit), f"{unit}.json"))
    value = form_value(CATALOG.indicator("1"), parse_period("2024"),
                       current_submissions(db, CATALOG.id, "2024"), CATALOG, now=NOW)
    assert (value.numerator, value.denominator, value.value) == (58, 80, Decimal("72.50"))
    assert value.sources == ["ubnd-cap-huyen/540", "ubnd-cap-huyen/549"]


def test_the_survey_reports_share_answering_1_or_2_and_the_mean_score(db: psycopg.Connection,
                                                                      tmp_path: Path) -> None:
    _store(db, _json_file(tmp_path, _submission("so-xd", "2024", {"5": {
        "respondents_regressed": 10, "respondents_no_progress": 30, "respondents_unclear_progress": 40,
        "respondents_clear_progress": 120, "population": 1000}})))
    value = form_value(CATALOG.indicator("5"), parse_period("2024"),
                       current_submissions(db, CATALOG.id, "2024"), CATALOG, now=NOW)
    # (40 + 120) / 200 = 80 %; mean = (−10 + 0 + 40 + 240) / 200 = 1.35; as written: 160 / 1000 = 16 %
    assert (value.numerator, value.denominator, value.value) == (160, 200, Decimal("80.00"))
    assert value.details == {"mean_score": 1.35, "value_as_written": 16.0}


def test_indicator_27_is_yes_or_not_yet(db: psycopg.Connection, tmp_path: Path) -> None:
    _store(db, _json_file(tmp_path, _submission("so-tttt", "2024", {"27": {"has_smart_city_policy": "Chưa"}})))
    bad = _json_file(tmp_path, _submission("so-tttt", "2024", {"27": {"has_smart_city_policy": "maybe"}}), "bad.json")
    value = form_value(CATALOG.indicator("27"), parse_period("2024"),
                       current_submissions(db, CATALOG.id, "2024"), CATALOG, now=NOW)
    assert (value.value, value.status) == ("Chưa", "final")
    assert _problems(bad) == [f"{bad}:indicators.27.values.has_smart_city_policy: 'maybe' is not Có or Chưa"]


def test_the_report_has_every_indicator_grouped_by_layer_with_the_change(db: psycopg.Connection,
                                                                         tmp_path: Path) -> None:
    for period, served in (("2025", 300), ("2026", 450)):
        _store(db, _json_file(tmp_path, _submission("so-gddt-gia-lai" if period == "2026" else "so-gddt", period, {
            "12": {"schools_with_electronic_contact_book": served, "schools": 600}}), f"{period}.json"))
    period = parse_period("2026")
    rows = build_report(db, CATALOG, period, settings=Settings(), now=NOW)
    report = json.loads(render(rows, CATALOG, period, "json"))
    twelve = next(r for r in rows if r.code == "12")
    assert len(rows) == 27
    assert [layer["code"] for layer in report["layers"]] == ["A", "B", "C"]
    assert sum(len(g["indicators"]) for layer in report["layers"] for g in layer["groups"]) == 27
    assert (twelve.value, twelve.previous_value, twelve.change) == (Decimal("75.00"), Decimal("50.00"),
                                                                    Decimal("25.00"))
    assert {r.status for r in rows if r.kind == "sensor"} == {"insufficient_data"}  # no registry here


def build_report_rows_with_source(source: str) -> list:
    from report.build import ReportRow

    return [ReportRow("A", "Nhóm", None, "1", "Chỉ số", "%", "form", Decimal("50.00"), "final", 1, 2, source,
                      Decimal("62.50"), [])]


def test_csv_report_neutralises_formula_cells() -> None:
    rows = build_report_rows_with_source("=HYPERLINK(\"http://x\")")
    text = render(rows, CATALOG, parse_period("2026"), "csv")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert ",-12.5," in text  # a negative change is a number, not a formula to neutralise


def _fill_xlsx(template: bytes, values: dict[str, object], path: Path) -> Path:
    import io

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(template))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        input_id = row[header.index("input")].value
        if input_id in values:
            row[header.index("value")].value = values[input_id]
    book.save(path)
    return path


def test_an_xlsx_template_filled_in_excel_is_accepted(db: psycopg.Connection, tmp_path: Path) -> None:
    from forms.template import xlsx_template

    template = xlsx_template(CATALOG, "so-tttt", parse_period("2024"))
    path = _fill_xlsx(template, {"households_with_fibre": 210000, "households_with_fixed_broadband": 240000,
                                 "has_smart_city_policy": "Có"}, tmp_path / "so-tttt-2024.xlsx")
    result = _store(db, path)
    values = {r["indicator_code"]: dict(r["inputs"]) for r in current_submissions(db, CATALOG.id, "2024")}
    assert result.stored == ["23", "27"]
    assert values == {"23": {"households_with_fibre": 210000, "households_with_fixed_broadband": 240000},
                      "27": {"has_smart_city_policy": True}}


def test_an_xlsx_problem_names_the_cell(tmp_path: Path) -> None:
    from forms.template import xlsx_template

    template = xlsx_template(CATALOG, "so-tttt", parse_period("2024"))
    path = _fill_xlsx(template, {"households_with_fibre": 12.5}, tmp_path / "bad.xlsx")
    row = next(i for i, r in enumerate(template_rows(template), start=1) if r[5] == "households_with_fibre")
    assert _problems(path) == [f"{path}:H{row}: 12.5 is not a whole number"]


def template_rows(template: bytes) -> list[list[object]]:
    import io

    from openpyxl import load_workbook

    return [[c.value for c in r] for r in load_workbook(io.BytesIO(template)).active.iter_rows()]


def test_a_file_that_is_not_a_workbook_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "not.xlsx"
    path.write_bytes(b"PK\x03\x04 truncated")
    assert _problems(path) == [f"{path}: not a readable XLSX workbook (BadZipFile); save it as .xlsx"]


def test_the_shipped_examples_complete_all_21_form_indicators(db: psycopg.Connection) -> None:
    examples = sorted(Path(__file__).resolve().parents[1].glob("deploy/examples/forms/*.json"))
    for path in examples:
        _store(db, path, by="ví dụ")
    rows = build_report(db, CATALOG, parse_period("2026"), settings=Settings(), now=NOW)
    incomplete = {r.code: r.missing for r in rows if r.kind == "form" and r.status == "insufficient_data"}
    assert incomplete == {}
    assert sum(1 for r in rows if r.kind == "form") == 21


def test_another_indicator_set_loads_from_a_file_and_takes_submissions(db: psycopg.Connection,
                                                                       tmp_path: Path) -> None:
    other = {
        "id": "quoc-gia-v1", "title_vi": "Bộ chỉ số đô thị thông minh (thử)", "source": "thử nghiệm",
        "layers": [{"code": "A", "name_vi": "Lớp A"}],
        "agencies": [{"id": "so-a", "name_vi": "Sở A"}],
        "indicators": [{"code": "1", "layer": "A", "group_vi": "Nhóm 1", "name_vi": "Chỉ số thử", "name_en": "Trial",
                        "unit": "%", "agencies": ["so-a"], "kind": "form",
                        "inputs": [{"id": "done", "label_vi": "Đã làm", "role": "numerator", "maximum": 1000},
                                   {"id": "total", "label_vi": "Tổng", "role": "denominator", "maximum": 1000}]}],
    }
    catalog_path = tmp_path / "other.json"
    catalog_path.write_text(json.dumps(other, ensure_ascii=False), encoding="utf-8")
    catalog = load_catalog(catalog_path)
    path = _json_file(tmp_path, _submission("Sở A", "2026-Q1", {"1": {"done": 3, "total": 4}}))
    store_submission(db, parse_submission(path, catalog), catalog_id=catalog.id, file_name=path.name,
                     content=path.read_bytes(), submitted_by="x", channel="cli", now=NOW)
    value = form_value(catalog.indicator("1"), parse_period("2026-Q1"),
                       current_submissions(db, catalog.id, "2026-Q1"), catalog, now=NOW)
    assert (value.value, value.status) == (Decimal("75.00"), "final")


def test_history_shows_control_characters_as_escapes(db: psycopg.Connection, database_url: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    path = _json_file(tmp_path, _submission("so-yt-gia-lai", "2026", {"10": {"population": 3120000}}))
    submission = parse_submission(path, CATALOG)
    # As an older version stored it, before names were checked: a forged line and a terminal colour.
    store_submission(db, submission, catalog_id=CATALOG.id, file_name="a.json", content=b"{}",
                     submitted_by="A\nthis line is forged\x1b[31m", channel="api", now=NOW)
    monkeypatch.setenv("CITYKPI_DATABASE_URL", database_url)
    assert main(["forms", "history", "10", "--period", "2026"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    assert "by A\\nthis line is forged\\x1b[31m via api" in printed


def test_a_submitter_name_with_control_characters_is_refused_at_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    with pytest.raises(SystemExit) as exit_code:
        main(["forms", "submit", str(tmp_path / "x.json"), "--by", "A\x1b[31mB"])
    assert exit_code.value.code == 2
    assert "--by holds the unprintable character U+001B" in capsys.readouterr().err
