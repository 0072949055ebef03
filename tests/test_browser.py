"""The page tests' browser reaches loopback and nothing else, so a page that needs the internet fails them."""

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.browser import browse, chromium


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = b"<html><body><p id='reached'>reached</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _page_on(address: str) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((address, 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_browser_reaches_a_page_on_127_0_0_1() -> None:
    chromium()
    with _page_on("127.0.0.1") as url:
        assert "id=\"reached\"" in browse(url, "--dump-dom")


def test_the_browser_cannot_reach_any_other_address() -> None:
    """127.0.0.2 is this machine too, so only the browser's settings can keep it out: any other host would."""
    chromium()
    with _page_on("127.0.0.2") as url:
        assert "reached" not in browse(url, "--dump-dom")
