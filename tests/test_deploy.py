"""The deployment material, checked without a Docker engine: the compose file against the Compose
specification's schema, every file it mounts present and parseable, Prometheus' config and rules by promtool."""

import json
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
