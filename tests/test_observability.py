"""Every metric an alert or a dashboard queries is one the running services export: scraped from a real
`citykpi ingest` and a real `citykpi serve`, not read from the code."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml

from devstack.ports import free_loopback_port, port_accepts
from tests.helpers import wait_for

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
METRIC = re.compile(r"\bcitykpi_[a-z0-9_]+")


def _queried() -> set[str]:
    names = set()
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            names |= set(METRIC.findall(rule["expr"]))
    for dashboard in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        for panel in json.loads(dashboard.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets", []):
                names |= set(METRIC.findall(target.get("expr", "")))
    return names


def _exported(exposition: str) -> set[str]:
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            names |= {f"{name}_total"} if kind == "counter" else set()
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set()
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "citykpi.cli", *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    wait_for(lambda: port_accepts(port) or process.poll() is not None, timeout_s=60, what=f"{args[0]} to listen")
    assert process.poll() is None, process.stdout.read().decode()
    return process


def test_alerts_and_dashboards_query_only_exported_metrics(database_url: str, db: psycopg.Connection,
                                                           mqtt_broker, kafka_bootstrap: str) -> None:
    # One covered point, so that the live gauges (absent without points) are exported too.
    db.execute("INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)"
               " VALUES ('SEC-1', 'Ngã tư', '{security_point}', NULL, 13.77, 109.22, '2026-01-01')")
    db.execute("INSERT INTO devices (device_id, kind) VALUES ('cam-1', 'cctv')")
    db.execute("INSERT INTO bindings (device_id, point_id, valid_from) VALUES ('cam-1', 'SEC-1', '2026-01-01')")
    db.execute("INSERT INTO heartbeats (device_id, ts, kind, healthy, status, source, received_at)"
               " VALUES ('cam-1', %s, 'cctv', true, 'ok', 'test', %s)", (datetime.now(UTC), datetime.now(UTC)))
    db.commit()
    ingest_port, api_port = free_loopback_port(), free_loopback_port()
    env = {**os.environ, "CITYKPI_DATABASE_URL": database_url, "CITYKPI_MQTT_URL": mqtt_broker.url,
           "CITYKPI_MQTT_PROTOCOL": "5" if mqtt_broker.supports_mqtt5 else "3.1.1",
           "CITYKPI_MQTT_CLIENT_ID": f"observability-{ingest_port}", "CITYKPI_METRICS_HOST": "127.0.0.1",
           "CITYKPI_METRICS_PORT": str(ingest_port), "CITYKPI_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CITYKPI_KAFKA_GROUP_ID": f"observability-{ingest_port}"}
    ingest = _start(["ingest", "--source", "both"], env, ingest_port)
    api = _start(["serve", "--host", "127.0.0.1", "--port", str(api_port)], env, api_port)
    try:
        exported = (_exported(_scrape(f"http://127.0.0.1:{ingest_port}/metrics"))
                    | _exported(_scrape(f"http://127.0.0.1:{api_port}/metrics")))
    finally:
        for process in (ingest, api):
            process.terminate()
            process.wait(timeout=60)
    queried = _queried()
    assert len(queried) >= 12  # the extraction itself found the alerts' and dashboards' metrics
    assert sorted(queried - exported) == []
