"""`citykpi registry …` as an operator runs it: exit status, what goes to stdout and stderr."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.registry_files import DEVICES_HEADER, POINTS_HEADER, UNITS_HEADER, write

UNITS = (UNITS_HEADER
         + "52,Tỉnh Bình Định,,province,,,\n"
         + "540,Thành phố Quy Nhơn,52,district,,,\n"
         + "549,Thị xã An Nhơn,52,district,,,\n")
POINTS = (POINTS_HEADER
          + "SEC-1,Ngã tư Lê Lợi,security_point,540,13.77,109.22,2025-01-01,\n"
          + "BUS-1,Trạm dừng Đập Đá,transit_stop,549,13.88,109.1,2025-01-01,\n"
          + "BUS-2,Trạm dừng Ga Quy Nhơn,transit_stop,540,13.78,109.21,2025-01-01,\n")


@pytest.fixture
def run(database_url: str):
    def citykpi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "citykpi.cli", "registry", *args], capture_output=True,
                              text=True, env={"CITYKPI_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
                              timeout=120)
    return citykpi


@pytest.fixture
def loaded(run, tmp_path: Path) -> None:
    assert run("import", "units", str(write(tmp_path, "units.csv", UNITS)), "--effective", "2025-01-01").returncode == 0
    assert run("import", "points", str(write(tmp_path, "points.csv", POINTS)),
               "--effective", "2025-01-01").returncode == 0


def test_a_bad_file_exits_1_listing_every_problem(run, loaded: None, tmp_path: Path) -> None:
    path = write(tmp_path, "devices.csv", DEVICES_HEADER
                 + "cam-1,cctv,BUS-1,2025-01-01,,60\n"
                 + "disp-1,bus_display,BUS-404,2025-01-01,,60\n")
    result = run("import", "devices", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:2:kind: a cctv serves security_point points; BUS-1 is transit_stop",
        f"{path}:3:point_id: unknown key point 'BUS-404'; import it with the points first",
        f"{path}: 2 problem(s), nothing imported",
    ]


def test_reimporting_prints_0_changed(run, loaded: None, tmp_path: Path) -> None:
    result = run("import", "points", str(tmp_path / "points.csv"), "--effective", "2025-01-01")
    assert (result.returncode, result.stdout) == (0, f"{tmp_path / 'points.csv'}: 0 changed (0 added, 0 changed, "
                                                     "0 closed)\n")


def test_a_dry_run_prints_one_line_per_kind_of_change(run, loaded: None, tmp_path: Path) -> None:
    path = write(tmp_path, "points-new.csv", POINTS_HEADER
                 + "BUS-1,Trạm dừng Đập Đá (mới),transit_stop,549,13.88,109.1,2025-01-01,\n"
                 + "BUS-3,Trạm dừng Chợ Dinh,transit_stop,540,13.77,109.23,2025-03-01,\n")
    result = run("import", "points", str(path), "--effective", "2025-06-01", "--dry-run")
    again = run("import", "points", str(path), "--effective", "2025-06-01", "--dry-run")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "added 1: BUS-3", "closed 1: BUS-2", "changed 1: BUS-1",
        f"{path}: 3 changed (1 added, 1 changed, 1 closed) — dry run, nothing written"]
    assert again.stdout == result.stdout


def test_list_points_of_a_category_under_a_unit(run, loaded: None) -> None:
    result = run("list", "points", "--category", "transit_stop", "--at", "2025-06-30", "--admin-unit", "52")
    under_quy_nhon = run("list", "points", "--category", "transit_stop", "--at", "2025-06-30", "--admin-unit", "540")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["BUS-1", "BUS-2"]
    assert [line.split("\t")[0] for line in under_quy_nhon.stdout.splitlines()] == ["BUS-2"]
    assert under_quy_nhon.stderr == "1 key point(s) in force at 2025-06-30 under 540\n"


def test_list_units_prints_the_tree(run, loaded: None) -> None:
    result = run("list", "units", "--at", "2025-06-30")
    assert result.stdout.splitlines() == ["52\tTỉnh Bình Định\tprovince", "  540\tThành phố Quy Nhơn\tdistrict",
                                          "  549\tThị xã An Nhơn\tdistrict"]


def test_an_exported_file_reimports_to_0_changed(run, loaded: None, tmp_path: Path) -> None:
    exported = tmp_path / "export.geojson"
    assert run("export", "points", "--format", "geojson", "-o", str(exported)).returncode == 0
    result = run("import", "points", str(exported), "--effective", "2025-01-01")
    assert result.stdout == f"{exported}: 0 changed (0 added, 0 changed, 0 closed)\n"


def test_exported_devices_with_their_gateways_reimport_to_0_changed(run, loaded: None, tmp_path: Path) -> None:
    devices = write(tmp_path, "devices.csv", DEVICES_HEADER.rstrip("\n") + ",gateway_id\n"
                    + "cam-1,cctv,SEC-1,2025-01-01,,60,vms-1\n" + "disp-1,bus_display,BUS-1,2025-01-01,,,\n")
    assert run("import", "devices", str(devices), "--effective", "2025-01-01").returncode == 0
    exported = tmp_path / "exported-devices.csv"
    export = run("export", "devices", "-o", str(exported))
    result = run("import", "devices", str(exported), "--effective", "2025-01-01")
    assert export.stderr == "2 binding(s) exported\n"
    assert exported.read_text().splitlines()[1] == "cam-1,cctv,SEC-1,2025-01-01,,60,vms-1,"
    assert result.stdout == f"{exported}: 0 changed (0 added, 0 changed, 0 closed)\n"


def test_the_coordinate_box_comes_from_the_environment(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "points.csv", POINTS_HEADER
                 + "AIR-HS,Đảo Hoàng Sa,air_hotspot,52,16.53,111.61,2025-01-01,\n")
    result = subprocess.run([sys.executable, "-m", "citykpi.cli", "registry", "import", "points", str(path)],
                            capture_output=True, text=True, timeout=120,
                            env={"CITYKPI_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin",
                                 "CITYKPI_REGISTRY_BOUNDS": "13.5,14.7,108.5,109.5"})
    assert result.returncode == 1
    assert result.stderr.splitlines()[:2] == [f"{path}:2:lat: 16.53 is outside the configured box (13.5–14.7)",
                                              f"{path}:2:lon: 111.61 is outside the configured box (108.5–109.5)"]


def test_unknown_categories_option_is_refused(run, tmp_path: Path) -> None:
    result = run("import", "points", str(write(tmp_path, "points.csv", POINTS)), "--categories", "bus_stop")
    assert (result.returncode, result.stderr) == (2, "--categories: unknown bus_stop; expected some of "
                                                     "security_point;public_place;transit_stop;water_source;"
                                                     "air_hotspot;wastewater_facility\n")


def test_listing_under_a_unit_not_in_force_says_so(run, loaded: None) -> None:
    result = run("list", "points", "--at", "2025-06-30", "--admin-unit", "N001")
    assert (result.returncode, result.stderr) == (1, "--admin-unit: N001 is not an administrative unit in force at "
                                                     "2025-06-30 (see `citykpi registry list units --at …`)\n")


def test_a_units_import_warns_of_points_left_in_an_ended_unit(run, loaded: None, tmp_path: Path) -> None:
    ended = write(tmp_path, "units-2025.csv", UNITS_HEADER
                  + "52,Tỉnh Bình Định,,province,,2025-07-01,GL\n"
                  + "540,Thành phố Quy Nhơn,52,district,,2025-07-01,N001\n"
                  + "549,Thị xã An Nhơn,52,district,,2025-07-01,N002\n"
                  + "GL,Tỉnh Gia Lai,,province,2025-07-01,,\n"
                  + "N001,Phường Quy Nhơn,GL,commune,2025-07-01,,\n"
                  + "N002,Phường An Nhơn,GL,commune,2025-07-01,,\n")
    result = run("import", "units", str(ended), "--effective", "2025-07-01")
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "warning: BUS-1 from 2025-01-01 stays in 549, which ended on 2025-07-01 (succeeded by N002); "
        "add a version of the point from 2025-07-01",
        "warning: BUS-2 from 2025-01-01 stays in 540, which ended on 2025-07-01 (succeeded by N001); "
        "add a version of the point from 2025-07-01",
        "warning: SEC-1 from 2025-01-01 stays in 540, which ended on 2025-07-01 (succeeded by N001); "
        "add a version of the point from 2025-07-01",
    ]
