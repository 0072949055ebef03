"""Ingest benchmark: citykpi's sustained rate and latency next to the ceilings of the parts it is built on.

    .venv/bin/python -m bench.ingest [--messages 50000] [--latency-seconds 10] [--paced-rate R] [--workers 2]

Starts its own PostgreSQL, Mosquitto and (when java and mvn exist) Kafka on loopback, like the tests, and
prints one Markdown table:

- ceiling, MQTT: a bare paho subscriber draining N QoS 1 messages queued in its persistent session;
- ceiling, PostgreSQL: one COPY of N pre-built rows into `heartbeats`;
- citykpi, MQTT / Kafka: `citykpi ingest` (a child process, default settings) draining a backlog of N
  heartbeats — decode, validate, stage, de-duplicate, commit, acknowledge — in heartbeats/s;
- latency: heartbeats published at half that rate (or at `--paced-rate`, to compare two versions at one
  load) for a while, each stamped with its publish time as `ts`;
  p50/p99 of `stored_at - ts`, where `stored_at` is set by `clock_timestamp()` at INSERT (the COMMIT
  follows in the same batch), so the figures are publish → row written, within a few ms of the commit; in
  brackets p50/p99 of `received_at - ts`, the part spent before the ingest process had the message;
- ingest CPU per heartbeat: user + system CPU time of the ingest process(es) while draining the backlog,
  divided by its size; unlike the rate, it barely moves when other work shares the machine;
- peak RSS of the ingest process (VmHWM), the larger of its backlog drain and its paced run;
- citykpi, MQTT, mapped: the same backlog published as ThingsBoard telemetry (`simulators/vendor_formats.py`)
  and read through a mapping (`ingest/mapping/`) of the same fields, kind fixed: what mapping costs beside
  the native contract, in the same run;
- with `--workers N` (N > 1, the default 2), the same again with N `citykpi ingest` processes sharing the
  work: an MQTT 5 shared subscription (`CITYKPI_MQTT_SHARED_GROUP`), one Kafka consumer group on a topic of
  2·N partitions. The rate is the group's: all heartbeats over first receipt to last row, whoever stored them.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from base.brokers.mqtt import parse_mqtt_url
from base.db import connect
from bench.cpu import CpuMeter
from citykpi.schema import migrate
from devstack.databases import create_database
from devstack.errors import ServiceUnavailable
from devstack.ingest_process import IngestProcess
from devstack.kafka import KafkaBroker
from devstack.mqtt_broker import LocalMqttBroker
from devstack.postgres import LocalPostgres
from ingest.collector import settle_for_streaming
from simulators.mqtt_publisher import MqttPublisher
from simulators.vendor_formats import thingsboard

# The bench's heartbeats as ThingsBoard telemetry carries them (cameras: the kind is fixed, as a VMS's topic
# would fix it, so that the registry plays no part and the row measures the mapping alone).
_BENCH_MAPPING = """
[[mapping]]
name = "bench-thingsboard"
mqtt = "tb/+/telemetry"
device_id = "topic[1]"
kind = "cctv"
ts = { path = "ts", format = "epoch_ms" }
checks.stream_ok = "values.online"
metrics_from = { path = "values", skip = ["online"] }
"""


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def _heartbeats(count: int, *, devices: int = 1000) -> list[dict]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [{"device_id": f"cam-{n % devices}", "kind": "cctv", "ts": (now - timedelta(seconds=n // devices,
                                                                                      milliseconds=n % 997)
                                                                         ).isoformat(),
             "checks": {"stream_ok": True}, "metrics": {"fps": 25, "bitrate_kbps": 2048.5}}
            for n in range(count)]


def _new_database(server_url: str) -> str:
    url = create_database(server_url, f"bench_{uuid.uuid4().hex[:8]}")
    with connect(url) as conn:
        migrate(conn)
        # Bench only: the row's write time rather than its transaction's start (see the module docstring).
        conn.execute("ALTER TABLE heartbeats ALTER COLUMN stored_at SET DEFAULT clock_timestamp()")
        conn.commit()
    return url


def _drain_rate(url: str) -> float:
    """Heartbeats per second from the first receipt to the last row written: the process's start-up and our
    polling interval are not counted."""
    with connect(url) as conn:
        row = conn.execute("SELECT count(*) AS n, extract(epoch FROM max(stored_at) - min(received_at)) AS span"
                           " FROM heartbeats").fetchone()
    return row["n"] / float(row["span"])


def _wait_stored(url: str, count: int, timeout_s: float, what: str) -> None:
    """Until `heartbeats` holds `count` rows. One connection, a count every quarter second, no parallel
    workers: an earlier version connected and counted every 50 ms, which cost PostgreSQL a large share of a
    core by the end of a 300 000-row drain, on the machine the ingest was measured on. The rates come from the
    rows' own timestamps, so the polling interval does not enter them."""
    with connect(url) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        _wait(lambda: conn.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"] >= count,
              timeout_s, what, 0.25)


# -- ceilings -------------------------------------------------------------------------------------------

def mqtt_ceiling(broker: LocalMqttBroker, heartbeats: list[dict]) -> dict:
    broker_url = broker.url
    address = parse_mqtt_url(broker_url)
    client_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    received = 0
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == len(heartbeats):
            done.set()

    def session() -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=False)
        client.on_message = on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_connect = lambda c, *_: c.subscribe("devices/+/heartbeat", qos=1)
        client.connect(address.host, address.port)
        client.loop_start()
        subscribed.wait(30)
        return client

    client = session()
    client.disconnect()
    client.loop_stop()
    publisher = MqttPublisher(broker_url, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    publisher.publish_all(heartbeats)
    publisher.close()
    started, meter, own_cpu = time.perf_counter(), CpuMeter({"broker": broker.pid}).start(), time.process_time()
    client = session()
    if not done.wait(600):
        raise SystemExit(f"bench: the bare subscriber got {received}/{len(heartbeats)}")
    elapsed = time.perf_counter() - started
    cpu = {"ours": time.process_time() - own_cpu, **meter.stop()}
    client.disconnect()
    client.loop_stop()
    return {"rate": len(heartbeats) / elapsed, "cpu_us": _per_heartbeat(cpu, len(heartbeats))}


def copy_ceiling(pg: LocalPostgres, heartbeats: list[dict]) -> dict:
    url = _new_database(pg.url)
    rows = [(hb["device_id"], datetime.fromisoformat(hb["ts"]), "cctv", True, "ok", None,
             json.dumps(hb["checks"]), json.dumps(hb["metrics"]), None, "bench", datetime.now(UTC))
            for hb in heartbeats]
    with connect(url) as conn:
        started, meter, own_cpu = time.perf_counter(), CpuMeter({"postgresql": pg.pid}).start(), time.process_time()
        with conn.cursor() as cur, cur.copy(
                "COPY heartbeats (device_id, ts, kind, healthy, status, seq, checks, metrics, measurements,"
                " source, received_at) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - started
        cpu = {"ours": time.process_time() - own_cpu, **meter.stop()}
    return {"rate": len(rows) / elapsed, "cpu_us": _per_heartbeat(cpu, len(rows))}


def _per_heartbeat(cpu_seconds: dict[str, float], count: int) -> dict[str, float]:
    return {name: seconds / count * 1e6 for name, seconds in cpu_seconds.items()}


# -- citykpi ------------------------------------------------------------------------------------------

class Workers:
    """`count` ingest processes with the same settings but their own MQTT client id; launched together, so
    that none has drained its share before the others are up."""

    def __init__(self, source: str, env: dict[str, str], workdir: Path, count: int) -> None:
        self.processes = [IngestProcess(source=source, env={**env, **_worker_env(env, n, count)},
                                        log_path=workdir / f"ingest-{source}-{uuid.uuid4().hex[:6]}.log", verbose=False)
                          for n in range(count)]

    def start(self) -> "Workers":
        for process in self.processes:
            process.launch()
        for process in self.processes:
            process.wait_ready(timeout_s=90)
        return self

    def cpu_seconds(self) -> float:
        return sum(process.cpu_seconds() for process in self.processes)

    def stop(self) -> float:
        """Stop every process; the largest peak RSS among them, in MiB."""
        for process in self.processes:
            process.stop()
        return max(process.peak_rss_kib for process in self.processes) / 1024


def _startup_cpu(group: Workers) -> float:
    """CPU the processes spend getting ready with nothing to do (imports, connections), taken off a measured
    run's total: a drain starts before a process reports ready, so its CPU is counted from launch."""
    group.start()
    spent = group.cpu_seconds()
    group.stop()
    return spent


def _worker_env(env: dict[str, str], n: int, count: int) -> dict[str, str]:
    if count == 1 or "CITYKPI_MQTT_CLIENT_ID" not in env:
        return {}
    return {"CITYKPI_MQTT_CLIENT_ID": f"{env['CITYKPI_MQTT_CLIENT_ID']}-{n}",
            "CITYKPI_MQTT_SHARED_GROUP": env["CITYKPI_MQTT_CLIENT_ID"]}


def _latencies(url: str) -> tuple[float, ...]:
    """p50, p99 of publish → stored, then of publish → receipt by the ingest process (the brokers' share), in ms."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts)) AS p99,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)) AS r50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)) AS r99"
            " FROM heartbeats").fetchone()
    return tuple(float(row[k]) * 1000 for k in ("p50", "p99", "r50", "r99"))


def _paced(rate: float, seconds: float, send: Callable[[dict], None]) -> int:
    """Send `rate` heartbeats per second for `seconds`, each with ts = its publish time (epoch ms)."""
    total = int(rate * seconds)
    started = time.perf_counter()
    for n in range(total):
        due = started + n / rate
        if (ahead := due - time.perf_counter()) > 0:
            time.sleep(ahead)
        send({"device_id": f"cam-{n % 1000}", "kind": "cctv", "ts": int(time.time() * 1000), "seq": n,
              "checks": {"stream_ok": True}})
    return total


def citykpi_mqtt(pg: LocalPostgres, broker: LocalMqttBroker, heartbeats: list[dict], latency_s: float,
                 workdir: Path, workers: int = 1, mapped: bool = False, paced_rate: float | None = None) -> dict:
    server_url = pg.url
    url = _new_database(server_url)
    env = {"CITYKPI_DATABASE_URL": url, "CITYKPI_MQTT_URL": broker.url,
           "CITYKPI_MQTT_PROTOCOL": "5" if broker.supports_mqtt5 else "3.1.1",
           "CITYKPI_MQTT_CLIENT_ID": f"bench-{uuid.uuid4().hex[:6]}"}
    if mapped:
        mappings = workdir / "bench-mappings.toml"
        mappings.write_text(_BENCH_MAPPING)
        env["CITYKPI_MAPPINGS"] = str(mappings)
    startup_cpu = _startup_cpu(Workers("mqtt", env, workdir, workers))  # also creates the sessions that hold
    publisher = MqttPublisher(broker.url, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")  # the backlog

    def send(heartbeat: dict) -> None:
        if mapped:
            publisher.publish_raw(*thingsboard(heartbeat["device_id"], heartbeat))
        else:
            publisher.publish_heartbeat(heartbeat)

    for heartbeat in heartbeats:
        send(heartbeat)
    publisher.close()
    meter = CpuMeter({"postgresql": pg.pid, "broker": broker.pid}).start()
    group = Workers("mqtt", env, workdir, workers).start()
    _wait_stored(url, len(heartbeats), 900, "the MQTT backlog stored")
    cpu_us = _per_heartbeat({"ours": group.cpu_seconds() - startup_cpu, **meter.stop()}, len(heartbeats))
    rate = _drain_rate(url)

    latency_url = _new_database(server_url)
    drain_rss_mib = group.stop()
    env["CITYKPI_DATABASE_URL"] = latency_url
    group = Workers("mqtt", env, workdir, workers).start()
    publisher = MqttPublisher(broker.url, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    paced_at = paced_rate or rate / 2
    sent = _paced(paced_at, latency_s, send)
    publisher.close()
    _wait_stored(latency_url, sent, 300, "the paced MQTT heartbeats stored")
    rss_mib = max(drain_rss_mib, group.stop())  # the backlog's drain, then the paced run
    p50, p99, r50, r99 = _latencies(latency_url)
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "paced": paced_at, "rss_mib": rss_mib, "cpu_us": cpu_us,
            "receipt_ms": (r50, r99), "processes": workers}


def citykpi_kafka(pg: LocalPostgres, kafka: KafkaBroker, heartbeats: list[dict], latency_s: float,
                  workdir: Path, workers: int = 1, paced_rate: float | None = None) -> dict:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create_topic(name: str) -> None:
        # Two partitions a worker: a consumer group spreads whole partitions, so N workers need N or more.
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, num_partitions=2 * workers, replication_factor=1)])
        finally:
            await admin.close()

    server_url, bootstrap = pg.url, kafka.bootstrap
    url = _new_database(server_url)
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    env = {"CITYKPI_DATABASE_URL": url, "CITYKPI_KAFKA_BOOTSTRAP": bootstrap, "CITYKPI_KAFKA_TOPIC": topic,
           "CITYKPI_KAFKA_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}"}

    async def produce(items: list[dict]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(topic, json.dumps(hb).encode(), key=hb["device_id"].encode())
                       for hb in items]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(create_topic(topic))
    startup_cpu = _startup_cpu(Workers("kafka", env, workdir, workers))
    asyncio.run(produce(heartbeats))
    meter = CpuMeter({"postgresql": pg.pid, "broker": kafka.pid}).start()
    group = Workers("kafka", env, workdir, workers).start()
    _wait_stored(url, len(heartbeats), 900, "the Kafka backlog stored")
    cpu_us = _per_heartbeat({"ours": group.cpu_seconds() - startup_cpu, **meter.stop()}, len(heartbeats))
    rate = _drain_rate(url)
    drain_rss_mib = group.stop()

    latency_url = _new_database(server_url)
    env["CITYKPI_DATABASE_URL"] = latency_url
    env["CITYKPI_KAFKA_GROUP_ID"] = f"bench-{uuid.uuid4().hex[:6]}"
    topic = env["CITYKPI_KAFKA_TOPIC"] = f"bench-{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(topic))  # the topic exists before the consumers look for it
    asyncio.run(produce(heartbeats[:1]))
    group = Workers("kafka", env, workdir, workers).start()
    paced_at = paced_rate or rate / 2

    async def paced() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
        await producer.start()
        pending = []
        try:
            loop = asyncio.get_running_loop()
            total, step = int(paced_at * latency_s), 1 / paced_at
            began = loop.time()
            for n in range(total):
                if (ahead := began + n * step - loop.time()) > 0:
                    await asyncio.sleep(ahead)
                hb = {"device_id": f"cam-{n % 1000}", "kind": "cctv", "ts": int(time.time() * 1000), "seq": n}
                pending.append(await producer.send(topic, json.dumps(hb).encode(), key=hb["device_id"].encode()))
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        return total

    sent = asyncio.run(paced())
    _wait_stored(latency_url, sent + 1, 300, "the paced Kafka heartbeats stored")
    rss_mib = max(drain_rss_mib, group.stop())  # the backlog's drain, then the paced run
    p50, p99, r50, r99 = _latencies(latency_url)
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "paced": paced_at, "rss_mib": rss_mib, "cpu_us": cpu_us,
            "receipt_ms": (r50, r99), "processes": workers}


_CPU_PARTS = ("ours", "postgresql", "broker")


def _cpu_cells(result: dict) -> tuple[str, str]:
    """The CPU a heartbeat cost each part ("–" where a part took none), and the rate that CPU allows: all of
    the machine's cores for the total, but at most one core a Python process for our part (one interpreter
    lock). The share of that bound the run reached says whether it was short of CPU or waiting."""
    cpu_us = result["cpu_us"]
    parts = " · ".join(f"{cpu_us[part]:.0f}" if part in cpu_us else "–" for part in _CPU_PARTS)
    total = sum(cpu_us.values())
    if not total or not cpu_us.get("ours"):
        return f"{parts} = {total:.0f}", ""
    bound = min((os.cpu_count() or 1) * 1e6 / total, result.get("processes", 1) * 1e6 / cpu_us["ours"])
    return f"{parts} = {total:.0f}", f"{bound:,.0f} ({result['rate'] / bound:.0%})"


def _ceiling_row(what: str, result: dict) -> tuple[str, ...]:
    return (what, f"{result['rate']:,.0f}", *_cpu_cells(result), "", "")


def _row(what: str, result: dict) -> tuple[str, ...]:
    return (what, f"{result['rate']:,.0f}", *_cpu_cells(result),
            f"{result['p50_ms']:.0f} / {result['p99_ms']:.0f} at {result['paced']:,.0f}/s "
            f"({result['receipt_ms'][0]:.0f} / {result['receipt_ms'][1]:.0f})", f"{result['rss_mib']:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50000, help="backlog size per throughput run")
    parser.add_argument("--latency-seconds", type=float, default=10, help="length of each paced latency run")
    parser.add_argument("--paced-rate", type=float, default=None,
                        help="heartbeats/s of the latency runs (default: half the rate just measured); a fixed rate "
                             "compares two versions at the same load")
    parser.add_argument("--sources", default="mqtt,mapped,kafka",
                        help="which of mqtt, mapped (MQTT through a mapping), kafka to measure (a quick look)")
    parser.add_argument("--workers", type=int, default=2,
                        help="also measure this many ingest processes sharing the work (1: one process only)")
    args = parser.parse_args(argv)
    heartbeats = _heartbeats(args.messages)
    # The ceilings run in this process: with citykpi ingest's collector setting, so that they measure the client,
    # not CPython's collector traversing this backlog again and again.
    settle_for_streaming()
    with tempfile.TemporaryDirectory(prefix="citykpi-bench-") as tmp:
        workdir = Path(tmp)
        kafka = None
        with LocalPostgres() as pg, LocalMqttBroker(workdir=workdir, max_inflight=10000) as broker:
            try:
                if "kafka" in args.sources:
                    kafka = KafkaBroker(workdir / "kafka").start()
            except ServiceUnavailable as exc:
                print(f"bench: Kafka unavailable, its row is skipped: {exc}", file=sys.stderr)
            try:
                rows = [_ceiling_row("ceiling: bare paho subscriber, QoS 1", mqtt_ceiling(broker, heartbeats)),
                        _ceiling_row("ceiling: bare COPY into heartbeats", copy_ceiling(pg, heartbeats))]
                for workers in sorted({1, args.workers}):
                    label = "" if workers == 1 else f", {workers} processes (shared subscription)"
                    if "mqtt" not in args.sources:
                        pass
                    elif workers == 1 or broker.supports_mqtt5:
                        mq = citykpi_mqtt(pg, broker, heartbeats, args.latency_seconds, workdir, workers,
                                          paced_rate=args.paced_rate)
                        rows.append(_row(f"citykpi ingest --source mqtt{label}", mq))
                        if "mapped" in args.sources and workers == 1:
                            mapped = citykpi_mqtt(pg, broker, heartbeats, args.latency_seconds, workdir, mapped=True,
                                                  paced_rate=args.paced_rate)
                            rows.append(_row("citykpi ingest --source mqtt, ThingsBoard telemetry through a "
                                             "mapping", mapped))
                    else:
                        print(f"bench: {broker.implementation} has no MQTT 5 shared subscriptions, skipped: {label}",
                              file=sys.stderr)
                    if kafka is not None:
                        label = "" if workers == 1 else f", {workers} processes (consumer group)"
                        kf = citykpi_kafka(pg, kafka, heartbeats, args.latency_seconds, workdir, workers,
                                           paced_rate=args.paced_rate)
                        rows.append(_row(f"citykpi ingest --source kafka{label}", kf))
            finally:
                if kafka is not None:
                    kafka.stop()
    print(f"\n{args.messages:,} heartbeats per throughput run; {os.cpu_count()} CPUs; "
          f"PostgreSQL from {pg.bindir}; {broker.implementation}\n")
    print("| what | heartbeats/s | CPU per heartbeat (µs): ours · PostgreSQL · broker "
          f"| what that CPU allows on {os.cpu_count()} cores (/s) (share reached) "
          "| p50 / p99 publish→stored (ms) (of it publish→receipt) | peak RSS per process (MiB) |")
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
