"""What a device's `probe` in the registry may say: how to ask a device that publishes nothing whether it works.

    tcp://host:port                      a connection is accepted
    http://host[:port]/path[#expect=N]   an HTTP GET is answered with status N (default: any 2xx or 3xx)
    https://…                            the same over TLS, the certificate checked
    rtsp://host[:port]/path              an RTSP OPTIONS is answered 200 (a camera's stream server)
    icmp://host                          an echo request is answered
    snmp://community@host[:port]         SNMPv2c: sysUpTime.0 is read

Read by the registry when a devices file is imported (a bad probe is a problem of its row) and by the prober.
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = ("tcp", "http", "https", "rtsp", "icmp", "snmp")
DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "snmp": 161}
MAX_LENGTH = 512
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_COMMUNITY = re.compile(r"[!-~]{1,64}")


class ProbeTargetError(ValueError):
    """The probe cannot be run; the message says why, for the registry row that holds it."""


@dataclass(frozen=True)
class ProbeTarget:
    scheme: str
    host: str
    port: int | None
    path: str = "/"
    expect_status: int | None = None
    community: str | None = None
    url: str = ""


def parse_probe(url: str) -> ProbeTarget:
    if len(url) > MAX_LENGTH:
        raise ProbeTargetError(f"longer than {MAX_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        raise ProbeTargetError("only printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeTargetError(f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ProbeTargetError(f"scheme {parts.scheme!r} is not one of {', '.join(SCHEMES)}")
    host = parts.hostname or ""
    if not _HOST.fullmatch(host if ":" not in host else f"[{host}]"):
        raise ProbeTargetError("no host, or a host that is not a name or an IP address")
    if port == 0:
        raise ProbeTargetError("port 0")
    expect = None
    if parts.fragment:
        matched = re.fullmatch(r"expect=([1-5][0-9]{2})", parts.fragment)
        if scheme not in ("http", "https") or matched is None:
            raise ProbeTargetError("the only fragment is #expect=NNN, an HTTP status, on http(s) probes")
        expect = int(matched[1])
    community = None
    if scheme == "snmp":
        if parts.username is None:
            raise ProbeTargetError("snmp://community@host: the community is required")
        community = unquote(parts.username)
        if not _COMMUNITY.fullmatch(community):
            raise ProbeTargetError("the community is 1–64 printable ASCII characters")
    elif parts.username is not None or parts.password is not None:
        raise ProbeTargetError("credentials in the URL only for snmp (the community)")
    if scheme == "tcp" and port is None:
        raise ProbeTargetError("tcp://host:port: the port is required")
    if scheme in ("tcp", "icmp", "snmp") and parts.path not in ("", "/"):
        raise ProbeTargetError(f"a {scheme} probe has no path")
    if scheme == "icmp" and port is not None:
        raise ProbeTargetError("an icmp probe has no port")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ProbeTarget(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme), path, expect,
                       community, url)
