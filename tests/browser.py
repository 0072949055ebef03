"""Headless Chromium for the page tests, with the network cut to loopback.

A page that fetched anything from the internet (a CDN script, a web font, map tiles) would work on a
developer's machine and break in a closed IOC network: every request not for 127.0.0.1 goes to a proxy
that does not exist, and no name resolves, so such a page fails here as it would there.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.ports import free_loopback_port, port_accepts
from tests.helpers import missing, wait_for

ARTIFACTS = Path(os.environ.get("CITYKPI_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is not installed (Debian package chromium)")
    return found


def browse(url: str, *extra: str) -> str:
    """Chromium's output for `url` (with `--dump-dom`, the DOM once the page's scripts have run: the virtual
    time budget lets deferred scripts and their timers finish first)."""
    # Nothing listens on a port just freed: the proxy every non-loopback request is sent to refuses it.
    dead_proxy = f"http://127.0.0.1:{free_loopback_port()}"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--proxy-server={dead_proxy}", "--proxy-bypass-list=127.0.0.1",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000",
             f"--user-data-dir={profile}", *extra, url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(url: str, name: str, *, width: int = 1280, height: int = 1600) -> Path:
    """A PNG of the page, once its scripts have run, in test-artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    browse(url, f"--screenshot={path}", f"--window-size={width},{height}", "--hide-scrollbars")
    return path


@contextmanager
def serving(database_url: str, **env: str) -> Iterator[str]:
    """`citykpi serve` on a free loopback port, as a child process; yields its base URL."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "citykpi.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env={**os.environ, "CITYKPI_DATABASE_URL": database_url, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_accepts(port) or server.poll() is not None, timeout_s=60, what="citykpi serve")
        assert server.poll() is None, server.stdout.read().decode()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
