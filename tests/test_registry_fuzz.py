"""No input crashes the registry's parsers: they return rows or raise RegistryFileError, nothing else."""

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.devices import parse_devices_csv
from registry.points import parse_points
from registry.units import parse_units_csv
from registry.validation import RegistryFileError
from tests.registry_files import DEVICES_HEADER, POINTS_HEADER, UNITS_HEADER, ZONE

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cells near the edges of what the checks accept: dates, numbers, ids, quotes and separators.
_CELL = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "2025-01-01", "2025-02-30", "2025-01-01T07:00:00+07:00", "0001-01-01T00:00:00+14:00",
                     "9999-12-31", "13.77", "109.22", "nan", "-inf", "1e309", "540", "52", "security_point",
                     "cctv", "transit_stop;public_place", "'=1+1", '"', "a,b", "\n", "\r\n", "\x00", "\ufeff",
                     "9" * 5000, "district", "commune", "province", "SEC-1", "60", "-5"]))


def _rows(header: str) -> st.SearchStrategy[str]:
    width = header.count(",") + 1
    row = st.lists(_CELL, min_size=width - 2, max_size=width + 1).map(lambda cells: ",".join(cells))
    return st.lists(row, max_size=6).map(lambda rows: header + "\n".join(rows))


def _survives(parse: Callable[[Path], object], name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            parse(path)
        except RegistryFileError as exc:
            assert exc.problems and all(p.startswith(f"{path}:") for p in exc.problems)


@FUZZ
@given(st.binary(max_size=400))
def test_points_csv_survives_any_bytes(data: bytes) -> None:
    _survives(lambda p: parse_points(p, ZONE), "points.csv", POINTS_HEADER.encode() + data)


@FUZZ
@given(_rows(POINTS_HEADER))
def test_points_csv_survives_any_cells(text: str) -> None:
    _survives(lambda p: parse_points(p, ZONE), "points.csv", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(_rows(DEVICES_HEADER))
def test_devices_csv_survives_any_cells(text: str) -> None:
    _survives(lambda p: parse_devices_csv(p, ZONE), "devices.csv", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(_rows(UNITS_HEADER))
def test_units_csv_survives_any_cells(text: str) -> None:
    _survives(lambda p: parse_units_csv(p, ZONE), "units.csv", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=400))
def test_units_csv_survives_any_bytes(data: bytes) -> None:
    _survives(lambda p: parse_units_csv(p, ZONE), "units.csv", data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | _CELL,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
_PROPERTIES = st.fixed_dictionaries({}, optional={k: _JSON for k in POINTS_HEADER.strip().split(",")})
_FEATURE = st.one_of(_JSON, st.fixed_dictionaries({
    "type": st.sampled_from(["Feature", "feature"]),
    "properties": st.one_of(_PROPERTIES, _JSON),
    "geometry": st.one_of(_JSON, st.fixed_dictionaries({"type": st.just("Point"),
                                                       "coordinates": st.one_of(_JSON, st.lists(_JSON, max_size=4))})),
}))
_COLLECTION = st.fixed_dictionaries({"type": st.sampled_from(["FeatureCollection", "Feature"]),
                                     "features": st.one_of(st.lists(_FEATURE, max_size=4), _JSON)},
                                    optional={"crs": _JSON, "name": _JSON})


@FUZZ
@given(_COLLECTION)
def test_points_geojson_survives_any_document(document: dict) -> None:
    text = json.dumps(document, allow_nan=True)
    _survives(lambda p: parse_points(p, ZONE), "points.geojson", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=300))
def test_points_geojson_survives_any_bytes(data: bytes) -> None:
    _survives(lambda p: parse_points(p, ZONE), "points.geojson", data)


def test_deeply_nested_json_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "points.geojson"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _survives(lambda p: parse_points(p, ZONE), "points.geojson", path.read_bytes())
