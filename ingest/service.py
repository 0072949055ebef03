"""`citykpi ingest`: wire the configured sources to the sink and run until told to stop."""

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import psycopg

from base.brokers.kafka import KafkaSecurity
from base.brokers.mqtt import MqttTls, parse_mqtt_url
from base.db import connect
from base.settings import Settings
from ingest.collector import settle_for_streaming
from ingest.dead_letters import DeadLetterLimit, DeadLetterRetention
from ingest.decode import DecodeStage, Limits
from ingest.endpoint import OpsEndpoint
from ingest.files import FilesSource
from ingest.kafka import KafkaSource
from ingest.mapping.routes import Routes
from ingest.mapping.spec import load_mappings
from ingest.mqtt import MqttSource
from ingest.pipeline import IngestWorker
from ingest.probes import ProbeSource
from ingest.sink import HeartbeatSink

log = logging.getLogger(__name__)

SOURCES = ("mqtt", "kafka", "files", "probes")


def limits_from(settings: Settings) -> Limits:
    return Limits(max_message_bytes=settings.max_message_bytes, future_tolerance=settings.future_tolerance,
                  lateness_window=settings.lateness_window)


def load_routes(settings: Settings) -> Routes:
    """The mapping file of CITYKPI_MAPPINGS (or --mappings), compiled once; no routes without one."""
    if settings.mappings is None:
        return Routes([], native_kafka_topic=settings.kafka_topic)
    return Routes(load_mappings(settings.mappings),
                  native_kafka_topic=settings.kafka_topic)


def build_mqtt_source(settings: Settings, routes: Routes | None = None) -> MqttSource:
    return MqttSource(
        settings.mqtt_url, client_id=settings.mqtt_client_id, topic_prefix=settings.mqtt_topic_prefix,
        protocol=settings.mqtt_protocol, receive_maximum=settings.mqtt_receive_maximum,
        shared_group=settings.mqtt_shared_group, tls=MqttTls.from_settings(settings), routes=routes,
        username=settings.mqtt_username,
        password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)


def build_kafka_source(settings: Settings, *, clock: Callable[[], datetime] | None = None,
                       routes: Routes | None = None) -> KafkaSource:
    return KafkaSource(
        settings.kafka_bootstrap, topic=settings.kafka_topic, group_id=settings.kafka_group_id,
        max_in_flight=settings.kafka_max_in_flight, commit_interval_s=settings.kafka_commit_interval_s,
        session_timeout_ms=settings.kafka_session_timeout_ms, security=KafkaSecurity.from_settings(settings),
        clock=clock or (lambda: datetime.now(UTC)), routes=routes)


class Ingest:
    """Sources, the decode stage and one worker, started and stopped in the order that loses nothing: the
    worker starts before the sources feed it; at stop the sources stop taking messages, the worker writes and
    acknowledges what they took, and only then do the sources commit and disconnect."""

    def __init__(self, settings: Settings, database_url: str, *, sources: Sequence[str] = ("mqtt",),
                 clock: Callable[[], datetime] | None = None, **worker_options: object) -> None:
        unknown = set(sources) - set(SOURCES)
        if unknown or not sources:
            raise ValueError(f"sources must be among {SOURCES}, got {list(sources)}")
        self.database_url = database_url
        self.stop_event = threading.Event()
        self._stopped = False
        self.decode = DecodeStage(limits_from(settings), settings.zone)
        routes = load_routes(settings)
        self.sink = HeartbeatSink(database_url, stop_event=self.stop_event, max_backoff_s=settings.retry_max_backoff_s,
                                  dead_letter_limit=DeadLetterLimit(settings.dead_letter_rate_per_minute),
                                  max_raw_bytes=settings.dead_letter_max_raw_bytes)
        self.retention = DeadLetterRetention(database_url, settings.dead_letter_retention)
        worker_options.setdefault("queue_max", settings.queue_max)
        worker_options.setdefault("queue_max_bytes", settings.queue_max_bytes)
        self.worker = IngestWorker(self.sink, batch_max_rows=settings.batch_max_rows,
                                   batch_max_wait_s=settings.batch_max_wait_s, batch_idle_s=settings.batch_idle_s,
                                   **worker_options)
        self.sources: list[MqttSource | KafkaSource | FilesSource | ProbeSource] = []
        if "mqtt" in sources:
            source = build_mqtt_source(settings, routes)
            if clock is not None:
                source.clock = clock
            self.sources.append(source)
        if "kafka" in sources:
            self.sources.append(build_kafka_source(settings, clock=clock, routes=routes))
        if "files" in sources:
            if settings.files_dir is None:
                raise ValueError("the files source needs CITYKPI_FILES_DIR, the directory station files arrive in")
            self.sources.append(FilesSource(settings.files_dir, database_url, poll_s=settings.files_poll_s,
                                            settle_s=settings.files_settle_s,
                                            status_codes=settings.station_status_codes, clock=clock))
        if "probes" in sources:
            self.sources.append(ProbeSource(database_url, concurrency=settings.probe_concurrency,
                                            timeout_s=settings.probe_timeout_s, reload_s=settings.probe_reload_s,
                                            clock=clock))

    def start(self) -> None:
        self.worker.start()
        self.retention.start()
        for source in self.sources:
            source.start(self.worker.queue, self.decode)

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop taking messages, write and acknowledge those already taken (for at most `timeout_s`), then
        commit and disconnect. True when everything taken was stored and acknowledged."""
        self._stopped = True
        for source in self.sources:
            source.pause()
        drained = self.worker.stop(timeout_s)
        for source in self.sources:
            source.close()
        self.retention.stop()
        return drained

    def failures(self) -> list[str]:
        """What stopped for good: the process should exit so that its supervisor restarts it."""
        problems = []
        if self.worker.failure is not None:
            problems.append(f"sink: {self.worker.failure.__class__.__name__}: {self.worker.failure}")
        elif not self.worker.alive and not self._stopped:
            problems.append("sink: worker thread not running")
        for source in self.sources:
            failure = getattr(source, "failure", None)
            if failure is not None:
                problems.append(f"{source.name}: {failure.__class__.__name__}: {failure}")
        return problems

    def not_ready(self) -> list[str]:
        """Why this process should not count as serving: a broker or the database is out of reach."""
        problems = self.failures()
        for source in self.sources:
            if not source.connected.is_set():
                why = f" ({source.last_error})" if source.last_error else ""
                problems.append(f"{source.name}: not connected to the broker{why}")
        if not self.sink.database_ok:
            problems.append("database: the last write failed; retrying")
        elif (reason := _database_unreachable(self.database_url)) is not None:
            problems.append(f"database: {reason}")
        return problems


class MqttIngest(Ingest):
    """The MQTT source alone (the demo's and the original tests' wiring); `source` is that source."""

    def __init__(self, settings: Settings, database_url: str, **options: object) -> None:
        super().__init__(settings, database_url, sources=("mqtt",), **options)
        self.source: MqttSource = self.sources[0]


class KafkaIngest(Ingest):
    """The Kafka source alone; `source` is that source."""

    def __init__(self, settings: Settings, database_url: str, **options: object) -> None:
        super().__init__(settings, database_url, sources=("kafka",), **options)
        self.source: KafkaSource = self.sources[0]


def _database_unreachable(url: str) -> str | None:
    try:
        with connect(url, autocommit=True, connect_timeout_s=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return None


def _describe_sources(settings: Settings, sources: Sequence[str]) -> str:
    where = []
    if "mqtt" in sources:
        address = parse_mqtt_url(settings.mqtt_url)
        where.append(f"MQTT {address.host}:{address.port}" + (" over TLS" if address.tls else ""))
    if "kafka" in sources:
        where.append(f"Kafka {settings.kafka_bootstrap} ({KafkaSecurity.from_settings(settings).describe()}) "
                     f"topic {settings.kafka_topic} group {settings.kafka_group_id}")
    if "files" in sources:
        where.append(f"station files in {settings.files_dir}")
    if "probes" in sources:
        where.append(f"the registry's probes ({settings.probe_concurrency} at once, {settings.probe_timeout_s:g} s "
                     "timeout)")
    return " and ".join(where)


def run_forever(settings: Settings, sources: Sequence[str] = ("mqtt",)) -> int:
    """Ingest until SIGTERM/SIGINT; then drain (at most `shutdown_timeout_s`), commit, acknowledge, exit.

    Exit status 0 when everything received was stored and acknowledged, 1 when something was left for the
    brokers to redeliver (the database stayed down through the drain) or a component failed for good.
    """
    ingest = Ingest(settings, settings.require_database_url(), sources=sources)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    endpoint = None
    if settings.metrics_port:
        endpoint = OpsEndpoint(settings.metrics_host, settings.metrics_port,
                               live=ingest.failures, ready=ingest.not_ready).start()
    settle_for_streaming()
    ingest.start()
    log.info("ingesting from %s; /metrics on port %s; SIGTERM or Ctrl-C drains and stops",
             _describe_sources(settings, sources), endpoint.port if endpoint else "(off)")
    failures: list[str] = []
    while not stop.wait(0.5):
        if failures := ingest.failures():
            break
    drained = ingest.stop(settings.shutdown_timeout_s)
    failures = failures or ingest.failures()
    if endpoint is not None:
        endpoint.close()
    totals = ingest.worker.totals
    summary = (f"{totals.messages} messages, {totals.stored} stored, {totals.duplicates} duplicates, "
               f"{totals.dead_lettered} dead-lettered")
    if failures or not drained:
        print(f"citykpi ingest: stopped with problems after {summary}; what was not acknowledged will be "
              "redelivered by the brokers:\n  " + "\n  ".join(failures or ["drain did not finish in time"]),
              file=sys.stderr)
        return 1
    print(f"citykpi ingest: stopped cleanly after {summary}", file=sys.stderr)
    return 0
