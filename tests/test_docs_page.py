"""The API's documentation pages, opened in a browser that cannot reach the internet."""

import re

import httpx

from tests.browser import browse, chromium, screenshot, serving


def test_swagger_ui_draws_every_operation_without_the_internet(database_url: str) -> None:
    chromium()
    with serving(database_url) as base:
        dom = browse(f"{base}/docs", "--dump-dom")
        shot = screenshot(f"{base}/docs", "api-docs.png")
        schema_paths = set(httpx.get(f"{base}/openapi.json").json()["paths"])
    drawn = set(re.findall(r'data-path="([^"]+)"', dom))
    assert "/v1/kpis/{code}/evidence" in drawn
    assert drawn == schema_paths
    assert shot.stat().st_size > 10_000


def test_redoc_draws_the_api_without_the_internet(database_url: str) -> None:
    chromium()
    with serving(database_url) as base:
        dom = browse(f"{base}/redoc", "--dump-dom")
        screenshot(f"{base}/redoc", "api-redoc.png")
    # ReDoc renders an operation's path in its right-hand panel once its script has run.
    assert "/v1/kpis/{code}/evidence" in dom
