"""Ingest telemetry, declared once. Units in the names, per Prometheus conventions.

Counters and histograms are updated where the event happens (one place each). Gauges that describe the
running pipeline — messages in flight, Kafka consumer lag — are read at scrape time from the components
that hold the state (`LIVE.watch`), instead of being kept up to date on every message.
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from threading import Lock

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MESSAGES_RECEIVED = Counter(
    "citykpi_ingest_messages_received_total", "Broker messages received", ["source"])
HEARTBEATS_STORED = Counter(
    "citykpi_ingest_heartbeats_stored_total", "Heartbeats newly stored", ["source"])
HEARTBEATS_DUPLICATE = Counter(
    "citykpi_ingest_heartbeats_duplicate_total", "Heartbeats already stored (same device_id and ts)", ["source"])
HEARTBEATS_UNKNOWN_DEVICE = Counter(
    "citykpi_ingest_heartbeats_unknown_device_total", "Stored heartbeats from devices not in the registry",
    ["source"])
DEAD_LETTERS = Counter(
    "citykpi_ingest_dead_letters_total", "Rejected messages or heartbeats, by reason", ["source", "reason"])
DEAD_LETTERS_SUPPRESSED = Counter(
    "citykpi_ingest_dead_letters_suppressed_total",
    "Rejections over a sender's dead-letter rate (CITYKPI_DEAD_LETTER_RATE_PER_MINUTE): counted, not stored",
    ["source", "reason"])
MAPPED_MESSAGES = Counter(
    "citykpi_ingest_mapped_messages_total",
    "Messages read through a mapping (CITYKPI_MAPPINGS), by mapping and outcome: every heartbeat made, some "
    "refused by the mapping or the contract (partly), none made (refused)", ["mapping", "outcome"])
AVAILABILITY_CHANGES = Counter(
    "citykpi_ingest_availability_changes_total",
    "Online/offline state changes from availability mappings: stored, or not stored because the device was "
    "already in that state then (a retained message redelivered) or the same change was stored before",
    ["source", "outcome"])
STATION_FILES = Counter(
    "citykpi_ingest_station_files_total",
    "Monitoring-station files taken from CITYKPI_FILES_DIR, by where they ended: done (every line read and "
    "stored or a duplicate), rejected (moved to rejected/ with its reasons; its good lines still stored)",
    ["outcome"])
PROBE_RESULTS = Counter(
    "citykpi_probe_results_total", "Probe runs by scheme and outcome: ok, timeout, refused, unexpected (an answer "
    "other than the one expected), error (name resolution, TLS, unreachable)", ["scheme", "outcome"])
PROBE_LATENCY_SECONDS = Histogram(
    "citykpi_probe_latency_seconds", "Time from a probe's start to its answer or failure", ["scheme"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PROBES_CONFIGURED = Gauge("citykpi_probes_configured", "Probes of the bindings in force, as last read")
PROBES_OVERDUE = Gauge(
    "citykpi_probes_overdue", "Probes waiting for a slot more than one interval after they were due")
BATCH_ROWS = Histogram(
    "citykpi_ingest_batch_rows", "Heartbeats per database transaction",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000))
BATCH_WRITE_SECONDS = Histogram(
    "citykpi_ingest_batch_write_seconds", "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DATABASE_ERRORS = Counter(
    "citykpi_ingest_database_errors_total",
    "Database errors while writing, by verdict and SQLSTATE class (retry:08, reject:22, fatal:42, …)",
    ["error_class"])
RECEIVE_TO_COMMIT_SECONDS = Histogram(
    "citykpi_ingest_receive_to_commit_seconds", "From a message's receipt to the commit of its rows",
    ["source"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
HEARTBEAT_AGE_AT_COMMIT_SECONDS = Histogram(
    "citykpi_ingest_heartbeat_age_at_commit_seconds",
    "End-to-end lag: commit time minus the heartbeat's own ts (device clock, network, broker backlog, us)",
    ["source"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800))
RECONNECTS = Counter(
    "citykpi_ingest_reconnects_total", "Broker connections re-established after a loss", ["source"])
KAFKA_COMMIT_FAILURES = Counter(
    "citykpi_ingest_kafka_commit_failures_total",
    "Kafka offset commits that failed (retried at the next interval; a rebalance may redeliver)", ["reason"])


@dataclass(frozen=True)
class LiveGauge:
    name: str
    documentation: str
    labelnames: tuple[str, ...]


IN_FLIGHT = LiveGauge(
    "citykpi_ingest_in_flight_messages",
    "Messages received and not yet acknowledged: waiting in the queue, or in the batch being written",
    ("stage",))
QUEUE_CAPACITY = LiveGauge(
    "citykpi_ingest_queue_capacity_messages", "Bound of the queue between the sources and the sink", ())
KAFKA_UNACKNOWLEDGED = LiveGauge(
    "citykpi_ingest_kafka_unacknowledged_messages",
    "Kafka messages handed to the sink and not yet committed to the database (bounded by kafka_max_in_flight)",
    ())
KAFKA_CONSUMER_LAG = LiveGauge(
    "citykpi_ingest_kafka_consumer_lag_messages",
    "Per partition: the log end offset minus the group's committed offset", ("topic", "partition"))

LIVE_GAUGES = (IN_FLIGHT, QUEUE_CAPACITY, KAFKA_UNACKNOWLEDGED, KAFKA_CONSUMER_LAG)

Sample = tuple[LiveGauge, tuple[str, ...], float]


class _LiveState(Collector):
    """Reads the watched components at scrape time; samples with the same labels are summed (two workers
    in one process report one in-flight figure)."""

    def __init__(self) -> None:
        self._providers: list[Callable[[], Iterable[Sample]]] = []
        self._lock = Lock()

    def watch(self, provider: Callable[[], Iterable[Sample]]) -> Callable[[], None]:
        """Start reporting `provider`'s samples; call the returned function to stop."""
        with self._lock:
            self._providers.append(provider)

        def unwatch() -> None:
            with self._lock:
                if provider in self._providers:
                    self._providers.remove(provider)
        return unwatch

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            providers = list(self._providers)
        values: dict[LiveGauge, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
        for provider in providers:
            for gauge, labels, value in provider():
                values[gauge][labels] += value
        # Every family is exposed, with or without samples yet, so that alerts and dashboards querying it
        # find a declared metric from the first scrape (the Kafka lag before any partition is assigned).
        for gauge in LIVE_GAUGES:
            family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labelnames)
            for labels, value in values.get(gauge, {}).items():
                family.add_metric(labels, value)
            yield family


LIVE = _LiveState()
REGISTRY.register(LIVE)


def observe_many(histogram: Histogram, amounts: list[float]) -> None:
    """`histogram.observe` of every amount, as one update a bucket rather than two locked ones a value.

    Reads prometheus_client's own bucket list; a client without it gets the plain loop.
    """
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: dict[int, int] = defaultdict(int)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1
    for index, count in counts.items():
        buckets[index].inc(count)
    total.inc(sum(amounts))
