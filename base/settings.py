"""Configuration, read once at start-up from CITYKPI_* environment variables and validated."""

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from base.vocabulary import DEFAULT_HEARTBEAT_INTERVAL_S, DEVICE_KINDS, Bounds

# What deploy/.env.example writes for every secret: a service that finds it refuses to start.
EXAMPLE_SECRET = "change-me"


class Settings(BaseSettings):
    # Empty means unset: docker compose passes `${CITYKPI_MQTT_CA_FILE:-}` as "" when .env leaves it out.
    model_config = SettingsConfigDict(env_prefix="CITYKPI_", extra="forbid", env_ignore_empty=True)

    database_url: SecretStr | None = Field(
        None, description="PostgreSQL/TimescaleDB URL, e.g. postgresql://citykpi:secret@db:5432/citykpi")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker, mqtt://host:port")
    mqtt_username: str | None = Field(None, description="MQTT user name")
    mqtt_password: SecretStr | None = Field(None, description="MQTT password")
    mqtt_ca_file: Path | None = Field(
        None, description="mqtts:// only: CA certificate (PEM) the broker's certificate must chain to "
        "(default: the system's CAs)")
    mqtt_cert_file: Path | None = Field(
        None, description="mqtts:// only: client certificate (PEM), for a broker that requires one (mutual TLS)")
    mqtt_key_file: Path | None = Field(
        None, description="private key (PEM, unencrypted) of CITYKPI_MQTT_CERT_FILE, unless that file holds it")
    mqtt_protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    mqtt_client_id: str = Field(
        "citykpi-ingest", description="fixed client id: the broker keeps this session's unacknowledged messages")
    mqtt_topic_prefix: str = Field("devices", description="heartbeats arrive on PREFIX/{device_id}/heartbeat")
    mqtt_shared_group: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]+$",
        description="MQTT 5 shared subscription group: workers with the same group split one broker's messages")
    mqtt_receive_maximum: int = Field(
        10000, ge=1, le=65535, description="unacknowledged QoS 1 messages the broker may send us at once")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    kafka_topic: str = Field("heartbeats", description="Kafka topic carrying heartbeats")
    kafka_group_id: str = Field(
        "citykpi-ingest", description="Kafka consumer group: ingest processes sharing it split the partitions")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how to reach Kafka: SASL_SSL (password and TLS) anywhere but a closed network")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL_* only: how the user name and password are checked")
    kafka_username: str | None = Field(None, description="SASL_* only: Kafka user name")
    kafka_password: SecretStr | None = Field(
        None, validate_default=True, description="SASL_* only: Kafka password")
    kafka_ca_file: Path | None = Field(
        None, description="SSL/SASL_SSL only: CA certificate (PEM) of the brokers' certificates "
        "(default: the system's CAs)")
    kafka_max_in_flight: int = Field(
        10000, ge=1, description="Kafka messages handed to the sink and not yet stored, at most")
    kafka_commit_interval_s: float = Field(
        1.0, gt=0, description="how often stored Kafka offsets are committed (also on revoke and at exit)")
    kafka_session_timeout_ms: int = Field(
        10000, ge=1000, description="Kafka group session timeout: how soon a dead member's partitions move")
    mappings: Path | None = Field(
        None, description="mapping file (TOML) of vendor messages to read as heartbeats: its MQTT topic filters "
        "and Kafka topics are consumed beside the native ones (deploy/examples/mappings/)")
    ingest_source: Literal["mqtt", "kafka", "both", "files", "probes"] = Field(
        "mqtt", description="default of `citykpi ingest --source`")
    probe_concurrency: int = Field(200, ge=1, le=10000, description="probes running at once, at most")
    probe_timeout_s: float = Field(5.0, gt=0, le=60, description="longest a probe waits for its answer")
    probe_reload_s: float = Field(
        30.0, gt=0, le=3600, description="how often `citykpi probe` re-reads the probes of the registry")
    files_dir: Path | None = Field(
        None, description="directory the monitoring stations' data files are dropped in (by FTP) for "
        "`citykpi ingest --source files`; processing/, done/ and rejected/ are made in it")
    files_poll_s: float = Field(2.0, gt=0, le=3600, description="how often the files directory is looked at")
    files_settle_s: float = Field(
        5.0, ge=0, le=3600, description="a file is taken once nothing wrote to it for this long (an upload in "
        "progress is left alone)")
    station_status_codes: dict[Literal["ok", "degraded", "fault"], list[str]] = Field(
        {"ok": ["00"], "degraded": ["01"], "fault": ["02"]},
        description="the data loggers' instrument status codes (JSON): measuring, calibrating, instrument error")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="the province's time zone: buckets and dates use it")
    lateness_window: timedelta = Field(
        timedelta(days=7), description="heartbeats older than this at receipt are rejected; KPIs final after it")
    future_tolerance: timedelta = Field(
        timedelta(minutes=5), description="heartbeats further ahead of the receive time are rejected")
    max_message_bytes: int = Field(65536, ge=1024, description="largest accepted heartbeat message")
    batch_max_rows: int = Field(5000, ge=1, description="rows per database transaction at most")
    batch_max_wait_s: float = Field(0.2, gt=0, description="longest a received message waits to be written")
    batch_idle_s: float = Field(
        0.02, gt=0, description="a batch is written once no message arrived for this long (or at the limits above)")
    queue_max: int = Field(20000, ge=1, description="messages waiting between the sources and the sink, at most"
                                                    " (a source's read is admitted whole while there are fewer)")
    queue_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024,
        description="bytes of messages waiting between the sources and the sink, at most (with CITYKPI_QUEUE_MAX)")
    retry_max_backoff_s: float = Field(
        10.0, gt=0, description="longest pause between retries of a database write that failed for now")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, longest time to write and acknowledge what was received")
    dead_letter_max_raw_bytes: int = Field(
        4096, ge=64, description="bytes of a rejected message kept in its dead letter (its detail says when cut)")
    dead_letter_rate_per_minute: int = Field(
        120, ge=1, description="dead letters stored a minute from one device, gateway or Kafka key; the rest are "
        "counted (citykpi_ingest_dead_letters_suppressed_total), not stored")
    dead_letter_retention: timedelta = Field(
        timedelta(days=90), description="dead letters older than this are deleted by `citykpi ingest`, hourly")
    metrics_host: str = Field(
        "127.0.0.1", description="address of the /metrics, /healthz, /readyz endpoint (0.0.0.0: every interface, "
        "as in a container that Prometheus scrapes over its network)")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="port of /metrics, /healthz and /readyz; 0 turns them off")
    registry_bounds: str = Field(
        "6.0,24.0,102.0,118.0", description="lat_min,lat_max,lon_min,lon_max every key point must lie in "
        "(default: Vietnam with Hoàng Sa and Trường Sa)")
    point_rollup_refresh_s: float = Field(
        60.0, ge=0, description="`citykpi serve` refreshes the point rollups this often (0: never; then run "
        "`citykpi kpi refresh`); until then readers compute stale days per device, exact but slower")
    api_public_reads: bool = Field(
        True, description="false: every read of the API and its pages needs a valid agency token (Bearer)")
    api_max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="largest request body the API accepts")
    api_body_timeout_s: float = Field(
        30.0, gt=0, description="a submission's body must have arrived this long after its request did (else 408)")
    api_trusted_proxies: str = Field(
        "", description="comma-separated addresses of reverse proxies whose X-Forwarded-For names the client; "
        "empty: the peer's own address is recorded, whatever the header says")
    api_max_concurrent_uploads: int = Field(
        4, ge=1, description="submissions read and checked at once; one more is answered 429 (memory stays bounded)")
    submission_max_inflated_bytes: int = Field(
        20 * 1024 * 1024, ge=64 * 1024,
        description="an .xlsx submission's parts once decompressed, at most (a decompression bomb is refused)")
    submission_max_rows: int = Field(
        1000, ge=10, description="rows of a submitted sheet or CSV, values of a JSON submission, at most")
    submission_max_problems: int = Field(
        100, ge=1, description="problems a refused submission lists; the rest are counted")
    submission_max_seconds: float = Field(
        10.0, gt=0, description="time to read and check one submission, at most")
    map_tiles: str = Field(
        "", description="tile URL template of the pages' maps, http(s) with {z}, {x} and {y} (and optionally {s}, "
        "{r}), e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png; empty: points on a plain background (the "
        "browsers of a closed network reach no tile server)")
    map_attribution: str = Field(
        "", max_length=300, description="the tile provider's attribution under the maps, plain text "
        "(e.g. © OpenStreetMap contributors); shown only with CITYKPI_MAP_TILES")
    heartbeat_interval_s: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_HEARTBEAT_INTERVAL_S),
        description="JSON {kind: seconds}, merged over the defaults: interval of a binding that names none")
    live_silent_devices: int = Field(
        20, ge=0, le=1000, description="/metrics of `citykpi serve` lists this many bound devices, those silent the "
        "longest (citykpi_live_device_silent_seconds; one series each, so the bound keeps Prometheus small)")
    raw_retention: timedelta | None = Field(
        timedelta(days=400), description="TimescaleDB: drop raw heartbeats older than this (rollups stay)")
    compress_after: timedelta = Field(timedelta(days=14), description="TimescaleDB: compress raw heartbeats after")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file", "kafka_ca_file")
    @classmethod
    def _readable_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        if not value.is_file():
            raise ValueError(f"{value}: no such file")
        if info.field_name.startswith("mqtt_") and not info.data.get("mqtt_url", "").startswith("mqtts://"):
            raise ValueError("is only used over TLS: CITYKPI_MQTT_URL must be mqtts://host:port")
        if info.field_name == "mqtt_key_file" and info.data.get("mqtt_cert_file") is None:
            raise ValueError("needs CITYKPI_MQTT_CERT_FILE, the certificate this key belongs to")
        if info.field_name == "kafka_ca_file" and info.data.get("kafka_security_protocol") not in ("SSL", "SASL_SSL"):
            raise ValueError("is only used over TLS: CITYKPI_KAFKA_SECURITY_PROTOCOL must be SSL or SASL_SSL")
        return value

    @field_validator("database_url", "mqtt_password", "kafka_password")
    @classmethod
    def _not_the_example_secret(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else ""
        if "://" in secret:  # a URL: its password
            secret = urlsplit(secret).password or ""
        if secret.startswith(EXAMPLE_SECRET):
            raise ValueError(f"still the example secret ({EXAMPLE_SECRET}…) of deploy/.env.example; give it one "
                             "of its own (deploy/README.md, Security)")
        return value

    @field_validator("kafka_password")
    @classmethod
    def _sasl_credentials(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        sasl = info.data.get("kafka_security_protocol", "").startswith("SASL_")
        if sasl and (value is None or not info.data.get("kafka_username")):
            raise ValueError(f"{info.data['kafka_security_protocol']} needs CITYKPI_KAFKA_USERNAME and "
                             "CITYKPI_KAFKA_PASSWORD")
        if not sasl and (value is not None or info.data.get("kafka_username")):
            raise ValueError("a Kafka user name and password need CITYKPI_KAFKA_SECURITY_PROTOCOL "
                             "SASL_SSL or SASL_PLAINTEXT")
        return value

    @field_validator("registry_bounds")
    @classmethod
    def _valid_bounds(cls, value: str) -> str:
        Bounds.parse(value)
        return value

    @field_validator("map_tiles")
    @classmethod
    def _tile_template(cls, value: str) -> str:
        if value:
            check_tile_template(value)
        return value

    @field_validator("heartbeat_interval_s")
    @classmethod
    def _intervals_for_known_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(DEVICE_KINDS))
        if unknown:
            raise ValueError(f"unknown device kind(s) {', '.join(unknown)}; kinds are {', '.join(DEVICE_KINDS)}")
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("intervals must be positive seconds")
        return {**DEFAULT_HEARTBEAT_INTERVAL_S, **value}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise SystemExit("CITYKPI_DATABASE_URL is not set (e.g. postgresql://user:pass@host:5432/citykpi); "
                             "'citykpi demo' runs without one")
        return self.database_url.get_secret_value()


# What a browser substitutes in a tile URL (Leaflet's TileLayer): zoom, column, row, and optionally a subdomain
# ({s}, only as the host's first label) and "@2x" on high-density screens ({r}). Any other {name} would make
# Leaflet throw for a missing value, after the service had started.
_TILE_PLACEHOLDERS = {"{z}", "{x}", "{y}", "{s}", "{r}"}
_TILE_HOST = re.compile(r"(\{s\}\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def check_tile_template(template: str) -> None:
    """Raises ValueError saying what is wrong with a tile URL template (CITYKPI_MAP_TILES)."""
    example = "e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    if any(c.isspace() or c in "\"'<>\\" or ord(c) < 32 for c in template):
        raise ValueError(f"{template!r} holds a space, a quote, < > or a backslash; {example}")
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{template!r} is not an http:// or https:// URL; {example}")
    host, _, port = parts.netloc.partition(":")
    if "@" in parts.netloc or not _TILE_HOST.fullmatch(host) or (port and not port.isdigit()):
        raise ValueError(f"{template!r}: {parts.netloc!r} is not a host[:port] (no user name; {{s}} only as the "
                         "host's first label)")
    found = set(re.findall(r"\{[^{}]*\}", template))
    if unknown := sorted(found - _TILE_PLACEHOLDERS):
        raise ValueError(f"{template!r}: unknown placeholder(s) {', '.join(unknown)}; a tile URL may hold {{z}}, "
                         "{x}, {y}, {s} and {r}")
    if lacking := [p for p in ("{z}", "{x}", "{y}") if p not in found]:
        raise ValueError(f"{template!r} lacks {', '.join(lacking)}; {example}")


def environment_help() -> str:
    """The environment variables, for --help."""
    lines = []
    for name, field in Settings.model_fields.items():
        lines.append(f"  CITYKPI_{name.upper():<24} {field.description}")
    return "environment:\n" + "\n".join(lines)


def load_settings() -> Settings:
    """Settings from the environment, or exit with every problem named by its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"CITYKPI_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"configuration error: {problems}") from None
