"""Active probes of devices that publish nothing (TCP, HTTP, RTSP, ICMP, SNMP), as a source of heartbeats."""

from ingest.probes.source import ProbeSource

__all__ = ["ProbeSource"]
