"""Administrative units with history: the file's checks, and the tree in force at a date."""

from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from registry.tree import descendants, tree_for_period, tree_instant_for_period, unit_tree
from registry.units import import_units, parse_units_csv, read_units
from registry.validation import Problems, RegistryFileError
from tests.registry_files import UNITS_HEADER, ZONE, write

EFFECTIVE = datetime(2026, 1, 1, tzinfo=UTC)

# A miniature of the 2025 reform: district D1 with communes C1, C2 until 2025-07-01; then province NEW
# whose ward W1 took over C1 and C2, with no district in between.
REFORM = (UNITS_HEADER
          + "OLD,Tỉnh Cũ,,province,,2025-07-01,NEW\n"
          + "D1,Huyện Một,OLD,district,,2025-07-01,W1\n"
          + "C1,Xã Một,D1,commune,,2025-07-01,W1\n"
          + "C2,Xã Hai,D1,commune,,2025-07-01,W1\n"
          + "NEW,Tỉnh Mới,,province,2025-07-01,,\n"
          + "W1,Phường Một,NEW,commune,2025-07-01,,\n")


def _import(db: psycopg.Connection, path: Path):
    problems = Problems(str(path))
    return import_units(db, read_units(path, ZONE, problems), effective=EFFECTIVE, problems=problems, zone=ZONE)


def test_a_units_file_with_bom_and_diacritics_loads(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "code,name,parent_code,level\n52,Tỉnh Bình Định,,province\n".encode())
    assert [(u.code, u.name, u.valid_from) for u in parse_units_csv(path, ZONE)] == [("52", "Tỉnh Bình Định", None)]


def test_unit_rows_are_checked_one_by_one(tmp_path: Path) -> None:
    path = write(tmp_path, "units.csv", UNITS_HEADER
                 + "52,Tỉnh Bình Định,,tỉnh,,,\n"
                 + "540,Thành phố Quy Nhơn,52,district,2025-07-01,2025-01-01,\n"
                 + "541,,52,district,,,GL\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_units_csv(path, ZONE)
    assert raised.value.problems == [
        f"{path}:2:level: unknown level 'tỉnh'; expected one of province, district, commune",
        f"{path}:3:valid_to: 2025-01-01 is not after valid_from 2025-07-01",
        f"{path}:4:name: empty",
    ]


def test_the_tree_is_checked_as_a_whole(db: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "units.csv", UNITS_HEADER
                 + "52,Tỉnh Bình Định,,province,,,\n"
                 + "540,Thành phố Quy Nhơn,99,district,,,\n"
                 + "541,Xã Ảo,52,district,,2025-07-01,NOWHERE\n"
                 + "S1,Phường Trần Phú,S2,commune,,,\n"
                 + "S2,Phường Lê Lợi,52,commune,,,\n"
                 + "D9,Huyện Vòng,P9,district,,,\n"
                 + "P9,Tỉnh Vòng,D9,province,,,\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [
        f"{path}:3:parent_code: unknown parent '99'",
        f"{path}:4:successor_codes: successor 'NOWHERE' does not exist; list it in this file",
        f"{path}:5:parent_code: parent S2 is a commune; a commune's parent must be a district or a province",
        f"{path}:7:parent_code: the parents loop: D9 → P9 → D9",
        f"{path}:8:parent_code: a province has no parent (got 'D9')",
    ]
    assert db.execute("SELECT count(*) AS n FROM admin_units").fetchone()["n"] == 0


def test_a_parent_must_be_in_force_when_its_child_begins(db: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "units.csv", UNITS_HEADER
                 + "OLD,Tỉnh Cũ,,province,,2025-07-01,W1\n"
                 + "W1,Phường Một,OLD,commune,2025-07-01,,\n")
    with pytest.raises(RegistryFileError) as raised:
        _import(db, path)
    assert raised.value.problems == [f"{path}:3:parent_code: parent OLD is not in force on 2025-07-01"]


def test_reimporting_units_changes_nothing(db: psycopg.Connection, tmp_path: Path) -> None:
    path = write(tmp_path, "units.csv", REFORM)
    first = _import(db, path)
    again = _import(db, path)
    assert (first.added, str(again)) == (6, "0 changed (0 added, 0 changed, 0 closed)")


def test_the_tree_before_the_reform_has_districts(db: psycopg.Connection, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "units.csv", REFORM))
    tree = unit_tree(db, datetime(2025, 6, 30, tzinfo=ZONE))
    assert (tree.roots, tree.children) == (["OLD"], {"OLD": ["D1"], "D1": ["C1", "C2"]})


def test_the_tree_after_the_reform_has_communes_under_the_province(db: psycopg.Connection, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "units.csv", REFORM))
    tree = unit_tree(db, datetime(2025, 7, 1, tzinfo=ZONE))
    assert (tree.roots, tree.children) == (["NEW"], {"NEW": ["W1"]})


def test_descendants_follow_the_tree_in_force_at_the_date(db: psycopg.Connection, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "units.csv", REFORM))
    before, after = datetime(2025, 6, 30, 23, tzinfo=ZONE), datetime(2025, 7, 1, tzinfo=ZONE)
    assert descendants(db, "OLD", before) == ["C1", "C2", "D1", "OLD"]
    assert descendants(db, "OLD", after) == []
    assert descendants(db, "NEW", after) == ["NEW", "W1"]


def test_a_period_spanning_the_reform_is_broken_down_by_the_tree_of_its_last_bucket() -> None:
    assert tree_instant_for_period(date(2025, 6, 1), date(2025, 8, 1), ZONE) == datetime(2025, 7, 31, 23,
                                                                                          tzinfo=ZONE)
    assert tree_instant_for_period(date(2025, 6, 1), date(2025, 7, 1), ZONE) == datetime(2025, 6, 30, 23,
                                                                                          tzinfo=ZONE)


def test_a_period_spanning_the_reform_says_which_tree_it_used(db: psycopg.Connection, tmp_path: Path) -> None:
    _import(db, write(tmp_path, "units.csv", REFORM))
    tree = tree_for_period(db, date(2025, 6, 1), date(2025, 8, 1), ZONE)
    assert (tree.at, tree.roots) == (datetime(2025, 7, 31, 23, tzinfo=ZONE), ["NEW"])
