"""/healthz, /readyz and /metrics as an orchestrator and Prometheus see them."""

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from ingest.endpoint import OpsEndpoint


def _get(endpoint: OpsEndpoint, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def endpoint() -> Iterator[OpsEndpoint]:
    registry = CollectorRegistry()
    Counter("citykpi_test_things_total", "Things", registry=registry).inc(3)
    problems = ["kafka: not connected to the broker", "database: connection refused"]
    server = OpsEndpoint("127.0.0.1", 0, live=lambda: [], ready=lambda: problems, registry=registry).start()
    yield server
    server.close()


def test_healthz_is_200_when_nothing_failed(endpoint: OpsEndpoint) -> None:
    assert _get(endpoint, "/healthz") == (200, "ok\n")


def test_readyz_is_503_and_lists_every_problem_one_per_line(endpoint: OpsEndpoint) -> None:
    assert _get(endpoint, "/readyz") == (503, "kafka: not connected to the broker\ndatabase: connection refused\n")


def test_metrics_serves_the_registry_in_prometheus_text_format(endpoint: OpsEndpoint) -> None:
    status, body = _get(endpoint, "/metrics")
    assert status == 200
    assert "citykpi_test_things_total 3.0" in body.splitlines()


def test_an_unknown_path_is_404_and_names_the_known_ones(endpoint: OpsEndpoint) -> None:
    status, body = _get(endpoint, "/")
    assert status == 404
    assert "/metrics" in body


def test_a_port_in_use_is_refused_with_the_setting_named(endpoint: OpsEndpoint) -> None:
    with pytest.raises(SystemExit, match="CITYKPI_METRICS_PORT"):
        OpsEndpoint("127.0.0.1", endpoint.port, live=lambda: [], ready=lambda: [])
