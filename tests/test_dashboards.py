"""Every query of both Grafana dashboards (panels and template variables) and every alert expression, evaluated
by a real Prometheus scraping a real `citykpi ingest` and a real `citykpi serve`, the way Grafana would send it;
every link of the dashboards opened on that `citykpi serve`.

Grafana itself is not run: its interpolation of variables, formats and SQL macros is reproduced below for what the
dashboards use, and anything else they might start to use fails here until it is reproduced too.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from base.db import connect
from devstack.databases import scratch_database
from devstack.ingest_process import IngestProcess
from devstack.ports import free_loopback_port
from simulators.mqtt_publisher import MqttPublisher
from tests.helpers import missing, wait_for
from tests.kpi_builders import ZONE, beats, device, local, point, unit

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# What operators and officials look at first: a panel query over one of these must find series on a stack
# that has points, devices up and down, heartbeats and a rejected message.
MUST_FIND_SERIES = ("citykpi_live_coverage_ratio", "citykpi_live_unit_coverage_ratio", "citykpi_live_devices",
                    "citykpi_ingest_messages_received_total", "citykpi_ingest_dead_letters_total",
                    "citykpi_live_device_silent_seconds")

# Grafana's built-in variables, as it sets them for the operations dashboard's 6 hours on our Prometheus
# datasource (timeInterval 15 s: $__rate_interval is at least four scrapes); the SQL macros get the KPI
# dashboard's 30 days.
BUILT_IN = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "6h",
            "__range_s": "21600"}
DASHBOARD_FROM, DASHBOARD_TO = datetime.now(UTC) - timedelta(days=30), datetime.now(UTC)


# --- Grafana's interpolation, for what the dashboards use -----------------------------------------------------

@dataclass(frozen=True)
class Selection:
    """A variable's current value: the values it stands for, or a custom "All" value used as it is."""
    values: tuple[str, ...]
    multi: bool = True
    custom_all: str | None = None


# Grafana's template syntax: $name, [[name:format]], ${name.field.path:format}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:}]+))?(?::([^}]+))?\}")
# What Grafana's Prometheus datasource escapes in a multi-value variable (prometheusSpecialRegexEscape).
_PROM_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|\\]")


def _prom_regex(value: str) -> str:
    return _PROM_REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(selection: Selection, fmt: str) -> str:
    if selection.custom_all is not None and fmt not in ("text", "percentencode"):
        return selection.custom_all
    values = list(selection.values) if selection.custom_all is None else [selection.custom_all]
    if fmt == "prometheus":
        if not selection.multi:
            return values[0].replace("\\", "\\\\").replace("'", "\\\\'")
        escaped = [_prom_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "regex":
        escaped = [re.escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "postgres":
        return ",".join(map(_sql_literal, values)) if selection.multi else values[0]
    if fmt in ("uri", "percentencode"):
        return ",".join(urllib.parse.quote(v, safe="") for v in values)
    if fmt in ("raw", "csv", "text"):
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt in ("singlequote", "sqlstring"):
        return ",".join(map(_sql_literal, values))
    raise AssertionError(f"variable format {fmt!r} is not reproduced by tests/test_dashboards.py: add it there")


def interpolate(text: str, selections: dict[str, Selection], default_format: str,
                fields: dict[str, str] | None = None) -> str:
    """`text` as Grafana would send it: variables replaced in `default_format` unless the template names one;
    names Grafana does not know stay as they are (a datasource macro, or a mistake the query then fails on)."""
    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        path, fmt = match.group(5), match.group(3) or match.group(6) or default_format
        if name in BUILT_IN:
            return BUILT_IN[name]
        if name == "__field":
            assert fields is not None and path and path.startswith("labels."), f"{match.group(0)} outside a link"
            label = path.removeprefix("labels.")
            assert label in fields, f"{match.group(0)}: the series has no label {label!r} ({fields})"
            return _format(Selection((fields[label],), multi=False), fmt)
        if name not in selections:
            return match.group(0)
        return _format(selections[name], fmt)
    return _VARIABLE.sub(replace, text)


def _sql_macros(sql: str) -> str:
    """Grafana's PostgreSQL macros, expanded as its backend does once the variables are in."""
    start, end = (f"'{t.strftime('%Y-%m-%dT%H:%M:%SZ')}'" for t in (DASHBOARD_FROM, DASHBOARD_TO))
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {start} AND {end}", sql)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    left = re.findall(r"\$\w+", sql)
    assert not left, f"{left} are neither variables nor macros reproduced by tests/test_dashboards.py"
    return sql


# --- the stack: PostgreSQL, Mosquitto, citykpi ingest and serve, Prometheus -----------------------------------

def _get(url: str, timeout_s: float = 60) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: dict[str, str]) -> None:
        # The deployment's own configuration, with its jobs pointed at the processes here and a 1 s pace.
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(ALERTS)]
        # Jobs of the services run only with a compose profile (the prober, the station files) are not run here.
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] in targets]
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._ready, timeout_s=60, what=f"Prometheus on {self.port} ({self.log_path})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_path.read_text()[-3000:]}")
        try:
            return _get(f"{self.url}/-/ready", timeout_s=2)[0] == 200
        except OSError:
            return False

    def api(self, path: str, **params: str | list[str]) -> dict:
        status, body = _get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}")
        return json.loads(body) if body.startswith("{") else {"status": "error", "error": f"HTTP {status}: {body}"}

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def has_series(self, expr: str) -> bool:
        answer = self.query(expr)
        return answer["status"] == "success" and bool(answer["data"]["result"])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Serve:
    """`citykpi serve` as an operator runs it, in its own process."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYKPI_")}
        env["CITYKPI_DATABASE_URL"] = database_url
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "citykpi.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._up, timeout_s=60, what=f"citykpi serve on {self.port} ({log_path})")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited: {self.log_path.read_text()[-3000:]}")
        try:
            return _get(f"{self.url}/openapi.json", timeout_s=2)[0] == 200
        except OSError:
            return False

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _province(db: psycopg.Connection) -> None:
    """Two districts' worth of key points: a camera that ingest will hear from, one silent for two days, one
    never heard from, and a Wi-Fi hotspot; yesterday's hours for the daily panel."""
    yesterday = datetime.now(ZONE).date() - timedelta(days=1)
    unit(db, "52", None, "province")
    unit(db, "540", "52", "district")
    unit(db, "541", "52", "district")
    point(db, "SEC-1", ["security_point"], admin_unit="540")
    point(db, "SEC-2", ["security_point"], admin_unit="540")
    point(db, "SEC-3", ["security_point"], admin_unit="541")
    point(db, "PUB-1", ["public_place"], admin_unit="541")
    device(db, "cam-heard", "SEC-1")
    device(db, "cam-quiet", "SEC-2")
    device(db, "cam-never", "SEC-3")
    device(db, "wifi-1", "PUB-1", kind="wifi_ap")
    beats(db, "cam-heard", [local(yesterday, 9), local(yesterday, 10)])
    beats(db, "cam-quiet", [local(yesterday - timedelta(days=1), 9)])
    beats(db, "wifi-1", [local(yesterday, 9)], kind="wifi_ap")
    db.commit()


def _heartbeat(device_id: str, ts: datetime) -> tuple[str, bytes]:
    return f"devices/{device_id}/heartbeat", json.dumps({"device_id": device_id, "kind": "cctv",
                                                          "ts": ts.isoformat()}).encode()


@pytest.fixture(scope="module")
def stack(postgres_server: str, migrated_template: str, mqtt_broker,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, Serve, str]]:
    """One stack for the module: starting it is most of what these tests cost."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus is not installed (Debian package prometheus)")
    tmp_path = tmp_path_factory.mktemp("dashboards")
    with scratch_database(postgres_server, "citykpi_dashboards", template=migrated_template) as database_url:
        with connect(database_url) as db:
            _province(db)
        yield from _running(binary, database_url, mqtt_broker, tmp_path)


def _running(binary: str, database_url: str, mqtt_broker, tmp_path: Path) -> Iterator[tuple[Prometheus, Serve, str]]:
    closing: list[Callable[[], object]] = []
    try:
        ingest = IngestProcess(source="mqtt", log_path=tmp_path / "ingest.log", env={
            "CITYKPI_DATABASE_URL": database_url, "CITYKPI_MQTT_URL": mqtt_broker.url,
            "CITYKPI_MQTT_PROTOCOL": "5" if mqtt_broker.supports_mqtt5 else "3.1.1",
            "CITYKPI_MQTT_CLIENT_ID": f"dashboards-{uuid.uuid4().hex[:8]}"})
        closing.append(ingest.close)
        ingest.start()
        serve = Serve(database_url, tmp_path / "serve.log")
        closing.append(serve.close)

        now = datetime.now(UTC).replace(microsecond=0)
        publisher = MqttPublisher(mqtt_broker.url, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        for minutes in (2, 1, 0):
            publisher.publish_raw(*_heartbeat("cam-heard", now - timedelta(minutes=minutes)))
        publisher.publish_raw("devices/cam-heard/heartbeat", b"{not json")
        publisher.close()
        wait_for(lambda: (ingest.metric("citykpi_ingest_heartbeats_stored_total", 'source="mqtt"') or 0) >= 3
                 and ingest.metric("citykpi_ingest_dead_letters_total", 'source="mqtt",reason="not_json"') == 1,
                 timeout_s=60, what=f"ingest storing 3 heartbeats and dead-lettering 1 ({ingest.log_path})")

        prometheus = Prometheus(binary, tmp_path, {"citykpi-ingest": f"127.0.0.1:{ingest.port}",
                                                   "citykpi-api": f"127.0.0.1:{serve.port}"})
        closing.append(prometheus.close)

        def scraped() -> bool:
            targets = prometheus.api("targets")["data"]["activeTargets"]
            return len(targets) == 2 and all(t["health"] == "up" for t in targets)

        wait_for(scraped, timeout_s=120, what=f"Prometheus scraping ingest and serve ({prometheus.log_path})")
        # A rate needs two samples of its counter; the ingest counters exist from the first scrape.
        wait_for(lambda: prometheus.has_series("rate(citykpi_ingest_messages_received_total[1m])")
                 and prometheus.has_series("rate(citykpi_ingest_dead_letters_total[1m])"),
                 timeout_s=120, what="two scrapes of the ingest counters")
        yield prometheus, serve, database_url
    finally:
        for close in reversed(closing):
            close()


# --- evaluating the dashboards --------------------------------------------------------------------------------

_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+),\s*)?(\w+)\s*\)\s*$", re.S)


def _variable_values(prometheus: Prometheus, variable: dict, selections: dict[str, Selection]) -> list[str]:
    query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
    match = _LABEL_VALUES.match(query)
    assert match, f"variable ${variable['name']}: {query!r} is not label_values(…), which this test reproduces"
    selector, label = match.group(1), match.group(2)
    params = {"match[]": [interpolate(selector, selections, "prometheus")]} if selector else {}
    answer = prometheus.api(f"label/{label}/values", **params)
    assert answer["status"] == "success", f"variable ${variable['name']}: {query} → {answer}"
    values = answer["data"]
    if variable.get("sort") == 3:  # numerical, ascending
        values = sorted(values, key=lambda v: (float(v) if re.fullmatch(r"-?\d+(\.\d+)?", v) else float("inf"), v))
    return values


def _selections(prometheus: Prometheus, dashboard: dict, mode: str) -> dict[str, Selection]:
    """Every variable set as a user would: "All" of each, or the first value of each (the next variables'
    queries seeing the earlier ones, as Grafana chains them)."""
    selections: dict[str, Selection] = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] in ("textbox", "constant"):
            selections[name] = Selection((variable["query"],), multi=False)
            continue
        assert variable["type"] == "query", f"variable ${name}: type {variable['type']} is not reproduced here"
        values = _variable_values(prometheus, variable, selections)
        assert values, f"{dashboard['uid']}: variable ${name} offers no value ({variable['query']})"
        multi = bool(variable.get("multi") or variable.get("includeAll"))
        if mode == "all" and variable.get("includeAll"):
            selections[name] = Selection(tuple(values), multi, variable.get("allValue") or None)
        else:
            selections[name] = Selection(tuple(values[:1]), multi)
    return selections


def _run_sql(database_url: str, sql: str) -> tuple[list[str], list[tuple]]:
    with psycopg.connect(database_url) as conn:
        conn.read_only = True
        cursor = conn.execute(sql)
        return [c.name for c in cursor.description], cursor.fetchall()


def _check_panels(prometheus: Prometheus, database_url: str, path: Path, dashboard: dict, mode: str,
                  selections: dict[str, Selection]) -> tuple[list[str], dict[int, list[dict]]]:
    """Problems found, and each Prometheus panel's first series labels (what its data links are built from)."""
    problems: list[str] = []
    series: dict[int, list[dict]] = {}
    for panel in dashboard["panels"]:
        where = f"{path.name}, panel {panel['id']} «{panel['title']}» ({mode})"
        assert panel.get("targets"), f"{where}: no query"
        for target in panel["targets"]:
            kind = panel["datasource"]["type"]
            if kind == "prometheus":
                expr = interpolate(target["expr"], selections, "prometheus")
                answer = prometheus.query(expr)
                if answer["status"] != "success":
                    problems.append(f"{where} {target['refId']}: {expr} → {answer.get('error')}")
                    continue
                result = answer["data"]["result"]
                series.setdefault(panel["id"], [r["metric"] for r in result])
                if not result and any(name in expr for name in MUST_FIND_SERIES):
                    problems.append(f"{where} {target['refId']}: {expr} found no series")
            elif kind == "grafana-postgresql-datasource":
                sql = interpolate(target["rawSql"], selections, "postgres")
                try:
                    sql = _sql_macros(sql)
                    columns, rows = _run_sql(database_url, sql)
                except (AssertionError, psycopg.Error) as exc:
                    problems.append(f"{where} {target['refId']}: {exc}\n{sql}")
                    continue
                if target.get("format") == "time_series" and not {"time", "value"} <= set(columns):
                    problems.append(f"{where} {target['refId']}: a time series needs time and value, got {columns}")
                if not rows:
                    problems.append(f"{where} {target['refId']}: no rows\n{sql}")
            else:
                problems.append(f"{where}: datasource {kind} is not evaluated by this test")
    return problems, series


def _check_links(serve: Serve, path: Path, dashboard: dict, selections: dict[str, Selection],
                 series: dict[int, list[dict]]) -> tuple[list[str], int]:
    """Every data link, once per series its panel shows, and every panel link, opened on the real server."""
    problems, opened = [], 0
    links = {**selections, "api_url": Selection((serve.url,), multi=False)}
    for panel in dashboard["panels"]:
        where = f"{path.name}, panel {panel['id']} «{panel['title']}»"
        to_open = [interpolate(link["url"], links, "uri") for link in panel.get("links", [])]
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            assert series.get(panel["id"]), f"{where}: a data link but no series to build it from"
            to_open += [interpolate(link["url"], links, "uri", fields=labels) for labels in series[panel["id"]]]
        for url in dict.fromkeys(to_open):
            try:
                status, _ = _get(url)
            except (OSError, ValueError) as exc:
                status = f"{exc}"
            opened += 1
            if status != 200:
                problems.append(f"{where}: link {url} → {status}")
    return problems, opened


def test_every_dashboard_query_and_link_works_on_a_running_stack(stack) -> None:
    prometheus, serve, database_url = stack
    problems: list[str] = []
    links_opened = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for mode in ("all", "first"):
            selections = _selections(prometheus, dashboard, mode)
            found, series = _check_panels(prometheus, database_url, path, dashboard, mode, selections)
            problems += found
            if mode == "all":
                found, opened = _check_links(serve, path, dashboard, selections, series)
                problems += found
                links_opened += opened
    assert len(DASHBOARDS) == 2
    assert problems == [], "\n\n".join(problems)
    assert links_opened >= 3  # the evidence of both indicators with points, and the report page


def test_every_alert_expression_evaluates_on_a_running_stack(stack) -> None:
    prometheus, _, _ = stack
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    failed = {r["alert"]: answer.get("error") for r in rules if (answer := prometheus.query(r["expr"]))["status"]
              != "success"}

    def evaluated() -> bool:
        loaded = [r for g in prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
        return len(loaded) == len(rules) and not [r for r in loaded if r["lastEvaluation"].startswith("0001-")]

    # Prometheus evaluates them itself too, every second: none may report an error there.
    wait_for(evaluated, timeout_s=60, what="Prometheus evaluating every alert rule once")
    unhealthy = {r["name"]: r.get("lastError") for g in prometheus.api("rules")["data"]["groups"]
                 for r in g["rules"] if r["health"] != "ok"}
    assert len(rules) >= 10
    assert failed == {}
    assert unhealthy == {}


def test_the_daily_panel_averages_every_device_bound_that_day_silent_ones_included(
        database_url: str, db: psycopg.Connection) -> None:
    kpi = json.loads((DEPLOY / "grafana" / "dashboards" / "citykpi-kpi.json").read_text(encoding="utf-8"))
    panel = next(p for p in kpi["panels"] if p["datasource"]["type"] == "grafana-postgresql-datasource")
    today = datetime.now(ZONE).date()
    day = today - timedelta(days=3)
    point(db, "SEC-1", ["security_point"])
    point(db, "PUB-1", ["public_place"])
    device(db, "cam-two-hours", "SEC-1")
    beats(db, "cam-two-hours", [local(day, 9), local(day, 10), local(today, 0, 1)])
    device(db, "cam-silent", "SEC-1")
    device(db, "cam-bound-later", "SEC-1", valid_from=local(day + timedelta(days=1), 0, 0))
    beats(db, "cam-bound-later", [local(day + timedelta(days=1), h) for h in range(24)])
    device(db, "cam-unbound", "SEC-1", valid_to=local(day, 0, 0))
    device(db, "wifi-all-day", "PUB-1", kind="wifi_ap")
    beats(db, "wifi-all-day", [local(day, h) for h in range(24)], kind="wifi_ap")
    db.commit()

    sql = _sql_macros(interpolate(panel["targets"][0]["rawSql"], {"kind": Selection(("cctv", "wifi_ap"))},
                                  "postgres"))
    columns, rows = _run_sql(database_url, sql)
    values = {(time.astimezone(ZONE).date(), metric): round(float(value), 6) for time, metric, value in rows}
    assert columns == ["time", "metric", "value"]
    # cam-two-hours 2/24 and cam-silent 0/24; the others were not bound when the day began.
    assert values[(day, "cctv")] == 0.041667
    assert values[(day, "wifi_ap")] == 1.0
    assert values[(day + timedelta(days=1), "cctv")] == 0.333333   # (0 + 0 + 24/24) / 3
    assert (today, "cctv") not in values                          # a day still running is not shown
