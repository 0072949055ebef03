"""Configuration, read once at start-up from CITYKPI_* environment variables and validated."""

from datetime import timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVICE_KINDS = ("air_monitor", "water_monitor", "wastewater_station", "cctv", "wifi_ap", "bus_display")
# Used by live coverage for a binding without heartbeat_interval_s.
DEFAULT_HEARTBEAT_INTERVAL_S = {"air_monitor": 300, "water_monitor": 300, "wastewater_station": 300,
                                "cctv": 60, "wifi_ap": 60, "bus_display": 60}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITYKPI_", extra="forbid")

    database_url: SecretStr | None = Field(
        None, description="PostgreSQL/TimescaleDB URL, e.g. postgresql://citykpi:secret@db:5432/citykpi")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker, mqtt://host:port")
    mqtt_username: str | None = Field(None, description="MQTT user name")
    mqtt_password: SecretStr | None = Field(None, description="MQTT password")
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
    kafka_max_in_flight: int = Field(
        10000, ge=1, description="Kafka messages handed to the sink and not yet stored, at most")
    kafka_commit_interval_s: float = Field(
        1.0, gt=0, description="how often stored Kafka offsets are committed (also on revoke and at exit)")
    kafka_session_timeout_ms: int = Field(
        10000, ge=1000, description="Kafka group session timeout: how soon a dead member's partitions move")
    ingest_source: Literal["mqtt", "kafka", "both"] = Field(
        "mqtt", description="default of `citykpi ingest --source`")
    timezone: str = Field("Asia/Ho_Chi_Minh", description="the province's time zone: buckets and dates use it")
    lateness_window: timedelta = Field(
        timedelta(days=7), description="heartbeats older than this at receipt are rejected; KPIs final after it")
    future_tolerance: timedelta = Field(
        timedelta(minutes=5), description="heartbeats further ahead of the receive time are rejected")
    max_message_bytes: int = Field(65536, ge=1024, description="largest accepted heartbeat message")
    batch_max_rows: int = Field(5000, ge=1, description="rows per database transaction at most")
    batch_max_wait_s: float = Field(0.2, gt=0, description="longest a received message waits to be written")
    registry_bounds: str = Field(
        "6.0,24.0,102.0,118.0", description="lat_min,lat_max,lon_min,lon_max every key point must lie in "
        "(default: Vietnam with Hoàng Sa and Trường Sa)")
    batch_idle_s: float = Field(
        0.02, gt=0, description="a batch is written once no message arrived for this long (or at the limits above)")
    queue_max: int = Field(20000, ge=1, description="messages waiting between the sources and the sink, at most")
    retry_max_backoff_s: float = Field(
        10.0, gt=0, description="longest pause between retries of a database write that failed for now")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, longest time to write and acknowledge what was received")
    metrics_host: str = Field("0.0.0.0", description="address of the /metrics, /healthz, /readyz endpoint")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="port of /metrics, /healthz and /readyz; 0 turns them off")
    api_max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="largest request body the API accepts")
    heartbeat_interval_s: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_HEARTBEAT_INTERVAL_S),
        description="JSON {kind: seconds}, merged over the defaults: interval of a binding that names none")
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

    @field_validator("registry_bounds")
    @classmethod
    def _valid_bounds(cls, value: str) -> str:
        from registry.validation import Bounds

        Bounds.parse(value)
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


def environment_help() -> str:
    """The environment variables, for --help."""
    lines = []
    for name, field in Settings.model_fields.items():
        lines.append(f"  CITYKPI_{name.upper():<24} {field.description}")
    return "environment:\n" + "\n".join(lines)
