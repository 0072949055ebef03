"""`citykpi serve` as an operator runs it (uvicorn in its own process), attacked over a real socket: a
decompression bomb leaves its memory within bounds, a token is checked before a byte of the body is read, a
stalled body times out, and X-Forwarded-For is not believed from an untrusted peer."""

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack.ports import free_loopback_port
from tests.helpers import wait_for
from tests.submission_files import XLSX, bomb, health_xlsx
from web.tokens import create_token


class Server:
    def __init__(self, database_url: str, log: Path, **settings: str) -> None:
        self.port = free_loopback_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYKPI_")}
        env.update({"CITYKPI_DATABASE_URL": database_url, "CITYKPI_POINT_ROLLUP_REFRESH_S": "0", **settings})
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "citykpi.cli", "serve", "--port", str(self.port)],
                                            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self._up, timeout_s=60, what=f"citykpi serve on {self.port} ({log})")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/openapi.json", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def post(self, body: bytes, token: str | None, content_type: str, **headers: str) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/forms/submissions", data=body,
                                         method="POST", headers={"Content-Type": content_type, **headers,
                                                                 **({"Authorization": f"Bearer {token}"} if token
                                                                    else {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def raw(self, head: bytes, body: bytes = b"") -> socket.socket:
        """A request written by hand, body and all or only its start, left open for the answer."""
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        connection.sendall(head + body)
        return connection

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def serve(database_url: str, tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(**settings: str) -> Server:
        servers.append(Server(database_url, tmp_path / f"serve-{len(servers)}.log", **settings))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def _answer(connection: socket.socket) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def _audited(db: psycopg.Connection) -> list[tuple]:
    db.rollback()
    return [(r["status"], r["remote"]) for r in db.execute("SELECT status, remote FROM audit_log ORDER BY id")]


def test_a_decompression_bomb_is_refused_and_memory_stays_within_bounds(serve, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    server = serve()
    loaded = bomb(health_xlsx(), 400 * 1024 * 1024)               # 400 MB of whitespace, inflated
    idle = server.peak_rss_mib()
    status, text = server.post(loaded, token, XLSX)
    assert len(loaded) < 2 * 1024 * 1024
    assert status == 422 and "inflate to more than" in text
    assert server.peak_rss_mib() - idle < 100


def test_a_bad_token_is_answered_before_the_body_is_sent(serve, db: psycopg.Connection) -> None:
    server = serve()
    head = (b"POST /v1/forms/submissions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ckpi_guess\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
    connection = server.raw(head)             # and not one byte of the 5 MB: waiting for it would time out here
    answer = _answer(connection)
    connection.close()
    assert answer.startswith(b"HTTP/1.1 401")
    assert _audited(db) == [(401, "127.0.0.1")]


def test_a_stalled_body_times_out_and_is_audited(serve, db: psycopg.Connection) -> None:
    _, token = create_token(db, "so-yt-gia-lai")
    server = serve(CITYKPI_API_BODY_TIMEOUT_S="1")
    head = (f"POST /v1/forms/submissions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    connection = server.raw(head, b'{"period": ')                 # and then nothing
    answer = _answer(connection)
    connection.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert _audited(db) == [(408, "127.0.0.1")]


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(serve, db: psycopg.Connection) -> None:
    untrusting = serve()
    trusting = serve(CITYKPI_API_TRUSTED_PROXIES="127.0.0.1")
    for server in (untrusting, trusting):
        status, _ = server.post(b"{}", "ckpi_guess", "application/json", **{"X-Forwarded-For": "203.0.113.9"})
        assert status == 401
    assert _audited(db) == [(401, "127.0.0.1"), (401, "203.0.113.9")]
