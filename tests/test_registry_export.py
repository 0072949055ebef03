"""Exports read back unchanged: import(export(x)) is "0 changed", and spreadsheets never run a cell."""

import io
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.export import export_points_csv, export_points_geojson
from registry.points import parse_points
from registry.points_import import import_points
from registry.validation import escape_cell, unescape_cell
from tests.registry_files import POINTS_HEADER, ZONE, seed_units, write

EFFECTIVE = datetime(2026, 1, 1, tzinfo=UTC)
# Awkward on purpose: formula-like names and ids, an apostrophe already there, quotes and commas, a
# timestamp that is not local midnight, coordinates with every digit a float has, two versions of a point.
AWKWARD = (POINTS_HEADER
           + 'SEC-1,"=HYPERLINK(""http://x"",""Chợ Lớn, cổng 2"")",security_point;public_place,540,'
             '13.771234567891234,109.22000000000001,2025-01-01T08:30:00+07:00,\n'
           + "-SEC-2,@Quảng trường,public_place,540,13.77,109.22,2025-01-01,2025-07-01\n"
           + "-SEC-2,'+84 cổng chính,public_place,549,13.88,109.1,2025-07-01,\n"
           + "SEC-3,'Nhà văn hoá',security_point,549,13.88,109.1,2025-01-01,\n")


@pytest.fixture
def registry(db: psycopg.Connection, tmp_path: Path) -> None:
    seed_units(db)
    import_points(db, parse_points(write(tmp_path, "points.csv", AWKWARD), ZONE), effective=EFFECTIVE)


@pytest.mark.parametrize(("export", "name"), [(export_points_csv, "export.csv"),
                                              (export_points_geojson, "export.geojson")])
def test_importing_an_export_changes_nothing(db: psycopg.Connection, registry: None, tmp_path: Path,
                                             export, name: str) -> None:
    before = db.execute("SELECT * FROM key_points ORDER BY point_id, valid_from").fetchall()
    out = io.StringIO()
    export(db, out, ZONE)
    count = import_points(db, parse_points(write(tmp_path, name, out.getvalue()), ZONE), effective=EFFECTIVE)
    assert str(count) == "0 changed (0 added, 0 changed, 0 closed)"
    assert db.execute("SELECT * FROM key_points ORDER BY point_id, valid_from").fetchall() == before


def test_csv_cells_a_spreadsheet_would_run_get_an_apostrophe(db: psycopg.Connection, registry: None) -> None:
    out = io.StringIO()
    export_points_csv(db, out, ZONE)
    assert out.getvalue().splitlines() == [
        POINTS_HEADER.strip(),
        "'-SEC-2,'@Quảng trường,public_place,540,13.77,109.22,2025-01-01,2025-07-01",
        "'-SEC-2,'+84 cổng chính,public_place,549,13.88,109.1,2025-07-01,",
        "SEC-1,\"'=HYPERLINK(\"\"http://x\"\",\"\"Chợ Lớn, cổng 2\"\")\",security_point;public_place,540,"
        "13.771234567891234,109.22000000000001,2025-01-01T08:30:00+07:00,",
        "SEC-3,'Nhà văn hoá',security_point,549,13.88,109.1,2025-01-01,",
    ]


def test_an_export_at_a_date_holds_the_versions_in_force_then(db: psycopg.Connection, registry: None) -> None:
    out = io.StringIO()
    export_points_csv(db, out, ZONE, at=datetime(2025, 8, 1, tzinfo=ZONE))
    assert [line.split(",")[0] + "," + line.split(",")[-2] for line in out.getvalue().splitlines()[1:]] == [
        "'-SEC-2,2025-07-01", "SEC-1,2025-01-01T08:30:00+07:00", "SEC-3,2025-01-01"]


@given(st.text())
def test_the_spreadsheet_escape_is_reversible(text: str) -> None:
    assert unescape_cell(escape_cell(text)) == text
