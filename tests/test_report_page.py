"""The report page officials open, loaded in headless Chromium from a running `citykpi serve`."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from catalog import load_catalog
from devstack.ports import free_loopback_port, port_accepts
from forms.store import store_submission
from forms.submission import parse_submission
from tests.helpers import missing, wait_for

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CITYKPI_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is not installed (Debian package chromium)")
    return found


def _browse(url: str, *extra: str) -> str:
    # The flags keep a headless Chromium off the network it would otherwise try to reach at start.
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


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
    _chromium()
    year = datetime.now(UTC).year
    _seed(db, year)
    port = free_loopback_port()
    server = subprocess.Popen([sys.executable, "-m", "citykpi.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(port)], env={**os.environ, "CITYKPI_DATABASE_URL": database_url},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_accepts(port) or server.poll() is not None, timeout_s=60, what="citykpi serve")
        assert server.poll() is None, server.stdout.read().decode()
        page = _browse(f"http://127.0.0.1:{port}/", "--dump-dom")
        evidence = _browse(f"http://127.0.0.1:{port}/kpi/17/evidence?period={year}", "--dump-dom")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / "report-page.png"
        _browse(f"http://127.0.0.1:{port}/", f"--screenshot={screenshot}", "--window-size=1280,3200")
    finally:
        server.terminate()
        server.wait(timeout=30)
    codes = re.findall(r'<tr data-code="(\d+)"', page)
    assert sorted(codes, key=int) == [str(n) for n in range(1, 28)]
    assert "Tình hình lắp đặt camera giám sát an ninh trật tự công cộng" in page
    assert "Lớp A. Lấy người dân làm trung tâm" in page
    assert f'href="/kpi/17/evidence?period={year}"' in page
    assert page.count("<svg") >= 21  # a trend for every indicator with a value
    assert re.findall(r'<tr data-point="([^"]+)" class="([^"]+)"', evidence) == [
        ("SEC-1", "not-covered"), ("SEC-2", "not-covered")]  # 48 up hours of the year so far: far below θ
    assert "không có thiết bị đúng loại nào" in evidence
    assert screenshot.stat().st_size > 10_000
