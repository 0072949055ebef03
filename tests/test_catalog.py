"""The indicator catalog of Decision 2268/QĐ-UBND (Bình Định, 2023), as data."""

import datetime
import json
from decimal import Decimal
from importlib.resources import files

import pytest

from catalog import Catalog, CatalogError, UnknownIndicator, load_catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def packaged_catalog_data() -> dict:
    return json.loads((files("catalog") / "sets" / "binh-dinh-2268-2023.json").read_text(encoding="utf-8"))


def test_packaged_catalog_holds_the_27_indicators_of_the_decision(catalog):
    assert [indicator.code for indicator in catalog.indicators] == [str(n) for n in range(1, 28)]


def test_sensor_indicators_are_the_six_coverage_indicators_in_code_order(catalog):
    assert [(i.code, i.sensor.category, i.sensor.device_kind) for i in catalog.sensor_indicators()] == [
        ("9", "transit_stop", "bus_display"),
        ("17", "security_point", "cctv"),
        ("18", "water_source", "water_monitor"),
        ("19", "air_hotspot", "air_monitor"),
        ("21", "wastewater_facility", "wastewater_station"),
        ("22", "public_place", "wifi_ap"),
    ]


def test_form_indicators_name_the_counts_agencies_submit(catalog):
    forms = [i for i in catalog.indicators if i.kind == "form"]
    assert len(forms) == 21
    assert all(i.inputs and i.sensor is None for i in forms)


def test_indicator_name_is_the_official_vietnamese_name_verbatim(catalog):
    assert catalog.indicator("17").name_vi == "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng"


def test_every_sensor_indicator_covers_a_point_at_ninety_percent_availability(catalog):
    thetas = [i.sensor.theta for i in catalog.sensor_indicators()]
    assert thetas == [Decimal("0.90")] * 6
    assert all(isinstance(theta, Decimal) for theta in thetas)


def test_only_the_yes_no_indicator_is_not_a_percentage(catalog):
    assert {i.code: i.unit for i in catalog.indicators if i.unit != "%"} == {"27": "Có/Chưa"}
    assert [i.role for i in catalog.indicator("27").inputs] == ["flag"]


def test_household_payments_may_exceed_the_household_total(catalog):
    assert [i.code for i in catalog.indicators if i.numerator_may_exceed_denominator] == ["14"]
    assert [i.role for i in catalog.indicator("14").inputs] == ["numerator", "numerator", "denominator"]


def test_survey_indicator_takes_one_count_per_answer_level_and_the_population(catalog):
    roles = [i.role for i in catalog.indicator("5").inputs]
    assert roles == ["level_-1", "level_0", "level_1", "level_2", "denominator"]


def test_swapped_numbering_of_the_overview_table_is_recorded(catalog):
    assert any("5.1" in note for note in catalog.indicator("20").notes)
    assert any("5.1" in note for note in catalog.indicator("21").notes)


def test_unknown_indicator_code_is_named_in_the_error(catalog):
    with pytest.raises(UnknownIndicator) as raised:
        catalog.indicator("28")
    assert raised.value.code == "28"
    assert isinstance(raised.value, KeyError)


def test_broken_catalog_lists_every_problem_with_its_location(tmp_path):
    data = packaged_catalog_data()
    data["indicators"][1]["code"] = "1"
    data["indicators"][2]["agencies"] = ["so-khong-ton-tai"]
    data["indicators"][16]["sensor"]["theta"] = "1.5"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    with pytest.raises(CatalogError) as raised:
        load_catalog(path)

    assert sorted(str(raised.value).splitlines()) == [
        f"{path}:indicators[16].sensor.theta: must be in (0, 1]",
        f"{path}:indicators[1].code: duplicate code '1' (first at indicators[0])",
        f"{path}:indicators[2].agencies[0]: unknown agency 'so-khong-ton-tai'",
    ]


def test_sensor_indicator_without_a_sensor_spec_is_rejected(tmp_path):
    data = packaged_catalog_data()
    data["indicators"][8]["sensor"] = None
    path = tmp_path / "no-sensor.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    with pytest.raises(CatalogError, match=r"indicators\[8\]\.sensor: required for a sensor indicator"):
        load_catalog(path)


def test_unknown_successor_is_rejected(tmp_path):
    data = packaged_catalog_data()
    data["agencies"][0]["successors"] = ["ubnd-cap-tinh-khong-co"]
    path = tmp_path / "bad-successor.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    with pytest.raises(CatalogError, match=r"agencies\[0\]\.successors\[0\]: unknown agency"):
        load_catalog(path)


def test_merged_agency_is_accepted_before_the_merger(catalog):
    assert catalog.agency_accepts("22", "so-tttt", datetime.date(2024, 6, 1))


def test_merged_agency_is_not_accepted_after_the_merger(catalog):
    assert not catalog.agency_accepts("22", "so-tttt", datetime.date(2026, 1, 15))


def test_successor_agency_is_accepted_after_the_merger(catalog):
    assert catalog.agency_accepts("22", "so-khcn", datetime.date(2025, 3, 1))


def test_successor_agency_is_not_accepted_before_the_merger(catalog):
    assert not catalog.agency_accepts("22", "so-khcn", datetime.date(2025, 2, 28))


def test_successor_of_a_successor_is_accepted_after_the_province_merger(catalog):
    assert catalog.agency_accepts("22", "so-khcn-gia-lai", datetime.date(2026, 1, 15))
    assert not catalog.agency_accepts("22", "so-khcn", datetime.date(2026, 1, 15))


def test_communes_and_province_take_over_district_submissions(catalog):
    day = datetime.date(2025, 7, 1)
    assert not catalog.agency_accepts("1", "ubnd-cap-huyen", day)
    assert catalog.agency_accepts("1", "ubnd-cap-xa", day)
    assert catalog.agency_accepts("1", "ubnd-tinh-gia-lai", day)
    assert not catalog.agency_accepts("1", "ubnd-cap-xa", datetime.date(2025, 6, 30))


def test_agency_the_indicator_does_not_name_is_not_accepted(catalog):
    assert not catalog.agency_accepts("9", "so-yt", datetime.date(2024, 6, 1))
