"""How a Kafka client proves who it is and protects the connection: TLS, SASL (SCRAM or PLAIN), or neither.

aiokafka reports any failure to reach the bootstrap servers as "Unable to bootstrap", and logs the cause
(a wrong password, an untrusted certificate) only at its own ERROR level. `connection_problem` asks the
servers again, one connection each, so that our own log, /readyz and the simulator can name the cause.
"""

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

_AUTHENTICATION_ERRORS = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the chain is trusted, the name is not.
_NAME_MISMATCH = (62, 64)


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: object) -> "KafkaSecurity":
        password = getattr(settings, "kafka_password", None)
        return cls(settings.kafka_security_protocol, settings.kafka_sasl_mechanism,  # type: ignore[attr-defined]
                   getattr(settings, "kafka_username", None),
                   password.get_secret_value() if password is not None else None,
                   getattr(settings, "kafka_ca_file", None))

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def client_options(self) -> dict[str, object]:
        """Keyword arguments for AIOKafkaConsumer and AIOKafkaProducer."""
        options: dict[str, object] = {"security_protocol": self.protocol}
        if self.uses_tls:
            try:
                context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"CITYKPI_KAFKA_CA_FILE {self.ca_file}: not a PEM CA certificate ({exc})") from exc
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            options["ssl_context"] = context
        if self.uses_sasl:
            if not self.username or self.password is None:
                raise ValueError(f"{self.protocol} needs CITYKPI_KAFKA_USERNAME and CITYKPI_KAFKA_PASSWORD")
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def describe(self) -> str:
        if self.uses_sasl:
            return f"{self.protocol}, {self.sasl_mechanism} as {self.username!r}"
        return self.protocol


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        servers.append((host.strip("[]") or "localhost", int(port or 9092)))
    return servers


async def connection_problem(bootstrap: str, security: KafkaSecurity, *, timeout_s: float = 10) -> str | None:
    """Why no bootstrap server accepts us (authentication first: it is the one that needs a person), or None."""
    options = security.client_options()
    problems: list[str] = []
    for host, port in _servers(bootstrap):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options), timeout_s)
        except _AUTHENTICATION_ERRORS as exc:
            return (f"authentication failed at {host}:{port} ({security.describe()}): {exc}; "
                    "check CITYKPI_KAFKA_USERNAME, CITYKPI_KAFKA_PASSWORD and CITYKPI_KAFKA_SASL_MECHANISM")
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code in _NAME_MISMATCH:
                hint = (f"the broker's certificate must name {host} in its subjectAltName (DNS:name or IP:address), "
                        "as given in CITYKPI_KAFKA_BOOTSTRAP and the broker's advertised.listeners")
            else:
                hint = "is CITYKPI_KAFKA_CA_FILE the CA that signed it?"
            return f"TLS: the certificate of {host}:{port} was not accepted ({exc.verify_message}); {hint}"
        except (OSError, KafkaError, TimeoutError) as exc:
            problems.append(f"{host}:{port}: {exc.__class__.__name__}: {exc}")
        else:
            conn.close()
    return "; ".join(problems) or None
