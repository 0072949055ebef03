"""The deployment material, checked without a Docker engine: the compose file against the Compose
specification's schema, every file it mounts present and parseable, Prometheus' config and rules by promtool."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import missing

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _mounted_files() -> list[Path]:
    paths = []
    for service in _compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                paths.append((DEPLOY / source).resolve())
    return paths


def test_every_file_the_stack_mounts_exists() -> None:
    absent = [str(p) for p in _mounted_files() if not p.exists()]
    assert _mounted_files(), "the compose file mounts no configuration at all"
    assert absent == []


def test_every_mounted_yaml_and_json_file_parses() -> None:
    files = [p for p in _mounted_files() if p.is_file()] + [
        f for p in _mounted_files() if p.is_dir() for f in p.rglob("*") if f.is_file()]
    for path in files:
        if path.suffix in (".yml", ".yaml"):
            assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))


def test_services_that_must_survive_restarts_have_healthchecks_and_restart_policies() -> None:
    services = _compose()["services"]
    for name in ("timescaledb", "mosquitto", "kafka", "ingest", "api", "prometheus"):
        assert "healthcheck" in services[name], name
        assert services[name].get("restart", "unless-stopped") == "unless-stopped", name


def test_the_env_example_defines_every_variable_the_compose_file_requires() -> None:
    import re

    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text(encoding="utf-8")))
    defined = {line.split("=", 1)[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    assert required and required <= defined


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        missing("promtool is not installed (Debian package prometheus)")
    return tool


def test_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    # The config names the rules by their in-container path; check a copy that points at ours.
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace(
        "/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(config)
    result = subprocess.run([_promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    rules = DEPLOY / "prometheus"
    check = subprocess.run([_promtool(), "check", "rules", str(rules / "alerts.yml")], capture_output=True, text=True)
    test = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True,
                          cwd=rules)
    assert check.returncode == 0, check.stdout + check.stderr
    assert test.returncode == 0, test.stdout + test.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
              for r in g["rules"]}
    unit_tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in unit_tests for case in t["alert_rule_test"]}
    assert alerts == tested


def _secrets_check() -> str:
    """The secrets service's shell command as Compose hands it to sh (`$$` is Compose's escape for `$`)."""
    return _compose()["services"]["secrets"]["entrypoint"][2].replace("$$", "$")


def test_the_stack_refuses_to_start_with_an_example_secret() -> None:
    chosen = {"POSTGRES_PASSWORD": "p1-x", "CITYKPI_DB_PASSWORD": "p2-x", "MQTT_INGEST_PASSWORD": "p3-x",
              "GRAFANA_ADMIN_PASSWORD": "p4-x", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(["sh", "-c", _secrets_check()], env=chosen, capture_output=True, text=True)
    refused = subprocess.run(["sh", "-c", _secrets_check()], capture_output=True, text=True,
                             env={**chosen, "MQTT_INGEST_PASSWORD": "change-me-ingest",
                                  "CITYKPI_KAFKA_PASSWORD": "change-me-kafka"})
    assert ok.returncode == 0
    assert refused.returncode == 1
    assert "example secret of MQTT_INGEST_PASSWORD CITYKPI_KAFKA_PASSWORD" in refused.stderr


def test_every_service_waits_for_the_secrets_check() -> None:
    services = _compose()["services"]
    first = {name for name, s in services.items() if name != "secrets" and "secrets" in s.get("depends_on", {})}
    assert first == {"timescaledb", "mosquitto", "kafka", "prometheus"}
    # Everything else starts after one of those (migrate and the citykpi services after timescaledb).
    assert all(s.get("depends_on") for name, s in services.items() if name != "secrets")


def test_the_services_own_settings_refuse_an_example_secret() -> None:
    from pydantic import ValidationError

    from base.settings import Settings

    for bad in ({"mqtt_password": "change-me-ingest"}, {"database_url": "postgresql://c:change-me-x@db/citykpi"},
                {"kafka_security_protocol": "SASL_SSL", "kafka_username": "u", "kafka_password": "change-me-k"}):
        try:
            Settings(**bad)
        except ValidationError as exc:
            assert "still the example secret" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    assert Settings(mqtt_password="a-real-one").mqtt_password is not None


def test_the_database_init_script_takes_any_password_as_data(tmp_path: Path) -> None:
    import psycopg

    from devstack.postgres import LocalPostgres

    tricky = "it's'; DROP ROLE postgres; --\\ \"x\" $1 :'password'"
    with LocalPostgres(workdir=tmp_path / "pg") as pg:
        env = {"POSTGRES_USER": "postgres", "CITYKPI_DB_PASSWORD": tricky, "PGHOST": "127.0.0.1",
               "PGPORT": str(pg.port), "PATH": f"{pg.bindir}:/usr/bin:/bin"}
        result = subprocess.run(["sh", str(DEPLOY / "postgres" / "10-citykpi.sh")], env=env, capture_output=True,
                                text=True)
        hba = pg.workdir / "data" / "pg_hba.conf"
        hba.write_text("host all citykpi 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        with psycopg.connect(pg.url, autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            roles = {r[0] for r in admin.execute("SELECT rolname FROM pg_roles")} & {"postgres", "citykpi"}
        with psycopg.connect(host="127.0.0.1", port=pg.port, user="citykpi", password=tricky, dbname="citykpi") as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "citykpi"
    assert result.returncode == 0, result.stderr
    assert roles == {"postgres", "citykpi"}


def test_api_docs_need_no_network() -> None:
    from fastapi.testclient import TestClient

    from base.settings import Settings
    from web.app import create_app

    client = TestClient(create_app(Settings(), "postgresql://unused@127.0.0.1:1/x"))
    pages = [client.get("/docs"), client.get("/redoc")]
    assets = re.findall(r'(?:src|href)="([^"]+)"', pages[0].text + pages[1].text)
    assert [p.status_code for p in pages] == [200, 200]
    assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    assert all(client.get(a).status_code == 200 for a in assets if not a.startswith("/openapi"))
