"""Small helpers shared by tests: waiting on a condition with a deadline (never sleeping as synchronisation),
and what to do when a service or tool a test needs is missing."""

import os
import time
from collections.abc import Callable
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Fail in CI, where every service and tool must run; skip elsewhere, saying what is missing and why."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: every service must run)", pytrace=False)
    pytest.skip(what)


def unavailable(what: str, exc: BaseException) -> NoReturn:
    """A service that could not start: `missing`, with the reason it gave."""
    missing(f"{what} unavailable: {exc}")


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


# The database backends a test can run on. A test runs on plain PostgreSQL unless it, or its module, overrides
# the `backend` fixture (tests/conftest.py): `@pytest.mark.parametrize("backend", BACKENDS)`, or a module-level
# fixture `backend` with `params=BACKENDS`, runs it on both; the TimescaleDB variant skips where it is not installed.
BACKENDS = ("postgresql", "timescaledb")
