"""Peer benchmark: `citykpi ingest` against Telegraf draining the same backlog into the same PostgreSQL.

    .venv/bin/python -m bench.peer [--messages 200000] [--runs 3] [--paths mqtt,kafka1,kafka4] [--timescaledb]

Telegraf is what an IOC engineer would deploy instead (`inputs.mqtt_consumer` / `inputs.kafka_consumer` →
`outputs.postgresql`). It is built from the Go module proxy with only those plugins, once, into
~/.cache/citykpi-bench/ (never into the repository), when `go` is on the PATH; `CITYKPI_BENCH_TELEGRAF` names a
binary instead. Without either, the benchmark says so and stops: it is not part of CI.

Per path (MQTT QoS 1 persistent session; a Kafka topic of 1 and of 4 partitions) and per run, each side gets a
fresh database and a fresh backlog of the same N heartbeats, published before it starts; the sides alternate
(Telegraf, citykpi, Telegraf, …). What each does per message is in bench/README.md ("Peer"). Figures:

- rate: the rows after the first transaction over the time from its end to the last row written, each row
  stamped by `clock_timestamp()` (a column default both tables carry), the same way for both sides;
- CPU per heartbeat of each part: the consumer process (citykpi: less its idle start-up, as in
  bench/ingest.py), the PostgreSQL server, the broker;
- peak RSS of the consumer (VmHWM); rows stored, which must equal N.

Each run also measures the raw limits of the stages both sides go through (bench/ingest.py's bare paho
subscriber and bare COPY; a bare aiokafka consumer on each Kafka path, and the same on confluent-kafka when the
`bench` extra installed it), so that the ratio means something on a
noisy machine. The medians of the runs go into one Markdown table, each row's rate divided by Telegraf's on the
same path (bare COPY: on the first path).
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from base.db import connect
from bench.cpu import CpuMeter, tree_cpu_seconds
from bench.ingest import Workers, _heartbeats, _new_database, _startup_cpu, _wait, copy_ceiling, mqtt_ceiling
from devstack.databases import create_database
from devstack.errors import ServiceUnavailable
from devstack.kafka import KafkaBroker
from devstack.mqtt_broker import LocalMqttBroker
from devstack.postgres import LocalPostgres
from ingest.collector import settle_for_streaming
from simulators.mqtt_publisher import MqttPublisher

TELEGRAF_VERSION = "v1.37.2"
TELEGRAF_TAGS = "custom,inputs.mqtt_consumer,inputs.kafka_consumer,outputs.postgresql,parsers.json_v2,parsers.json"
CACHE = Path.home() / ".cache" / "citykpi-bench" / f"telegraf-{TELEGRAF_VERSION}"
PATHS = {"mqtt": ("MQTT QoS 1", 0), "kafka1": ("Kafka, 1 partition", 1), "kafka4": ("Kafka, 4 partitions", 4)}


def telegraf_binary() -> tuple[Path | None, str]:
    """The Telegraf to run, building it on first use; (None, why) when there is none."""
    if given := os.environ.get("CITYKPI_BENCH_TELEGRAF"):
        return (Path(given), "") if Path(given).is_file() else (None, f"CITYKPI_BENCH_TELEGRAF={given} is no file")
    return build_telegraf(TELEGRAF_TAGS, CACHE)


def build_telegraf(tags: str, cache: Path) -> tuple[Path | None, str]:
    """Telegraf with the plugins `tags` names, built once from the Go module proxy into `cache`, outside the
    repository; (None, why) when it cannot be."""
    binary = cache / "telegraf"
    if binary.is_file():
        return binary, ""
    go = shutil.which("go")
    if go is None:
        return None, "no Telegraf: `go` is not on the PATH to build it (or set CITYKPI_BENCH_TELEGRAF)"
    cache.mkdir(parents=True, exist_ok=True)
    print(f"bench: building Telegraf {TELEGRAF_VERSION} ({tags}) from the Go module proxy into {cache} (once; "
          "minutes) …", file=sys.stderr)
    built = subprocess.run([go, "install", "-tags", tags,
                            f"github.com/influxdata/telegraf/cmd/telegraf@{TELEGRAF_VERSION}"],
                           env={**os.environ, "GOBIN": str(cache)}, capture_output=True, text=True)
    if built.returncode != 0 or not binary.is_file():
        return None, f"building Telegraf failed: {built.stderr.strip()[-500:]}"
    return binary, ""


# -- Telegraf ------------------------------------------------------------------------------------------

# The heartbeat's fields as Telegraf's json_v2 parser reads them: the device and kind as tags, the health and
# metrics as fields, `ts` as the row's time.
_JSON_V2 = """
  data_format = "json_v2"
  [[{input}.json_v2]]
    measurement_name = "heartbeat"
    timestamp_path = "ts"
    timestamp_format = "2006-01-02T15:04:05Z07:00"
    [[{input}.json_v2.tag]]
      path = "device_id"
    [[{input}.json_v2.tag]]
      path = "kind"
    [[{input}.json_v2.field]]
      path = "checks.stream_ok"
      rename = "stream_ok"
      type = "bool"
    [[{input}.json_v2.field]]
      path = "metrics.fps"
      rename = "fps"
    [[{input}.json_v2.field]]
      path = "metrics.bitrate_kbps"
      rename = "bitrate_kbps"
"""


def _telegraf_config(path: str, *, database_url: str, broker: str, topic: str, client_id: str) -> str:
    if path == "mqtt":
        source = (f'[[inputs.mqtt_consumer]]\n  servers = ["{broker}"]\n  topics = ["{topic}"]\n  qos = 1\n'
                  f'  persistent_session = true\n  client_id = "{client_id}"\n  max_undelivered_messages = 10000\n'
                  + _JSON_V2.format(input="inputs.mqtt_consumer"))
    else:
        # Sarama speaks the 0.10.2 protocol unless told otherwise, and Kafka 4 refuses anything before 2.1.
        source = (f'[[inputs.kafka_consumer]]\n  brokers = ["{broker}"]\n  topics = ["{topic}"]\n'
                  f'  kafka_version = "3.0.0"\n  consumer_group = "{client_id}"\n  offset = "oldest"\n'
                  '  max_undelivered_messages = 10000\n'
                  + _JSON_V2.format(input="inputs.kafka_consumer"))
    return f"""[agent]
  interval = "1s"
  flush_interval = "100ms"
  metric_batch_size = 5000
  metric_buffer_limit = 1000000
  omit_hostname = true
  quiet = true

{source}
[[outputs.postgresql]]
  connection = "{database_url}"
  timestamp_column_type = "timestamp with time zone"
"""


def _telegraf_database(server_url: str, timescaledb: bool) -> str:
    """A database whose `heartbeat` table exists with the write-time column (Telegraf adds its own columns)."""
    url = create_database(server_url, f"peer_{uuid.uuid4().hex[:8]}")
    with connect(url) as conn:
        conn.execute("CREATE TABLE heartbeat (time timestamptz NOT NULL,"
                     " stored_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        if timescaledb:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT create_hypertable('heartbeat', 'time')")
        conn.commit()
    return url


class Telegraf:
    def __init__(self, binary: Path, config: str, workdir: Path) -> None:
        self.config_path = workdir / f"telegraf-{uuid.uuid4().hex[:6]}.conf"
        self.config_path.write_text(config)
        self.log_path = self.config_path.with_suffix(".log")
        self.binary = binary
        self.process: subprocess.Popen | None = None

    def start(self) -> "Telegraf":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(self.binary), "--config", str(self.config_path)],
                                            stdout=log, stderr=subprocess.STDOUT)
        return self

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return tree_cpu_seconds(self.process.pid)

    def peak_rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.returncode not in (0, -signal.SIGTERM):
            print(f"bench: Telegraf exited {self.process.returncode}; see {self.log_path}", file=sys.stderr)


# -- one drain -----------------------------------------------------------------------------------------

@dataclass
class Drain:
    rate: float
    cpu_us: dict[str, float]
    rss_mib: float
    stored: int


def _count(url: str, table: str, *, without_probe: bool = False) -> int:
    query = sql.SQL("SELECT count(*) AS n FROM {} WHERE {}").format(
        sql.Identifier(table), sql.SQL("device_id <> 'probe'" if without_probe else "true"))
    with connect(url) as conn:
        return conn.execute(query).fetchone()["n"]


def _rate(url: str, table: str) -> float:
    """Rows a second from the end of the first transaction that wrote rows to the end of the last: a side that
    buffers before its first write (Telegraf, 5 000 metrics or 100 ms) and one that does not are measured alike,
    over the same steady stretch. A transaction's rows share their `xmin`."""
    query = sql.SQL("""
        WITH first AS (SELECT xmin AS x, max(stored_at) AS done FROM {table} GROUP BY xmin
                       ORDER BY min(stored_at) LIMIT 1)
        SELECT count(*) FILTER (WHERE NOT t.xmin = first.x) AS n,
               extract(epoch FROM max(t.stored_at) - first.done) AS span
        FROM {table} t, first GROUP BY first.done""").format(table=sql.Identifier(table))
    with connect(url) as conn:
        row = conn.execute(query).fetchone()
    return row["n"] / max(float(row["span"]), 1e-6)


def _wait_rows(url: str, table: str, count: int, what: str) -> None:
    _wait(lambda: _table_exists(url, table) and _count(url, table) >= count, 900, what, 0.25)


def _table_exists(url: str, table: str) -> bool:
    with connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (table,)).fetchone()["e"]


def _publish_mqtt(broker_url: str, heartbeats: list[dict]) -> None:
    publisher = MqttPublisher(broker_url, client_id=f"peer-pub-{uuid.uuid4().hex[:6]}")
    publisher.publish_all(heartbeats)
    publisher.close()


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()
    asyncio.run(run())


def _produce(bootstrap: str, topic: str, heartbeats: list[dict]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(topic, json.dumps(hb).encode(), key=hb["device_id"].encode())
                       for hb in heartbeats]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    asyncio.run(run())


def telegraf_drain(binary: Path, path: str, pg: LocalPostgres, broker: LocalMqttBroker | KafkaBroker,
                   heartbeats: list[dict], workdir: Path, timescaledb: bool) -> Drain:
    url = _telegraf_database(pg.url, timescaledb)
    client_id = f"telegraf-peer-{uuid.uuid4().hex[:6]}"
    if path == "mqtt":
        assert isinstance(broker, LocalMqttBroker)
        address = broker.url.replace("mqtt://", "tcp://")
        config = _telegraf_config(path, database_url=url, broker=address, topic="devices/+/heartbeat",
                                  client_id=client_id)
        # The persistent session must exist before the backlog: a first run stores one probe heartbeat.
        first = Telegraf(binary, config, workdir).start()
        probe = _heartbeats(1)[0] | {"device_id": "probe"}
        _wait(lambda: _probe_stored(broker.url, probe, url), 120, "Telegraf's session (a probe stored)", 0.5)
        first.stop()
        _publish_mqtt(broker.url, heartbeats)
    else:
        assert isinstance(broker, KafkaBroker)
        topic = f"peer-{uuid.uuid4().hex[:6]}"
        _create_topic(broker.bootstrap, topic, PATHS[path][1])
        _produce(broker.bootstrap, topic, heartbeats)
        config = _telegraf_config(path, database_url=url, broker=broker.bootstrap, topic=topic, client_id=client_id)
    with connect(url) as conn:
        conn.execute("TRUNCATE heartbeat")
        conn.commit()
    meter = CpuMeter({"postgresql": pg.pid, "broker": broker.pid}).start()
    telegraf = Telegraf(binary, config, workdir).start()
    try:  # a drain that times out must not leave Telegraf running past the benchmark
        _wait_rows(url, "heartbeat", len(heartbeats), f"Telegraf's {len(heartbeats)} rows")
        cpu = {"consumer": telegraf.cpu_seconds(), **meter.stop()}
        rss = telegraf.peak_rss_mib()
    finally:
        telegraf.stop()
    # A probe published twice while the session was being made may still come through: not the backlog's.
    stored = _count(url, "heartbeat", without_probe=True)
    return Drain(_rate(url, "heartbeat"), _per_heartbeat(cpu, len(heartbeats)), rss, stored)


def _probe_stored(broker_url: str, probe: dict, url: str) -> bool:
    """Publish the probe (again, every half second until one is stored: the first may precede the subscription)."""
    _publish_mqtt(broker_url, [probe])
    return _table_exists(url, "heartbeat") and _count(url, "heartbeat") > 0


def citykpi_drain(path: str, pg: LocalPostgres, broker: LocalMqttBroker | KafkaBroker, heartbeats: list[dict],
                  workdir: Path, workers: int = 1) -> Drain:
    """`workers` processes share the backlog: an MQTT shared subscription, or one Kafka consumer group."""
    url = _new_database(pg.url)
    if path == "mqtt":
        assert isinstance(broker, LocalMqttBroker)
        env = {"CITYKPI_DATABASE_URL": url, "CITYKPI_MQTT_URL": broker.url,
               "CITYKPI_MQTT_PROTOCOL": "5" if broker.supports_mqtt5 else "3.1.1",
               "CITYKPI_MQTT_CLIENT_ID": f"peer-{uuid.uuid4().hex[:6]}"}
        startup_cpu = _startup_cpu(Workers("mqtt", env, workdir, workers))  # also creates the session
        _publish_mqtt(broker.url, heartbeats)
    else:
        assert isinstance(broker, KafkaBroker)
        topic = f"peer-{uuid.uuid4().hex[:6]}"
        env = {"CITYKPI_DATABASE_URL": url, "CITYKPI_KAFKA_BOOTSTRAP": broker.bootstrap,
               "CITYKPI_KAFKA_TOPIC": topic, "CITYKPI_KAFKA_GROUP_ID": f"peer-{uuid.uuid4().hex[:6]}"}
        _create_topic(broker.bootstrap, topic, PATHS[path][1])
        startup_cpu = _startup_cpu(Workers("kafka", env, workdir, workers))
        _produce(broker.bootstrap, topic, heartbeats)
    source = "mqtt" if path == "mqtt" else "kafka"
    meter = CpuMeter({"postgresql": pg.pid, "broker": broker.pid}).start()
    group = Workers(source, env, workdir, workers).start()
    _wait_rows(url, "heartbeats", len(heartbeats), f"citykpi's {len(heartbeats)} rows")
    cpu = {"consumer": group.cpu_seconds() - startup_cpu, **meter.stop()}
    rss = group.stop()
    return Drain(_rate(url, "heartbeats"), _per_heartbeat(cpu, len(heartbeats)), rss, _count(url, "heartbeats"))


def kafka_ceiling(broker: KafkaBroker, heartbeats: list[dict], partitions: int) -> Drain:
    """A bare aiokafka consumer, in this process: one consumer group reading the backlog in fetches of 2 000, as
    `citykpi ingest` does, touching each record's key and value and nothing more — what the Python Kafka client
    costs before anything is decoded, stored or committed."""
    from aiokafka import AIOKafkaConsumer

    topic = f"peer-bare-{uuid.uuid4().hex[:6]}"
    _create_topic(broker.bootstrap, topic, partitions)
    _produce(broker.bootstrap, topic, heartbeats)

    async def started() -> AIOKafkaConsumer:  # aiokafka makes its consumer inside a running loop
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                                    group_id=f"bare-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        return consumer

    loop = asyncio.new_event_loop()
    consumer = loop.run_until_complete(started())

    def fetch() -> list[int]:
        fetched = loop.run_until_complete(consumer.getmany(timeout_ms=200, max_records=2000))
        return [len(r.value or b"") + len(r.key or b"") for records in fetched.values() for r in records]

    try:
        return _bare_consume(fetch, len(heartbeats), broker, "the bare Kafka consumer")
    finally:
        loop.run_until_complete(consumer.stop())
        loop.close()


def librdkafka_ceiling(broker: KafkaBroker, heartbeats: list[dict], partitions: int) -> Drain | None:
    """The same bare consumer on confluent-kafka (librdkafka, C) instead of aiokafka: what the Kafka path could
    reach with another client, measured rather than guessed. None when confluent-kafka is not installed (it is
    in the `bench` extra only: citykpi itself uses aiokafka)."""
    try:
        from confluent_kafka import Consumer
    except ImportError:
        return None
    topic = f"peer-rd-{uuid.uuid4().hex[:6]}"
    _create_topic(broker.bootstrap, topic, partitions)
    _produce(broker.bootstrap, topic, heartbeats)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"rd-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])

    def fetch() -> list[int]:
        return [len(r.value() or b"") + len(r.key() or b"")
                for r in consumer.consume(num_messages=2000, timeout=0.2) if r.error() is None]

    try:
        # process_time counts librdkafka's own threads too: they are this process's.
        return _bare_consume(fetch, len(heartbeats), broker, "the bare librdkafka consumer")
    finally:
        consumer.close()


def _bare_consume(fetch: Callable[[], list[int]], total: int, broker: KafkaBroker, what: str) -> Drain:
    """Fetch until `total` records came (each fetch gives their sizes), measured from the end of the first fetch,
    as the sides are from their first batch."""
    deadline = time.monotonic() + 600
    first, received, touched = 0, 0, 0
    while received < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} got {received}/{total}")
        sizes = fetch()
        if sizes and not received:
            first, meter = len(sizes), CpuMeter({"broker": broker.pid}).start()
            own_cpu, started = time.process_time(), time.perf_counter()
        received += len(sizes)
        touched += sum(sizes)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - own_cpu
    broker_cpu = meter.stop()
    assert touched > 0
    return _bare_drain(total - first, elapsed, {"consumer": cpu, **broker_cpu})


def _bare_drain(counted: int, elapsed: float, cpu_seconds: dict[str, float]) -> Drain:
    """A bare consumer's figures, from the end of its first fetch: the records after it, over the time after it."""
    return Drain(counted / elapsed if elapsed > 0 else 0.0, _per_heartbeat(cpu_seconds, max(counted, 1)), 0.0,
                 counted)


def _per_heartbeat(cpu_seconds: dict[str, float], count: int) -> dict[str, float]:
    return {name: seconds / count * 1e6 for name, seconds in cpu_seconds.items()}


# -- the table -----------------------------------------------------------------------------------------

def _median_drain(drains: list[Drain]) -> Drain:
    parts = drains[0].cpu_us.keys()
    return Drain(statistics.median(d.rate for d in drains),
                 {p: statistics.median(d.cpu_us.get(p, 0.0) for d in drains) for p in parts},
                 max(d.rss_mib for d in drains), min(d.stored for d in drains))


def _cpu(drain: Drain) -> str:
    c = drain.cpu_us
    return " · ".join(f"{c[p]:.0f}" if p in c else "—" for p in ("consumer", "postgresql", "broker")) + \
        f" = {sum(c.values()):.0f}"


def _ceiling(result: dict, count: int) -> Drain:
    """bench.ingest's ceiling result as a drain: its own process is the consumer."""
    cpu = {("consumer" if part == "ours" else part): us for part, us in result["cpu_us"].items()}
    return Drain(result["rate"], cpu, 0.0, count)


# The raw limits of the stages every side goes through, measured in the same run, and the path whose Telegraf
# each is compared with (None: the first path's).
CEILINGS = {"mqtt": ("ceiling: bare paho subscriber, MQTT QoS 1", "mqtt"),
            "kafka1": ("ceiling: bare aiokafka consumer, Kafka, 1 partition", "kafka1"),
            "kafka4": ("ceiling: bare aiokafka consumer, Kafka, 4 partitions", "kafka4"),
            "kafka1-rd": ("bare librdkafka consumer (confluent-kafka), Kafka, 1 partition", "kafka1"),
            "kafka4-rd": ("bare librdkafka consumer (confluent-kafka), Kafka, 4 partitions", "kafka4"),
            "copy": ("ceiling: bare COPY into heartbeats", None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200000, help="backlog size of each drain")
    parser.add_argument("--runs", type=int, default=3, help="drains of each side per path, interleaved")
    parser.add_argument("--paths", default="mqtt,kafka1,kafka4", help="of mqtt, kafka1, kafka4")
    parser.add_argument("--timescaledb", action="store_true", help="on TimescaleDB (the extension must be installed)")
    parser.add_argument("--workers", type=int, default=1,
                        help="citykpi ingest processes sharing the backlog (MQTT shared subscription, Kafka group)")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    if unknown := [p for p in paths if p not in PATHS]:
        parser.error(f"unknown path(s) {unknown}; choose among {list(PATHS)}")
    binary, why = telegraf_binary()
    if binary is None:
        print(f"bench.peer: skipped: {why}", file=sys.stderr)
        return 0
    heartbeats = _heartbeats(args.messages)
    # The ceilings run in this process: with citykpi ingest's collector setting, so that they measure the client,
    # not CPython's collector traversing this backlog again and again.
    settle_for_streaming()
    results: dict[str, dict[str, list[Drain]]] = {p: {"telegraf": [], "citykpi": []} for p in paths}
    ceilings: dict[str, list[Drain]] = {what: [] for what in CEILINGS}
    with tempfile.TemporaryDirectory(prefix="citykpi-peer-") as tmp:
        workdir = Path(tmp)
        kafka = None
        with LocalPostgres(timescaledb=args.timescaledb) as pg, \
                LocalMqttBroker(workdir=workdir, max_inflight=10000) as mqtt_broker:
            try:
                if any(p.startswith("kafka") for p in paths):
                    kafka = KafkaBroker(workdir / "kafka").start()
            except ServiceUnavailable as exc:
                print(f"bench.peer: Kafka unavailable, its paths are skipped: {exc}", file=sys.stderr)
                paths = [p for p in paths if p == "mqtt"]
            try:
                for run in range(1, args.runs + 1):
                    if "mqtt" in paths:
                        ceilings["mqtt"].append(_ceiling(mqtt_ceiling(mqtt_broker, heartbeats), len(heartbeats)))
                    for path in paths:
                        if path.startswith("kafka") and kafka is not None:
                            ceilings[path].append(kafka_ceiling(kafka, heartbeats, PATHS[path][1]))
                            if (other := librdkafka_ceiling(kafka, heartbeats, PATHS[path][1])) is not None:
                                ceilings[f"{path}-rd"].append(other)
                    ceilings["copy"].append(_ceiling(copy_ceiling(pg, heartbeats), len(heartbeats)))
                    print(f"bench.peer: run {run}/{args.runs} ceilings: "
                          + ", ".join(f"{what} {c[-1].rate:,.0f}/s" for what, c in ceilings.items() if c),
                          file=sys.stderr)
                    for path in paths:
                        broker = mqtt_broker if path == "mqtt" else kafka
                        assert broker is not None
                        # Alternating which side goes first, so that neither always meets a warmer machine.
                        for side in ("telegraf", "citykpi") if run % 2 else ("citykpi", "telegraf"):
                            began = time.monotonic()
                            result = (telegraf_drain(binary, path, pg, broker, heartbeats, workdir, args.timescaledb)
                                      if side == "telegraf" else
                                      citykpi_drain(path, pg, broker, heartbeats, workdir, args.workers))
                            results[path][side].append(result)
                            print(f"bench.peer: run {run}/{args.runs} {PATHS[path][0]}: {side} {result.rate:,.0f}/s, "
                                  f"{_cpu(result)} µs, {result.stored}/{len(heartbeats)} stored "
                                  f"({time.monotonic() - began:.0f} s)", file=sys.stderr)
            finally:
                if kafka is not None:
                    kafka.stop()
    backend = "TimescaleDB" if args.timescaledb else "PostgreSQL"
    print(f"\n{args.messages:,} heartbeats a drain, {args.runs} runs a side, interleaved; medians; {os.cpu_count()} "
          f"CPUs; {backend} from {pg.bindir}; {mqtt_broker.implementation}; Telegraf {TELEGRAF_VERSION}\n")
    print("| row | heartbeats/s | ÷ Telegraf | CPU µs a heartbeat: consumer · PostgreSQL · broker = total "
          "| peak RSS MiB | rows stored |")
    print("|---|---:|---:|---|---:|---:|")
    for path in paths:
        t, c = _median_drain(results[path]["telegraf"]), _median_drain(results[path]["citykpi"])
        ours = "citykpi ingest" + (f", {args.workers} processes" if args.workers > 1 else "")
        for side, drain in (("Telegraf", t), (ours, c)):
            ratio = f"{drain.rate / t.rate:.2f}" if t.rate else "—"
            print(f"| {PATHS[path][0]}: {side} | {drain.rate:,.0f} | {ratio} | {_cpu(drain)} "
                  f"| {drain.rss_mib:.0f} | {drain.stored:,} of {len(heartbeats):,} |")
    for what, drains in ceilings.items():
        if drains:
            m = _median_drain(drains)
            compared = CEILINGS[what][1] or (paths[0] if paths else None)
            reference = _median_drain(results[compared]["telegraf"]).rate if compared else 0.0
            ratio = f"{m.rate / reference:.2f}" if reference else "—"
            print(f"| {CEILINGS[what][0]} | {m.rate:,.0f} | {ratio} | {_cpu(m)} | — | — |")
    if paths:
        print(f"\nEach ceiling ÷ Telegraf on its own path; bare COPY ÷ Telegraf on the first ({PATHS[paths[0]][0]}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
