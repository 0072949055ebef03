"""Small helpers shared by tests: waiting on a condition with a deadline, never sleeping as synchronisation."""

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
