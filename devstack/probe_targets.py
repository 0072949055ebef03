"""A loopback fleet for the prober's tests and benchmark: devices that answer, refuse, stall or answer wrongly,
over TCP, HTTP and RTSP (served here on one event loop), and a real SNMP agent (Debian's `snmpd`)."""

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from devstack.errors import ServiceUnavailable
from devstack.ports import free_loopback_port

_HTTP = {"/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
         "/broken": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
         "/login": b"HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"}


class LoopbackTargets:
    """`tcp` accepts and closes; `http` answers /ok 200, /broken 500, /login 302, never answers /slow, and
    answers /vhost 200 only when the Host header names the port it was asked on (421 otherwise, as a device's
    name-based virtual host would);
    `rtsp` answers OPTIONS 200 (401 on /private); `silent` accepts and never says a word; `stalled` never
    completes a connection; `refused` has nobody listening. Each attribute is a port on 127.0.0.1."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="probe-targets", daemon=True)
        self._servers: list[asyncio.base_events.Server] = []
        self._held: set[asyncio.StreamWriter] = set()
        self.tcp = self.http = self.rtsp = self.silent = self.refused = self.stalled = 0
        self._stalled_sockets: list[socket.socket] = []

    def __enter__(self) -> "LoopbackTargets":
        self._thread.start()
        self.tcp = self._serve(self._close_at_once)
        self.http = self._serve(self._http)
        self.rtsp = self._serve(self._rtsp)
        self.silent = self._serve(self._hold)
        self.refused = free_loopback_port()
        self.stalled = self._stall()
        return self

    def _stall(self) -> int:
        """A port whose accept queue is full and never served: the kernel drops further SYNs, so a connection
        attempt hangs as to a device that has stopped answering."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        self._stalled_sockets.append(listener)
        for _ in range(2):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            self._stalled_sockets.append(client)
        return port

    def __exit__(self, *_exc: object) -> None:
        async def shut() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._held):
                writer.close()
        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        for sock in self._stalled_sockets:
            sock.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self, handler) -> int:
        async def start() -> int:
            server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=1024)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]
        return asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    async def _close_at_once(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        try:
            await reader.read()   # until the prober gives up and closes
        finally:
            self._held.discard(writer)
            writer.close()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        parts = request.decode("latin-1").split(" ")
        path = parts[1] if len(parts) > 1 else ""
        if path == "/slow":
            await self._hold(reader, writer)
            return
        answer = _HTTP.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        if path == "/vhost":
            hosts = []
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "host":
                    hosts.append(value.strip())
            ours = f"127.0.0.1:{writer.get_extra_info('sockname')[1]}"
            answer = _HTTP["/ok"] if hosts == [ours] else \
                b"HTTP/1.1 421 Misdirected Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def _rtsp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        status = "401 Unauthorized" if b"/private " in request else "200 OK"
        writer.write(f"RTSP/1.0 {status}\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
                     .encode())
        await writer.drain()
        writer.close()


SNMPD = "/usr/sbin/snmpd"


class LocalSnmpd:
    """Debian's net-snmp agent on a loopback UDP port, read-only community `community`, no other configuration
    than ours (`-C`), its state in `workdir`."""

    def __init__(self, workdir: Path, community: str = "citykpi-ro") -> None:
        self.workdir = Path(workdir)
        self.community = community
        self.port = _free_udp_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "LocalSnmpd":
        binary = shutil.which("snmpd") or (SNMPD if os.path.exists(SNMPD) else None)
        if binary is None:
            raise ServiceUnavailable("snmpd is not installed (Debian package snmpd)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "snmpd.conf"
        config.write_text(f"rocommunity {self.community} 127.0.0.1\n")
        self.log_path = self.workdir / "snmpd.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-f", "-C", "-c", str(config), "-Lf", str(self.log_path), f"udp:127.0.0.1:{self.port}"],
                env={**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir), "MIBS": ""},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalSnmpd":
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
