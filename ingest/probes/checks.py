"""One probe of one device (base/probe_target.py says what each scheme asks), on asyncio, within a timeout.

Each check reads at most a few hundred bytes of the answer: a hostile or broken device cannot make the prober
hold more, and the timeout bounds how long it may take.
"""

import asyncio
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from base.probe_target import DEFAULT_PORTS, ProbeTarget

# Why a probe failed; the heartbeat carries the code as `metrics.failure_code` (0: answered as expected).
FAILURES = {"timeout": 1, "refused": 2, "unexpected": 3, "error": 4}
_ANSWER_BYTES = 512
_SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    latency_s: float
    failure: str | None = None   # one of FAILURES, None when ok
    detail: str = ""

    @property
    def failure_code(self) -> int:
        return FAILURES.get(self.failure, 0) if self.failure else 0


async def run_probe(target: ProbeTarget, timeout_s: float) -> Outcome:
    started = time.perf_counter()
    try:
        ok, detail = await asyncio.wait_for(_CHECKS[target.scheme](target), timeout_s)
    except TimeoutError:
        return Outcome(False, time.perf_counter() - started, "timeout", f"no answer in {timeout_s:g} s")
    except ConnectionRefusedError:
        return Outcome(False, time.perf_counter() - started, "refused", "connection refused")
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        # Something listens, and closes on what we said: not the service the probe expects.
        return Outcome(False, time.perf_counter() - started, "unexpected", "closed without an answer")
    except (OSError, ssl.SSLError, ValueError, EOFError) as exc:
        return Outcome(False, time.perf_counter() - started, "error", f"{exc.__class__.__name__}: {exc}"[:200])
    latency = time.perf_counter() - started
    return Outcome(True, latency) if ok else Outcome(False, latency, "unexpected", detail[:200])


async def _tcp(target: ProbeTarget) -> tuple[bool, str]:
    _reader, writer = await asyncio.open_connection(target.host, target.port)
    await _close(writer)
    return True, ""


async def _http(target: ProbeTarget) -> tuple[bool, str]:
    context = ssl.create_default_context() if target.scheme == "https" else None
    # RFC 9110 7.2: the port is part of Host unless it is the scheme's default.
    host = _host(target) if target.port == DEFAULT_PORTS[target.scheme] else f"{_host(target)}:{target.port}"
    protocol, status = await _status_line(target, f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\n"
                                          "User-Agent: citykpi-probe\r\nConnection: close\r\n\r\n", context)
    if not protocol.startswith("HTTP/"):
        return False, f"not an HTTP answer: {protocol[:60]!r}"
    code = int(status)
    expected = code == target.expect_status if target.expect_status else 200 <= code < 400
    return expected, f"HTTP status {code}"


async def _rtsp(target: ProbeTarget) -> tuple[bool, str]:
    protocol, status = await _status_line(
        target, f"OPTIONS rtsp://{_host(target)}:{target.port}{target.path} RTSP/1.0\r\nCSeq: 1\r\n"
        "User-Agent: citykpi-probe\r\n\r\n")
    if protocol != "RTSP/1.0":
        return False, f"not an RTSP answer: {protocol[:60]!r}"
    return status == "200", f"RTSP status {status}"


def _host(target: ProbeTarget) -> str:
    return target.host if ":" not in target.host else f"[{target.host}]"


async def _status_line(target: ProbeTarget, request: str, context: ssl.SSLContext | None = None) -> tuple[str, str]:
    """(protocol, status code) of the answer's first line; the protocol is the whole line when it is no
    status line."""
    reader, writer = await asyncio.open_connection(target.host, target.port, ssl=context)
    try:
        writer.write(request.encode())
        await writer.drain()
        line = (await reader.readline())[:_ANSWER_BYTES].decode("latin-1")
    finally:
        await _close(writer)
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return line.strip() or "(nothing)", ""
    return parts[0], parts[1]


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass  # the device closed first or reset: the answer was already read


# -- ICMP echo ------------------------------------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_socket() -> tuple[socket.socket, bool]:
    """An unprivileged ICMP datagram socket (Linux, within net.ipv4.ping_group_range), else a raw one (root)."""
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    except PermissionError:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True


async def _icmp(target: ProbeTarget) -> tuple[bool, str]:
    loop = asyncio.get_running_loop()
    address = (await loop.getaddrinfo(target.host, 0, family=socket.AF_INET, type=socket.SOCK_DGRAM))[0][4][0]
    sock, raw = icmp_socket()
    try:
        sock.setblocking(False)
        identifier, sequence = os.getpid() & 0xFFFF, int.from_bytes(os.urandom(2), "big")
        payload = b"citykpi-probe"
        header = struct.pack("!BBHHH", 8, 0, 0, identifier, sequence)
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), identifier, sequence) + payload
        sock.connect((address, 0))  # a datagram "connect" only sets the peer: it does not block
        await loop.sock_sendall(sock, packet)
        while True:
            answer = await loop.sock_recv(sock, _ANSWER_BYTES)
            if raw:  # a raw socket hands over the IP header too
                answer = answer[(answer[0] & 0x0F) * 4:]
            if len(answer) >= 8:
                kind, _code, _sum, _ident, answered = struct.unpack("!BBHHH", answer[:8])
                # A datagram socket's identifier is the kernel's; the sequence number is ours in both.
                if kind == 0 and answered == sequence:
                    return True, ""
    finally:
        sock.close()


# -- SNMPv2c GET sysUpTime.0 --------------------------------------------------------------------------------

def _ber(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = (length.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + length.to_bytes(size, "big") + content


def _ber_int(value: int) -> bytes:
    return _ber(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _oid(parts: tuple[int, ...]) -> bytes:
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(reversed(chunk))
    return _ber(0x06, body)


def snmp_get_request(community: str, request_id: int, oid: tuple[int, ...] = _SYS_UPTIME) -> bytes:
    varbind = _ber(0x30, _oid(oid) + b"\x05\x00")
    pdu = _ber(0xA0, _ber_int(request_id) + _ber_int(0) + _ber_int(0) + _ber(0x30, varbind))
    return _ber(0x30, _ber_int(1) + _ber(0x04, community.encode()) + pdu)


def _read_tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, content, the offset after it) of the BER element at `at`; ValueError when it does not fit."""
    if at + 2 > len(data):
        raise ValueError("truncated SNMP answer")
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or at + size > len(data):
            raise ValueError("bad BER length in SNMP answer")
        length, at = int.from_bytes(data[at:at + size], "big"), at + size
    if at + length > len(data):
        raise ValueError("truncated SNMP answer")
    return tag, data[at:at + length], at + length


def read_snmp_response(data: bytes, request_id: int) -> tuple[bool, str]:
    """Whether `data` answers our request with sysUpTime (TimeTicks) and no error."""
    tag, message, _ = _read_tlv(data, 0)
    if tag != 0x30:
        raise ValueError("not an SNMP message")
    _, _version, at = _read_tlv(message, 0)
    _, _community, at = _read_tlv(message, at)
    tag, pdu, _ = _read_tlv(message, at)
    if tag != 0xA2:
        return False, f"SNMP PDU type {tag:#x}, not a response"
    _, answered_id, at = _read_tlv(pdu, 0)
    if int.from_bytes(answered_id, "big", signed=True) != request_id:
        return False, "another request's answer"
    _, error_status, at = _read_tlv(pdu, at)
    if int.from_bytes(error_status, "big") != 0:
        return False, f"SNMP error status {int.from_bytes(error_status, 'big')}"
    _, _error_index, at = _read_tlv(pdu, at)
    _, varbinds, _ = _read_tlv(pdu, at)
    _, varbind, _ = _read_tlv(varbinds, 0)
    _, _name, at = _read_tlv(varbind, 0)
    tag, _value, _ = _read_tlv(varbind, at)
    if tag != 0x43:  # TimeTicks; noSuchObject and the like are other tags
        return False, f"sysUpTime.0 answered with type {tag:#x}"
    return True, ""


class DatagramAnswers(asyncio.DatagramProtocol):
    # A device flooding our port during a probe is held to a few answers; the rest are dropped.
    MAX_QUEUED = 16

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes | OSError] = asyncio.Queue(self.MAX_QUEUED)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._put(data[:4096])

    def error_received(self, exc: OSError) -> None:  # an ICMP port unreachable: nobody listens there
        self._put(exc)

    def _put(self, answer: bytes | OSError) -> None:
        try:
            self.answers.put_nowait(answer)
        except asyncio.QueueFull:
            pass


async def _snmp(target: ProbeTarget) -> tuple[bool, str]:
    assert target.community is not None
    loop = asyncio.get_running_loop()
    request_id = int.from_bytes(os.urandom(3), "big")
    transport, protocol = await loop.create_datagram_endpoint(DatagramAnswers, remote_addr=(target.host, target.port))
    try:
        transport.sendto(snmp_get_request(target.community, request_id))
        while True:
            answer = await protocol.answers.get()
            if isinstance(answer, OSError):
                raise answer
            ok, detail = read_snmp_response(answer, request_id)
            if detail != "another request's answer":
                return ok, detail
    finally:
        transport.close()


_CHECKS = {"tcp": _tcp, "http": _http, "https": _http, "rtsp": _rtsp, "icmp": _icmp, "snmp": _snmp}
