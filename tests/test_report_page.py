"""The report page officials open, and the maps of the evidence and report pages, loaded in headless Chromium
from a running `citykpi serve`. Chromium reaches loopback only: a page that needed the Internet would show it."""

import json
import re
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

from catalog import load_catalog
from forms.store import store_submission
from forms.submission import parse_submission
from simulators.province import DISTRICTS, generate_province
from tests.browser import browse, chromium, screenshot, serving
from tests.kpi_builders import ZONE, beats, device, unit

ROOT = Path(__file__).resolve().parents[1]


def _seed(db: psycopg.Connection, year: int) -> None:
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as folder:
        for example in sorted((ROOT / "deploy" / "examples" / "forms").glob("*.json")):
            document = json.loads(example.read_text(encoding="utf-8"))
            document["period"] = str(year)
            path = Path(folder) / example.name
            path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
            store_submission(db, parse_submission(path, catalog), catalog_id=catalog.id, file_name=example.name,
                             content=path.read_bytes(), submitted_by="test", channel="cli", now=datetime.now(UTC))
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)"
               " VALUES ('SEC-1', 'Ngã tư Lê Lợi', '{security_point}', NULL, 13.77, 109.22, %s),"
               "        ('SEC-2', 'Chợ Lớn', '{security_point}', NULL, 13.78, 109.21, %s)",
               (datetime(year, 1, 1, tzinfo=UTC), datetime(year, 1, 1, tzinfo=UTC)))
    db.execute("INSERT INTO devices (device_id, kind) VALUES ('cam-1', 'cctv')")
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from) VALUES ('cam-1', 'SEC-1', %s)",
               (datetime(year, 1, 1, tzinfo=UTC),))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    beats = [now - timedelta(hours=h, minutes=30) for h in range(1, 49)]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO heartbeats (device_id, ts, kind, healthy, status, source, received_at)"
                        " VALUES ('cam-1', %s, 'cctv', true, 'ok', 'test', %s)", [(t, t) for t in beats])
    db.commit()


def test_the_report_page_shows_all_27_indicators_and_the_evidence(database_url: str,
                                                                 db: psycopg.Connection) -> None:
    chromium()
    year = datetime.now(UTC).year
    _seed(db, year)
    with serving(database_url) as base:
        page = browse(f"{base}/", "--dump-dom")
        evidence = browse(f"{base}/kpi/17/evidence?period={year}", "--dump-dom")
        shot = screenshot(f"{base}/", "report-page.png", height=3200)
    codes = re.findall(r'<tr data-code="(\d+)"', page)
    assert sorted(codes, key=int) == [str(n) for n in range(1, 28)]
    assert "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng" in page
    assert "Lớp A. Lấy người dân làm trung tâm" in page
    assert f'href="/kpi/17/evidence?period={year}"' in page
    assert page.count("<svg") >= 21  # a trend for every indicator with a value
    assert re.findall(r'<tr data-point="([^"]+)" class="([^"]+)"', evidence) == [
        ("SEC-1", "not-covered"), ("SEC-2", "not-covered")]  # 48 up hours of the year so far: far below θ
    assert "không có thiết bị đúng loại nào" in evidence
    assert shot.stat().st_size > 10_000


class _Elements(HTMLParser):
    """The attributes of every element of one tag in a dumped DOM."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag, self.found = tag, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == self.tag:
            self.found.append(dict(attrs))


def _elements(dom: str, tag: str) -> list[dict]:
    parser = _Elements(tag)
    parser.feed(dom)
    return parser.found


def _last_month() -> tuple[date, date]:
    this_month = datetime.now(UTC).date().replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


def _seed_province(db: psycopg.Connection, first: date, end: date) -> set[str]:
    """The synthetic province's districts and security points over the month [first, end), its cameras bound from
    the month's start: of every five, one silent, one up every other hour, three up every hour. Returns the
    points with a camera bound."""
    points, devices = generate_province(40, seed=18, uncovered_share=0.2)
    since = datetime(first.year, first.month, 1, tzinfo=ZONE)
    unit(db, "52", None, "province", name="Tỉnh Bình Định")
    for code, name in DISTRICTS:
        unit(db, code, "52", "district", name=name)
    with db.cursor() as cur:
        cur.executemany("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(p.point_id, p.name, list(p.categories), p.admin_unit, *p.position, since) for p in points])
    month_hours = [since + timedelta(hours=h, minutes=30) for h in range((end - first).days * 24)]
    cameras = [d for d in devices if d.kind == "cctv"]
    for n, camera in enumerate(cameras):
        device(db, camera.device_id, camera.point_id, valid_from=since)
        beats(db, camera.device_id, [] if n % 5 == 0 else month_hours[::2] if n % 5 == 1 else month_hours)
    db.commit()
    return {c.point_id for c in cameras}


def _evidence(base: str, first: date, end: date) -> list[dict]:
    with urllib.request.urlopen(f"{base}/v1/kpis/17/evidence?from={first}&to={end}", timeout=60) as response:
        return json.load(response)["points"]


def test_the_evidence_map_draws_every_point_of_the_denominator_in_its_colour(database_url: str,
                                                                            db: psycopg.Connection) -> None:
    chromium()
    first, end = _last_month()
    bound = _seed_province(db, first, end)
    with serving(database_url) as base:
        dom = browse(f"{base}/kpi/17/evidence?period={first:%Y-%m}", "--dump-dom", "--window-size=1280,1400")
        shot = screenshot(f"{base}/kpi/17/evidence?period={first:%Y-%m}", "evidence-map.png", height=1400)
        points = _evidence(base, first, end)
    expected = {p["point_id"]: "covered" if p["covered"] else "not-covered" if p["point_id"] in bound else "no-device"
                for p in points}
    drawn = {m["data-point"]: (m["class"].split()[1], m["fill"]) for m in _elements(dom, "path")
             if "point" in m.get("class", "").split()}
    colours = {"covered": "#2e7d32", "not-covered": "#ef6c00", "no-device": "#9e9e9e"}
    assert drawn == {point_id: (f"point-{state}", colours[state]) for point_id, state in expected.items()}
    assert set(expected.values()) == set(colours)                   # the seed gives every colour
    [summary] = [e["data-drawn"] for e in _elements(dom, "div") if e.get("id") == "evidence-map"]
    assert json.loads(unescape(summary)) == {state: list(expected.values()).count(state) for state in colours}
    assert [e for e in _elements(dom, "section") if e.get("id") == "evidence-map-section"][0].get("hidden") is None
    assert shot.stat().st_size > 10_000


def test_the_overview_map_draws_a_circle_per_unit_with_points(database_url: str, db: psycopg.Connection) -> None:
    chromium()
    first, end = _last_month()
    _seed_province(db, first, end)
    with serving(database_url) as base:
        dom = browse(f"{base}/?period={first:%Y-%m}", "--dump-dom", "--window-size=1280,1000")
        shot = screenshot(f"{base}/?period={first:%Y-%m}", "unit-map.png", height=1000)
        points = _evidence(base, first, end)
    per_unit: dict[str, list[bool]] = {}
    for p in points:
        per_unit.setdefault(p["admin_unit"], []).append(p["covered"])
    bands = {code: "high" if 10 * sum(c) >= 9 * len(c) else "mid" if 2 * sum(c) >= len(c) else "low"
             for code, c in per_unit.items()}
    circles = {c["data-unit"]: c["class"].split()[1] for c in _elements(dom, "path")
               if "unit-circle" in c.get("class", "").split()}
    assert circles == {code: f"unit-{band}" for code, band in bands.items()}
    [summary] = [e["data-drawn"] for e in _elements(dom, "div") if e.get("id") == "unit-map"]
    assert int(summary) == len(per_unit)
    assert shot.stat().st_size > 10_000


@contextmanager
def _tile_server() -> Iterator[tuple[str, list[str]]]:
    """A tile server on loopback answering every request with the same PNG; yields its template and the paths
    asked for."""
    tile = (ROOT / "web" / "static" / "leaflet" / "images" / "layers.png").read_bytes()
    asked: list[str] = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/tiles/{{z}}/{{x}}/{{y}}.png", asked
    finally:
        server.shutdown()
        server.server_close()


def test_the_map_asks_the_configured_tile_server_and_shows_its_attribution_as_text(
        database_url: str, db: psycopg.Connection) -> None:
    chromium()
    first, end = _last_month()
    _seed_province(db, first, end)
    with _tile_server() as (template, asked), serving(database_url, CITYKPI_MAP_TILES=template,
                                                        CITYKPI_MAP_ATTRIBUTION="© Bản đồ <thử>") as base:
        dom = browse(f"{base}/kpi/17/evidence?period={first:%Y-%m}", "--dump-dom", "--window-size=1280,1400")
    assert asked and all(re.fullmatch(r"/tiles/\d+/\d+/\d+\.png", path) for path in asked), asked
    assert "© Bản đồ &lt;thử&gt;" in dom                           # written as text, not as an element
    assert not _elements(dom, "thử")
