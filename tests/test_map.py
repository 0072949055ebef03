"""The maps of the evidence pages and of the report's overview, the point history page, the static files and the
tile setting, in process (Starlette's TestClient) against the real PostgreSQL fixture. The same pages drawn by
headless Chromium are in tests/test_map_browser.py."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from base.settings import Settings, check_tile_template
from kpi.coverage import PointEvidence
from registry.tree import UnitTree
from registry.units import AdminUnit
from tests.kpi_builders import ZONE, availability, beats, device, every_hour, hours, unit
from web.app import create_app
from web.pages.evidence_map import render_evidence_map
from web.pages.unit_map import unit_entries
from web.tokens import create_token

OCTOBER = date(2026, 10, 1)
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)                  # October 2026 is over and final
HOSTILE = 'Chợ </script><script>alert(1)</script><!-- "A&B"'
STATIC = Path(__file__).resolve().parents[1] / "web" / "static"


def located_point(db: psycopg.Connection, point_id: str, admin_unit: str, lat: float, lon: float, *,
                  name: str | None = None, valid_from: datetime = datetime(2026, 1, 1, tzinfo=ZONE),
                  valid_to: datetime | None = None) -> None:
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from, valid_to)"
               " VALUES (%s, %s, '{security_point}', %s, %s, %s, %s, %s)",
               (point_id, name or f"Điểm {point_id}", admin_unit, lat, lon, valid_from, valid_to))


@pytest.fixture
def province(db: psycopg.Connection) -> None:
    """Two districts, two security points in each: in Quy Nhơn one covered and one up 12 hours of 744; in An Nhơn
    one with no camera bound and one whose camera never sent a heartbeat."""
    unit(db, "52", None, "province", name="Tỉnh Bình Định")
    unit(db, "540", "52", "district", name="Thành phố Quy Nhơn")
    unit(db, "549", "52", "district", name="Thị xã An Nhơn")
    located_point(db, "SEC-A", "540", 13.77, 109.22)
    located_point(db, "SEC-B", "540", 13.78, 109.20)
    located_point(db, "SEC-C", "549", 13.88, 109.11)
    located_point(db, "SEC-D", "549", 13.90, 109.10, name=HOSTILE)
    device(db, "cam-a", "SEC-A")
    device(db, "cam-b", "SEC-B")
    device(db, "cam-d", "SEC-D")
    beats(db, "cam-a", every_hour(OCTOBER, 31))
    beats(db, "cam-b", hours(OCTOBER, *range(12)))
    db.commit()


@pytest.fixture
def api(database_url: str, province: None) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), database_url, clock=lambda: NOW)) as client:
        yield client


class _ScriptData(HTMLParser):
    """The text of every `<script type="application/json">`, split where a browser's parser would split it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("type") == "application/json":
            self._open = attributes["id"]
            self.found[self._open] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.found[self._open] += data


def embedded(page: str, element_id: str) -> dict:
    parser = _ScriptData()
    parser.feed(page)
    return json.loads(parser.found[element_id])


def test_the_evidence_page_embeds_one_map_entry_per_point_with_its_colour_and_place(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    assert [(p["id"], p["state"], p["lat"], p["lon"]) for p in embedded(page, "evidence-map-data")["points"]] == [
        ("SEC-A", "covered", 13.77, 109.22), ("SEC-B", "not-covered", 13.78, 109.20),
        ("SEC-C", "no-device", 13.88, 109.11), ("SEC-D", "not-covered", 13.90, 109.10)]


def test_a_map_entry_carries_the_popups_availability_devices_and_history_link(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    by_id = {p["id"]: p for p in embedded(page, "evidence-map-data")["points"]}
    assert {k: by_id["SEC-B"][k] for k in ("name", "unit", "up", "in_force", "percent", "devices", "url")} == {
        "name": "Điểm SEC-B", "unit": "540", "up": 12, "in_force": 744, "percent": 1.61,
        "devices": [{"id": "cam-b", "up_hours": 12, "online_only_hours": 0}], "url": "/points/SEC-B"}


def test_a_bound_camera_that_never_sent_a_heartbeat_is_in_the_popup_with_zero_hours(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    by_id = {p["id"]: p for p in embedded(page, "evidence-map-data")["points"]}
    assert (by_id["SEC-D"]["state"], by_id["SEC-D"]["devices"]) == (
        "not-covered", [{"id": "cam-d", "up_hours": 0, "online_only_hours": 0}])


def test_the_hours_only_a_connection_status_made_up_are_named_in_the_table_popup_and_api(
        api: TestClient, db: psycopg.Connection) -> None:
    # cam-b sent heartbeats from 00:00 to 12:00 on 1 October; on the 20th it only said it was online, 00:00–03:00.
    availability(db, "cam-b", [(datetime(2026, 10, 20, 0, 0, tzinfo=ZONE), True),
                               (datetime(2026, 10, 20, 3, 0, tzinfo=ZONE), False)])
    db.commit()
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    by_id = {p["id"]: p for p in embedded(page, "evidence-map-data")["points"]}
    assert by_id["SEC-B"]["devices"] == [{"id": "cam-b", "up_hours": 15, "online_only_hours": 3}]
    assert "cam-b (15 giờ, trong đó 3 giờ chỉ có tín hiệu trực tuyến)" in page
    body = api.get("/v1/kpis/17/evidence", params={"from": "2026-10-01", "to": "2026-11-01"}).json()
    assert [p["devices"] for p in body["points"] if p["point_id"] == "SEC-B"] == [
        [{"device_id": "cam-b", "up_hours": 15, "online_only_hours": 3}]]


def test_a_point_name_cannot_break_out_of_the_embedded_data(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    by_id = {p["id"]: p for p in embedded(page, "evidence-map-data")["points"]}
    assert by_id["SEC-D"]["name"] == HOSTILE
    assert "<script>alert(1)" not in page
    assert "<!--" not in page


def test_the_legend_names_each_colour_in_vietnamese_with_its_count(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    legend = re.search(r'<div class="legend" id="evidence-map-legend">(.*?)</div>', page).group(1)
    assert re.findall(r'<i class="swatch ([a-z-]+)-swatch"></i>([^<]+)</span>', legend) == [
        ("covered", "Đạt: hoạt động ≥ θ (1)"),
        ("not-covered", "Không đạt: có thiết bị đúng loại nhưng hoạt động &lt; θ (2)"),
        ("no-device", "Không đạt: không gắn thiết bị đúng loại nào trong kỳ (1)")]


def test_the_map_section_is_hidden_until_its_script_draws_it(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    assert '<section id="evidence-map-section" hidden>' in page
    assert page.index('id="evidence-map"') < page.index("<table>")   # above the table, which stays as it was


def test_points_without_coordinates_are_listed_under_the_map_and_not_drawn() -> None:
    # The registry requires coordinates; the evidence's type does not, so the page must not lose such a point.
    entry = {"id": "SEC-X", "name": "Cầu <Thị Nại>", "lat": None, "lon": None, "state": "no-device",
             "url": "/points/SEC-X"}
    section = render_evidence_map([entry], None)
    assert ('Điểm không có toạ độ (không vẽ): <a href="/points/SEC-X">SEC-X</a> Cầu &lt;Thị Nại&gt;'
            in section)


def test_without_the_tile_setting_the_map_has_no_tile_layer(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    assert embedded(page, "evidence-map-data")["tiles"] is None


def test_the_tile_setting_reaches_the_page_and_its_content_security_policy(database_url: str,
                                                                          province: None) -> None:
    settings = Settings(map_tiles="https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png",
                        map_attribution="© OpenStreetMap contributors")
    with TestClient(create_app(settings, database_url, clock=lambda: NOW)) as client:
        response = client.get("/kpi/17/evidence", params={"period": "2026-10"})
    assert embedded(response.text, "evidence-map-data")["tiles"] == {
        "url": "https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "© OpenStreetMap contributors"}
    assert "img-src 'self' data: https://*.tile.openstreetmap.org;" in response.headers["content-security-policy"]


def test_the_map_pages_run_scripts_from_this_server_only(api: TestClient) -> None:
    for path, params in (("/", {"period": "2026-10"}), ("/kpi/17/evidence", {"period": "2026-10"})):
        policy = api.get(path, params=params).headers["content-security-policy"]
        assert "default-src 'none'; script-src 'self';" in policy
        assert "img-src 'self' data:;" in policy


def test_the_pages_load_leaflet_and_their_script_from_static(api: TestClient) -> None:
    evidence = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    report = api.get("/", params={"period": "2026-10"}).text
    sources = re.compile(r'<script src="([^"]+)" defer></script>')
    assert sources.findall(evidence) == ["/static/leaflet/leaflet.js", "/static/citykpi-map.js",
                                         "/static/evidence-map.js"]
    assert sources.findall(report) == ["/static/leaflet/leaflet.js", "/static/citykpi-map.js",
                                       "/static/unit-map.js"]


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/leaflet/leaflet.js", "text/javascript"), ("/static/leaflet/leaflet.css", "text/css"),
    ("/static/leaflet/images/layers.png", "image/png"), ("/static/leaflet/LICENSE", None),
    ("/static/citykpi-map.js", "text/javascript"), ("/static/evidence-map.js", "text/javascript"),
    ("/static/unit-map.js", "text/javascript")])
def test_the_static_files_are_served_as_committed(api: TestClient, path: str, content_type: str | None) -> None:
    response = api.get(path)
    assert response.status_code == 200
    assert response.content == (STATIC / path.removeprefix("/static/")).read_bytes()
    if content_type:
        assert response.headers["content-type"].split(";")[0] == content_type


def test_static_files_need_no_token_when_reads_are_private(database_url: str) -> None:
    with TestClient(create_app(Settings(api_public_reads=False), database_url, clock=lambda: NOW)) as client:
        assert [client.get(p).status_code for p in ("/static/leaflet/leaflet.js", "/static/evidence-map.js",
                                                    "/kpi/17/evidence")] == [200, 200, 401]


def test_static_files_are_not_in_the_openapi_document(api: TestClient) -> None:
    assert not [p for p in api.get("/openapi.json").json()["paths"] if p.startswith("/static")]


def test_an_unknown_static_file_is_a_404(api: TestClient) -> None:
    assert api.get("/static/leaflet/leaflet.js.map").status_code == 404


@pytest.mark.parametrize("template", [
    "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://{s}.tile.example.vn/{z}/{x}/{y}{r}.png",
    "http://10.20.0.5:8080/tiles/{z}/{x}/{y}.png?style=grey"])
def test_a_tile_template_with_z_x_and_y_over_http_is_accepted(template: str) -> None:
    assert Settings(map_tiles=template).map_tiles == template


@pytest.mark.parametrize(("template", "reason"), [
    ("ftp://tiles.example.vn/{z}/{x}/{y}.png", "is not an http:// or https:// URL"),
    ("tiles.example.vn/{z}/{x}/{y}.png", "is not an http:// or https:// URL"),
    ("https://tiles.example.vn/{z}/{x}.png", "lacks {y}"),
    ("https://tiles.example.vn/{z}/{x}/{y}/{style}.png", "unknown placeholder(s) {style}"),
    ("https://user:secret@tiles.example.vn/{z}/{x}/{y}.png", "is not a host[:port]"),
    ('https://tiles.example.vn/{z}/{x}/{y}.png" onerror="x', "holds a space, a quote"),
])
def test_a_tile_template_that_cannot_work_is_refused_saying_why(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_tile_template(template)


def test_a_bad_tile_setting_stops_the_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from base.settings import load_settings
    monkeypatch.setenv("CITYKPI_MAP_TILES", "https://tiles.example.vn/{x}/{y}.png")
    with pytest.raises(SystemExit, match=r"CITYKPI_MAP_TILES: .*lacks \{z\}"):
        load_settings()


def test_the_tile_settings_are_empty_by_default() -> None:
    assert (Settings().map_tiles, Settings().map_attribution) == ("", "")


def test_the_report_page_maps_each_lowest_unit_at_the_mean_place_of_its_points(api: TestClient) -> None:
    page = api.get("/", params={"period": "2026-10"}).text
    units = embedded(page, "unit-map-data")["units"]
    assert [(u["code"], u["name"], u["points"], u["covered"], u["percent"], u["band"]) for u in units] == [
        ("540", "Thành phố Quy Nhơn", 2, 1, 50.0, "mid"), ("549", "Thị xã An Nhơn", 2, 0, 0.0, "low")]
    assert [(round(u["lat"], 6), round(u["lon"], 6)) for u in units] == [(13.775, 109.21), (13.89, 109.105)]


def test_the_overview_map_shows_indicator_17_unless_another_is_chosen(api: TestClient) -> None:
    default = api.get("/", params={"period": "2026-10"}).text
    wifi = api.get("/", params={"period": "2026-10", "map_indicator": "22"}).text
    selected = re.compile(r'<option value="(\d+)" selected>')
    assert (selected.findall(default), selected.findall(wifi)) == (["17"], ["22"])
    assert embedded(wifi, "unit-map-data")["units"] == []         # no public place registered


@pytest.mark.parametrize(("code", "reason"), [("10", "form-based"), ("99", "99")])
def test_a_map_indicator_that_is_not_a_sensor_indicator_is_a_400(api: TestClient, code: str, reason: str) -> None:
    response = api.get("/", params={"period": "2026-10", "map_indicator": code})
    assert response.status_code == 400
    assert "map_indicator" in response.text and reason in response.text


def test_points_under_no_lowest_unit_are_counted_not_placed() -> None:
    def evidence(point_id: str, admin_unit: str | None, covered: bool) -> PointEvidence:
        return PointEvidence(point_id, point_id, admin_unit, 24, 24 if covered else 0, {}, covered, 14.0, 109.0)

    at = datetime(2026, 10, 31, 23, tzinfo=ZONE)
    tree = UnitTree(at, {"52": AdminUnit("52", "Tỉnh", None, "province", None, None),
                         "540": AdminUnit("540", "Quy Nhơn", "52", "district", None, None)}, {"52": ["540"]})
    entries, outside = unit_entries([evidence("P1", "540", True), evidence("P2", "52", False),
                                     evidence("P3", None, False)], tree)
    assert ([(e["code"], e["points"], e["covered"]) for e in entries], outside) == ([("540", 1, 1)], 2)


def test_the_point_page_lists_every_version_and_binding(database_url: str, db: psycopg.Connection) -> None:
    unit(db, "540", None, "district", name="Thành phố Quy Nhơn")
    unit(db, "549", None, "district", name="Thị xã An Nhơn")
    located_point(db, "SEC-M", "540", 13.77, 109.22, name="Ngã tư cũ",
                  valid_from=datetime(2025, 1, 1, tzinfo=ZONE), valid_to=datetime(2025, 7, 1, tzinfo=ZONE))
    located_point(db, "SEC-M", "549", 13.88, 109.11, name="Ngã tư mới", valid_from=datetime(2025, 7, 1, tzinfo=ZONE))
    device(db, "cam-m", "SEC-M", valid_from=datetime(2025, 2, 1, 8, tzinfo=ZONE), interval_s=30)
    db.commit()
    with TestClient(create_app(Settings(), database_url, clock=lambda: NOW)) as client:
        page = client.get("/points/SEC-M").text
    rows = re.findall(r'<tr class="(version|binding)">(.*?)</tr>', page)
    cells = [(kind, re.findall(r"<td[^>]*>(.*?)</td>", row)) for kind, row in rows]
    assert cells == [
        ("version", ["2025-01-01 00:00", "2025-07-01 00:00", "Ngã tư cũ", "điểm an ninh trật tự",
                     "540 — Thành phố Quy Nhơn", "13.77000, 109.22000"]),
        ("version", ["2025-07-01 00:00", "nay", "Ngã tư mới", "điểm an ninh trật tự", "549 — Thị xã An Nhơn",
                     "13.88000, 109.11000"]),
        ("binding", ["cam-m", "camera", "2025-02-01 08:00", "nay", "30", "—"])]


def test_the_point_page_escapes_what_the_registry_holds(api: TestClient) -> None:
    page = api.get("/points/SEC-D").text
    assert "Chợ &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!-- &quot;A&amp;B&quot;" in page
    assert "<script" not in page


def test_an_unknown_point_is_a_404_page(api: TestClient) -> None:
    response = api.get("/points/SEC-NONE")
    assert (response.status_code, response.headers["content-type"].split(";")[0]) == (404, "text/html")
    assert "Không có điểm này" in response.text and "SEC-NONE" in response.text


@pytest.mark.parametrize("point_id", ["SEC 1", "SEC-1;DROP", "<b>", "Điểm", "x" * 65])
def test_a_malformed_point_id_is_a_422_page(api: TestClient, point_id: str) -> None:
    response = api.get(f"/points/{point_id}")
    assert response.status_code == 422
    assert "Mã điểm không hợp lệ" in response.text and "<b>" not in response.text


def test_the_point_page_needs_a_token_when_reads_are_private(database_url: str, db: psycopg.Connection,
                                                             province: None) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    with TestClient(create_app(Settings(api_public_reads=False), database_url, clock=lambda: NOW)) as client:
        assert [client.get("/points/SEC-A", headers=h).status_code
                for h in ({}, {"Authorization": f"Bearer {token}"})] == [401, 200]


def test_the_evidence_table_links_each_point_to_its_history(api: TestClient) -> None:
    page = api.get("/kpi/17/evidence", params={"period": "2026-10"}).text
    assert re.findall(r'<tr data-point="[^"]+" class="[^"]+"><td><a href="([^"]+)">', page) == [
        "/points/SEC-A", "/points/SEC-B", "/points/SEC-C", "/points/SEC-D"]
