"""Reaching an MQTT broker: its URL, TLS (which CA to trust, a client certificate for mutual TLS), and what to
say when a connection fails. Used by ingest's MQTT source and by the simulators' publisher."""

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"CITYKPI_MQTT_URL {url!r}: expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


@dataclass(frozen=True)
class MqttTls:
    """No CA file: the system's CAs. A client certificate only when the broker requires one."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: object) -> "MqttTls":
        return cls(getattr(settings, "mqtt_ca_file", None), getattr(settings, "mqtt_cert_file", None),
                   getattr(settings, "mqtt_key_file", None))

    def context(self) -> ssl.SSLContext:
        """A client context that checks the broker's certificate chain and host name (TLS 1.2 at least).

        Raises ValueError naming the setting whose file cannot be used, at start-up rather than at connect.
        """
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"CITYKPI_MQTT_CA_FILE {self.ca_file}: not a PEM CA certificate ({exc})") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"CITYKPI_MQTT_CERT_FILE {self.cert_file} / CITYKPI_MQTT_KEY_FILE {self.key_file}: "
                                 f"not a PEM certificate and its unencrypted key ({exc})") from exc
        return context


def describe_connect_error(exc: BaseException | None, host: str, port: int) -> str:
    """What an operator should read when a connection attempt failed before MQTT's CONNACK."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the certificate of {host}:{port} was not accepted ({exc.verify_message}); "
                "is CITYKPI_MQTT_CA_FILE the CA that signed it, and does it name this host?")
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed ({exc.reason or exc}); is the port a TLS listener?"
    if exc is None:
        return f"could not connect to {host}:{port}"
    return f"could not connect to {host}:{port}: {exc.__class__.__name__}: {exc}"
