"""The DESIGN rules of "What a coverage number means", one behaviour per test, expectations computed by hand.

All on #17 (cameras at security points, θ = 0.90 in the catalog) unless said otherwise.
"""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from base.settings import Settings
from catalog import load_catalog
from kpi.indicators import sensor_value
from registry.tree import UnknownAdminUnit
from tests.helpers import BACKENDS
from tests.kpi_builders import beats, device, every_hour, hours, local, point, unit, value_every_way


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here gives the same numbers on plain PostgreSQL and on TimescaleDB."""
    return request.param


DAY = date(2026, 11, 1)
LONG_AFTER = datetime(2026, 12, 1, tzinfo=UTC)


def _value(db: psycopg.Connection, days: int = 1, *, code: str = "17", admin_unit: str | None = None,
           first: date = DAY):
    return value_every_way(db, code, first, first + timedelta(days=days), now=LONG_AFTER, admin_unit=admin_unit)


def _by_point(value) -> dict[str, tuple]:
    return {e.point_id: (e.buckets_up, e.buckets_in_force, e.covered) for e in value.evidence}


def test_the_catalog_gives_every_sensor_indicator_theta_0_90() -> None:
    assert {i.code: i.sensor.theta for i in load_catalog().sensor_indicators()} == {
        "9": Decimal("0.90"), "17": Decimal("0.90"), "18": Decimal("0.90"), "19": Decimal("0.90"),
        "21": Decimal("0.90"), "22": Decimal("0.90")}


def test_a_point_up_89_percent_of_its_hours_is_not_covered_and_91_percent_is(db: psycopg.Connection) -> None:
    # Both points open at 20:00 local on the first of five days: 120 - 20 = 100 buckets in force.
    opened = local(DAY, 20, 0)
    in_force = every_hour(DAY, 5)[20:]
    point(db, "SEC-89", ["security_point"], valid_from=opened)
    device(db, "cam-89", "SEC-89")
    beats(db, "cam-89", in_force[:89])
    point(db, "SEC-91", ["security_point"], valid_from=opened)
    device(db, "cam-91", "SEC-91")
    beats(db, "cam-91", in_force[:91])
    value = _value(db, days=5)
    assert _by_point(value) == {"SEC-89": (89, 100, False), "SEC-91": (91, 100, True)}
    assert (value.numerator, value.denominator, value.value) == (1, 2, Decimal("50.00"))


def test_two_devices_with_complementary_hours_make_their_point_up_all_day(db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-day", "SEC-A")
    device(db, "cam-night", "SEC-A")
    beats(db, "cam-day", hours(DAY, *range(6, 18)))             # 06:00–17:59, 12 h
    beats(db, "cam-night", hours(DAY, *range(0, 8), *range(16, 24)))  # 16 h, 4 of them shared with cam-day
    evidence = _value(db).evidence[0]
    assert (evidence.buckets_up, evidence.buckets_in_force, evidence.covered) == (24, 24, True)
    assert evidence.device_up_hours == {"cam-day": 12, "cam-night": 16}


def test_a_device_moved_at_noon_serves_each_point_only_while_bound_to_it(db: psycopg.Connection) -> None:
    noon = local(DAY, 12, 0)
    point(db, "SEC-A", ["security_point"])
    point(db, "SEC-B", ["security_point"])
    device(db, "cam-m", "SEC-A", valid_to=noon)
    device(db, "cam-m", "SEC-B", valid_from=noon)
    device(db, "cam-b", "SEC-B")
    beats(db, "cam-m", hours(DAY, *range(24)))                  # healthy all day, wherever it hangs
    beats(db, "cam-b", hours(DAY, *range(10)))                  # B's own camera, 00:00–09:59
    value = _value(db)
    assert _by_point(value) == {"SEC-A": (12, 24, False), "SEC-B": (22, 24, True)}  # B: 10 + 12 = 22 ≥ 21.6
    assert {e.point_id: e.device_up_hours for e in value.evidence} == {
        "SEC-A": {"cam-m": 12}, "SEC-B": {"cam-m": 12, "cam-b": 10}}


def test_a_point_opened_mid_period_is_judged_on_the_buckets_starting_after_it_opened(db: psycopg.Connection) -> None:
    point(db, "SEC-18", ["security_point"], valid_from=local(DAY, 18, 0))   # 6 + 24 = 30 buckets
    point(db, "SEC-1820", ["security_point"], valid_from=local(DAY, 18, 20))  # in force at 19:00 first: 29
    for p in ("SEC-18", "SEC-1820"):
        device(db, f"cam-{p}", p)
        beats(db, f"cam-{p}", every_hour(DAY, 2)[:44])           # down from 20:00 on day 2
    assert _by_point(_value(db, days=2)) == {"SEC-18": (26, 30, False), "SEC-1820": (25, 29, False)}
    # 26/30 = 0.867 and 25/29 = 0.862: the heartbeats from before the point opened did not count


def test_a_point_closed_before_its_first_whole_bucket_is_not_in_the_denominator(db: psycopg.Connection) -> None:
    point(db, "SEC-BRIEF", ["security_point"], valid_from=local(DAY, 9, 10), valid_to=local(DAY, 9, 50))
    point(db, "SEC-ALL", ["security_point"])
    assert _by_point(_value(db)) == {"SEC-ALL": (0, 24, False)}


def test_the_period_is_local_days_so_23_30_local_on_the_last_day_counts(db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(DAY, *range(1, 22)))               # 01:30–21:30, 21 h
    beats(db, "cam-a", [local(DAY, 23, 30)])                    # 16:30 UTC on the same date: in
    beats(db, "cam-a", [local(DAY - timedelta(days=1), 23, 30), local(DAY + timedelta(days=1), 0, 30)])  # out
    assert _by_point(_value(db)) == {"SEC-A": (22, 24, True)}   # 22/24 = 0.917; a UTC day would give 21/24


def test_only_devices_of_the_indicators_kind_count(db: psycopg.Connection) -> None:
    point(db, "PUB-A", ["security_point", "public_place"])
    device(db, "cam-a", "PUB-A")
    device(db, "wifi-a", "PUB-A", kind="wifi_ap")
    beats(db, "cam-a", hours(DAY, *range(12)))
    beats(db, "wifi-a", hours(DAY, *range(24)), kind="wifi_ap")
    assert _by_point(_value(db, code="17")) == {"PUB-A": (12, 24, False)}
    assert _by_point(_value(db, code="22")) == {"PUB-A": (24, 24, True)}


def test_the_current_period_counts_only_hours_that_have_ended(db: psycopg.Connection) -> None:
    point(db, "SEC-A", ["security_point"])
    device(db, "cam-a", "SEC-A")
    beats(db, "cam-a", hours(DAY, *range(10)))
    db.commit()
    value = sensor_value(db, "17", DAY, DAY + timedelta(days=30), settings=Settings(), now=local(DAY, 10, 59))
    assert (_by_point(value), value.status) == ({"SEC-A": (10, 10, True)}, "provisional")


def _province_with_districts(db: psycopg.Connection) -> None:
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district")
    unit(db, "541", "52", "district")
    unit(db, "21550", "540", "commune")
    for point_id, unit_code, up_hours in (("SEC-C1", "21550", 24), ("SEC-D1", "540", 12), ("SEC-D2", "541", 23),
                                          ("SEC-X", "999", 24)):
        point(db, point_id, ["security_point"], admin_unit=unit_code)
        device(db, f"cam-{point_id}", point_id)
        beats(db, f"cam-{point_id}", hours(DAY, *range(up_hours)))


def test_a_unit_counts_its_own_points_and_its_descendants(db: psycopg.Connection) -> None:
    _province_with_districts(db)
    shown = {code: (v.numerator, v.denominator, v.value) for code in ("52", "540", "541", "21550")
             for v in [_value(db, admin_unit=code)]}
    assert shown == {"52": (2, 3, Decimal("66.67")), "540": (1, 2, Decimal("50.00")),
                     "541": (1, 1, Decimal("100.00")), "21550": (1, 1, Decimal("100.00"))}
    whole = _value(db)                                          # SEC-X names no known unit: only here
    assert (whole.numerator, whole.denominator) == (3, 4)


def test_an_unknown_unit_is_refused_by_name(db: psycopg.Connection) -> None:
    _province_with_districts(db)
    with pytest.raises(UnknownAdminUnit, match=re.escape(
            "administrative unit '999' is not in the unit tree in force at 2026-11-01T23:00:00+07:00")):
        _value(db, admin_unit="999")


def test_units_are_those_in_force_in_the_last_bucket_with_retired_units_followed_to_successors(
        db: psycopg.Connection) -> None:
    # District 540 is abolished at the start of 3 Nov; commune 21550 then reports to the province directly.
    abolished = local(DAY + timedelta(days=2), 0, 0)
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district", valid_to=abolished, successors=("52",))
    unit(db, "21550", "540", "commune", valid_to=abolished)
    unit(db, "21550", "52", "commune", valid_from=abolished)
    point(db, "SEC-C1", ["security_point"], admin_unit="21550")
    point(db, "SEC-D1", ["security_point"], admin_unit="540")
    device(db, "cam-c1", "SEC-C1")
    beats(db, "cam-c1", every_hour(DAY, 3))
    before = _value(db, days=2, admin_unit="540")               # last bucket 2 Nov 23:00: 540 in force
    assert (before.numerator, before.denominator) == (1, 2)
    with pytest.raises(UnknownAdminUnit):
        _value(db, days=3, admin_unit="540")                   # last bucket 3 Nov 23:00: 540 is gone
    province = _value(db, days=3, admin_unit="52")              # SEC-D1 reaches 52 through 540's successor
    assert (province.numerator, province.denominator) == (1, 2)
    commune = _value(db, days=3, admin_unit="21550")
    assert (commune.numerator, commune.denominator) == (1, 1)
