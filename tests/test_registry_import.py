"""Importing key points: every problem as FILE:ROW:COLUMN, all-or-nothing, idempotent, history kept."""

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from registry.points import parse_points, read_points
from registry.points_import import import_points
from registry.validation import Problems, RegistryFileError
from tests.registry_files import POINTS_HEADER, ZONE, seed_units, write

HEADER = POINTS_HEADER


def test_every_bad_row_is_reported_as_file_row_column(tmp_path: Path) -> None:
    path = write(tmp_path, "points.csv", HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Chợ Lớn,security_pont,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-3,Cầu Đôi,security_point,540,95.3,109.22,2025-01-01,\n"
                 + "SEC-4,Bến xe,security_point,540,13.77,109.22,2025-01-01,2024-12-31\n"
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:3:categories: unknown category 'security_pont'; expected some of "
        "security_point;public_place;transit_stop;water_source;air_hotspot;wastewater_facility",
        f"{path}:4:lat: 95.3 is outside Vietnam (6.0–24.0)",
        f"{path}:5:valid_to: 2024-12-31 is not after valid_from 2025-01-01",
        f"{path}:6:point_id: SEC-1 from 2025-01-01 already on row 2",
    ]


def test_points_of_hoang_sa_and_truong_sa_are_inside_the_default_box(tmp_path: Path) -> None:
    path = write(tmp_path, "points.csv", HEADER
                 + "AIR-HS,Đảo Hoàng Sa,air_hotspot,540,16.53,111.61,2025-01-01,\n"
                 + "AIR-TS,Đảo Trường Sa Lớn,air_hotspot,540,8.645,111.92,2025-01-01,\n")
    assert [p.point_id for p in parse_points(path, ZONE)] == ["AIR-HS", "AIR-TS"]


def test_a_narrower_box_is_configurable(tmp_path: Path) -> None:
    from base.vocabulary import Bounds

    path = write(tmp_path, "points.csv", HEADER + "AIR-HS,Đảo Hoàng Sa,air_hotspot,540,16.53,111.61,2025-01-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE, bounds=Bounds.parse("13.5,14.7,108.5,109.5"))
    assert raised.value.problems == [f"{path}:2:lat: 16.53 is outside the configured box (13.5–14.7)",
                                     f"{path}:2:lon: 111.61 is outside the configured box (108.5–109.5)"]


def test_non_utf8_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    # "Ngã" as a legacy Windows code page writes it: 0xE3 is not valid UTF-8 here.
    path.write_bytes(HEADER.encode() + b"SEC-1,Ng\xe3,security_point,540,13.7,109.2,2025-01-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:2:-: not UTF-8 (invalid byte 0xe3); save the file as UTF-8"]


def test_a_point_in_an_unknown_unit_is_refused_with_the_files_other_problems(db: psycopg.Connection,
                                                                             tmp_path: Path) -> None:
    seed_units(db)
    path = write(tmp_path, "points.csv", HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,999,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Chợ Lớn,security_point,540,13.77,200,2025-01-01,\n")
    problems = Problems(str(path))
    points = read_points(path, ZONE, problems)
    with pytest.raises(RegistryFileError) as raised:
        import_points(db, points, effective=datetime(2026, 1, 1, tzinfo=UTC), problems=problems, zone=ZONE)
    assert raised.value.problems == [
        f"{path}:2:admin_unit: unknown administrative unit '999'; import it with the units first",
        f"{path}:3:lon: 200 is outside Vietnam (102.0–118.0)",
    ]
    assert db.execute("SELECT count(*) AS n FROM key_points").fetchone()["n"] == 0


def test_reimporting_the_same_file_changes_nothing(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    path = write(tmp_path, "points.csv", "\ufeff" + HEADER
                 + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                 + "SEC-2,Quảng trường,security_point;public_place,540,13.77,109.22,2025-01-01,\n")
    effective = datetime(2026, 1, 1, tzinfo=UTC)
    first = import_points(db, parse_points(path, ZONE), effective=effective)
    again = import_points(db, parse_points(path, ZONE), effective=effective)
    assert (first.added, first.total) == (2, 2)
    assert str(again) == "0 changed (0 added, 0 changed, 0 closed)"


def test_a_point_missing_from_a_newer_list_is_closed_not_deleted(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    old = write(tmp_path, "old.csv", HEADER
                + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                + "SEC-2,Chợ Lớn,security_point,540,13.77,109.22,2025-01-01,\n")
    new = write(tmp_path, "new.csv", HEADER + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n")
    import_points(db, parse_points(old, ZONE), effective=datetime(2025, 1, 1, tzinfo=UTC))
    count = import_points(db, parse_points(new, ZONE), effective=datetime(2026, 3, 1, tzinfo=ZONE))
    rows = db.execute("SELECT point_id, valid_to FROM key_points ORDER BY point_id").fetchall()
    assert (count.closed, count.closed_ids) == (1, ["SEC-2"])
    assert [(r["point_id"], r["valid_to"]) for r in rows] == [
        ("SEC-1", None), ("SEC-2", datetime(2026, 3, 1, tzinfo=ZONE))]


def test_a_dry_run_reports_the_diff_and_writes_nothing(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    old = write(tmp_path, "old.csv", HEADER
                + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
                + "SEC-2,Chợ Lớn,security_point,540,13.77,109.22,2025-01-01,\n")
    new = write(tmp_path, "new.csv", HEADER
                + "SEC-1,Ngã tư Lê Lợi (đã đổi tên),security_point,540,13.77,109.22,2025-01-01,\n"
                + "SEC-3,Cầu Đôi,security_point,549,13.87,109.1,2025-01-01,\n")
    import_points(db, parse_points(old, ZONE), effective=datetime(2025, 1, 1, tzinfo=UTC))
    before = db.execute("SELECT * FROM key_points ORDER BY point_id").fetchall()
    count = import_points(db, parse_points(new, ZONE), effective=datetime(2026, 3, 1, tzinfo=ZONE), dry_run=True)
    assert count.diff_lines() == ["added 1: SEC-3", "closed 1: SEC-2", "changed 1: SEC-1"]
    assert db.execute("SELECT * FROM key_points ORDER BY point_id").fetchall() == before


def test_a_new_version_must_not_overlap_the_registered_one(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    import_points(db, parse_points(write(tmp_path, "v1.csv", HEADER
                                         + "SEC-1,Ngã tư,security_point,540,13.77,109.22,2025-01-01,\n"), ZONE),
                  effective=datetime(2025, 1, 1, tzinfo=UTC))
    path = write(tmp_path, "v2.csv", HEADER + "SEC-1,Ngã tư,security_point,549,13.77,109.22,2025-07-01,\n")
    with pytest.raises(RegistryFileError) as raised:
        import_points(db, parse_points(path, ZONE), effective=datetime(2026, 1, 1, tzinfo=ZONE),
                      problems=Problems(str(path)), zone=ZONE)
    assert raised.value.problems == [
        f"{path}:2:valid_from: SEC-1 overlaps its version 2025-01-01–2026-01-01 (in the registry); a point has "
        "one version at a time, so end the earlier one with valid_to"]


def test_a_new_version_that_ends_the_old_one_in_the_same_file_is_accepted(db: psycopg.Connection,
                                                                          tmp_path: Path) -> None:
    seed_units(db)
    import_points(db, parse_points(write(tmp_path, "v1.csv", HEADER
                                         + "SEC-1,Ngã tư,security_point,540,13.77,109.22,2025-01-01,\n"), ZONE),
                  effective=datetime(2025, 1, 1, tzinfo=UTC))
    path = write(tmp_path, "v2.csv", HEADER
                 + "SEC-1,Ngã tư,security_point,540,13.77,109.22,2025-01-01,2025-07-01\n"
                 + "SEC-1,Ngã tư,security_point,549,13.77,109.22,2025-07-01,\n")
    count = import_points(db, parse_points(path, ZONE), effective=datetime(2026, 1, 1, tzinfo=ZONE))
    assert (count.added, count.changed, count.closed) == (1, 1, 0)


def test_the_denominator_holds_the_points_in_force_during_the_period(db: psycopg.Connection,
                                                                     tmp_path: Path) -> None:
    from registry.queries import points_in_force

    seed_units(db)
    path = write(tmp_path, "points.csv", HEADER
                 + "BUS-1,Ended inside,transit_stop,540,13.77,109.22,2025-01-01,2025-03-01\n"
                 + "BUS-2,Started inside,transit_stop,540,13.77,109.22,2025-03-01,\n"
                 + "BUS-3,Ended at the start,transit_stop,540,13.77,109.22,2024-01-01,2025-01-01\n"
                 + "BUS-4,Starts at the end,transit_stop,540,13.77,109.22,2025-06-01,\n"
                 + "SEC-1,Other category,security_point,540,13.77,109.22,2024-01-01,\n")
    import_points(db, parse_points(path, ZONE), effective=datetime(2024, 1, 1, tzinfo=UTC))
    rows = points_in_force(db, "transit_stop", datetime(2025, 1, 1, tzinfo=ZONE), datetime(2025, 6, 1, tzinfo=ZONE))
    assert [r["point_id"] for r in rows] == ["BUS-1", "BUS-2"]


def test_broken_quoting_is_reported_on_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, "points.csv", HEADER
                 + "SEC-1,Ngã tư,security_point,540,13.77,109.22,2025-01-01,\n"
                 + 'SEC-2,"Chợ "Lớn",security_point,540,13.77,109.22,2025-01-01,\n')
    with pytest.raises(RegistryFileError) as raised:
        parse_points(path, ZONE)
    assert raised.value.problems == [
        f"{path}:3:-: not readable as CSV (',' expected after '\"'); check the quoting"]
