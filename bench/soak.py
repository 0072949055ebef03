"""Soak: `citykpi ingest` under steady MQTT load for a bounded time, with one PostgreSQL restart in the middle.

    .venv/bin/python -m bench.soak --minutes 30 [--rate 3000] [--bad-percent 2] [--duplicate-percent 0.5]

Starts its own PostgreSQL and Mosquitto on loopback and runs `citykpi ingest` as a child process, as
bench/ingest.py does. Publishes heartbeats at `--rate` per second (default about half the measured MQTT
capacity): most good, `--bad-percent` malformed or invalid (not JSON, not UTF-8, no kind, a time far in the
future), `--duplicate-percent` re-sends of a good heartbeat already published. Halfway through, PostgreSQL is
stopped (fast shutdown) and started again. Every `--sample-seconds` it records published, stored and
dead-lettered counts, the stored rate, the ingest process's RSS, open PostgreSQL connections and Mosquitto's
stored-message count ($SYS, every 10 s). It stops by itself after `--minutes`, waits for the ingest to catch
up (bounded), and checks: stored == good published − duplicates, dead letters ≥ bad published. It prints a
table and writes `bench/results/soak-<minutes>min-<time>.csv` and `.png`; progress goes to stderr.
Exit status 1 when a check fails.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from base.brokers.mqtt import parse_mqtt_url
from base.db import connect
from bench.ingest import _new_database
from bench.soak_report import Sample, print_summary, write_csv, write_plot
from devstack.ingest_process import IngestProcess
from devstack.mqtt_broker import LocalMqttBroker
from devstack.postgres import LocalPostgres
from devstack.process import log_tail
from simulators.mqtt_publisher import MqttPublisher

DEVICES = 1000
BAD_REASONS = ("not_json", "not_utf8", "schema", "ts_future")
RESULTS = Path(__file__).parent / "results"


@dataclass
class Published:
    good: int = 0        # including the duplicates
    bad: int = 0
    duplicates: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total(self) -> int:
        return self.good + self.bad


def _good_message(n: int, device: str, ts_ms: int) -> bytes:
    return json.dumps({"device_id": device, "kind": "cctv", "ts": ts_ms, "seq": n, "checks": {"stream_ok": True},
                       "metrics": {"fps": 25}}).encode()


def _bad_message(n: int, device: str) -> bytes:
    """One of four rejections the ingest must dead-letter (BAD_REASONS, in turn)."""
    match n % 4:
        case 0:
            return b'{"device_id": "' + device.encode() + b'", "kind": "cctv", "ts": '
        case 1:
            return b"\xff\xfe not utf-8 \xc3"
        case 2:
            return json.dumps({"device_id": device, "ts": int(time.time() * 1000)}).encode()
        case _:
            return json.dumps({"device_id": device, "kind": "cctv", "ts": int(time.time() * 1000) + 86_400_000,
                               "checks": {"stream_ok": True}}).encode()


class Load(threading.Thread):
    """Publishes at `rate` per second until stopped, in 10 ms ticks (a sleep per message cannot keep 3000/s)."""

    def __init__(self, broker_url: str, rate: float, bad_percent: float, duplicate_percent: float,
                 seed: int = 2268) -> None:
        super().__init__(name="soak-load", daemon=True)
        # A deep window: with 100 unacknowledged messages a busy broker's round trip, not `rate`, set the pace.
        self.publisher = MqttPublisher(broker_url, client_id=f"soak-pub-{uuid.uuid4().hex[:6]}", max_inflight=1000)
        self.rate, self.bad, self.duplicate = rate, bad_percent / 100, duplicate_percent / 100
        self.random = random.Random(seed)
        self.counts = Published()
        self.stopping = threading.Event()
        self.last_good: dict[str, bytes] = {}
        self.last_ts: dict[str, int] = {}

    def run(self) -> None:
        started, sent = time.monotonic(), 0
        while not self.stopping.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while sent < due and not self.stopping.is_set():
                self._one(sent)
                sent += 1
            self.stopping.wait(0.01)

    def _one(self, n: int) -> None:
        device = f"cam-{n % DEVICES}"
        topic = f"devices/{device}/heartbeat"
        roll = self.random.random()
        if roll < self.bad:
            self.publisher.publish_raw(topic, _bad_message(n, device))
            with self.counts.lock:
                self.counts.bad += 1
            return
        if roll < self.bad + self.duplicate and device in self.last_good:
            self.publisher.publish_raw(topic, self.last_good[device])
            with self.counts.lock:
                self.counts.good += 1
                self.counts.duplicates += 1
            return
        # Strictly increasing per device: two heartbeats of one device in one millisecond would be one row.
        ts = max(int(time.time() * 1000), self.last_ts.get(device, 0) + 1)
        self.last_ts[device] = ts
        body = _good_message(n, device, ts)
        self.publisher.publish_raw(topic, body)
        self.last_good[device] = body
        with self.counts.lock:
            self.counts.good += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)
        self.publisher.close()  # returns once the broker has acknowledged every message


class BrokerStore:
    """Mosquitto's count of stored messages (queued for sessions and retained), from $SYS every 10 s."""

    TOPIC = "$SYS/broker/store/messages/count"

    def __init__(self, broker_url: str) -> None:
        address = parse_mqtt_url(broker_url)
        self.value: int | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"soak-sys-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *_: c.subscribe(self.TOPIC)
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            self.value = int(message.payload)
        except ValueError:
            pass

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _metrics(port: int) -> dict[str, float]:
    """Totals of the ingest's counters, summed over their labels."""
    totals: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return totals
    for line in text.splitlines():
        if line.startswith("citykpi_ingest_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            key = name.split("{", 1)[0]
            totals[key] = totals.get(key, 0.0) + float(value)
    return totals


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _connections(server_url: str, database: str) -> int | None:
    try:
        with connect(server_url) as conn:
            return conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s",
                                (database,)).fetchone()["n"]
    except Exception:  # noqa: BLE001 - while PostgreSQL restarts there is nothing to count
        return None


def _counts(url: str) -> tuple[int, int]:
    with connect(url) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM heartbeats) AS stored,"
                           " (SELECT count(*) FROM dead_letters) AS dead").fetchone()
    return row["stored"], row["dead"]


def _caught_up(url: str, expected: int, bad: int) -> bool:
    stored, dead = _counts(url)
    return stored >= expected and dead >= bad


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def soak(args: argparse.Namespace, workdir: Path) -> tuple[list[Sample], dict]:
    duration_s = args.minutes * 60
    with LocalPostgres() as pg, LocalMqttBroker(workdir=workdir) as broker:
        url = _new_database(pg.url)
        database = url.rsplit("/", 1)[1]
        env = {"CITYKPI_DATABASE_URL": url, "CITYKPI_MQTT_URL": broker.url,
               "CITYKPI_MQTT_PROTOCOL": "5" if broker.supports_mqtt5 else "3.1.1",
               "CITYKPI_MQTT_CLIENT_ID": f"soak-{uuid.uuid4().hex[:6]}"}
        ingest = IngestProcess(source="mqtt", env=env, log_path=workdir / f"ingest-mqtt-{uuid.uuid4().hex[:6]}.log",
                               verbose=False).start(timeout_s=90)
        store = BrokerStore(broker.url)
        load = Load(broker.url, args.rate, args.bad_percent, args.duplicate_percent)
        samples: list[Sample] = []
        restart: tuple[float, float] | None = None
        started = time.monotonic()
        load.start()
        previous = (0.0, 0.0, 0)
        try:
            while (elapsed := time.monotonic() - started) < duration_s:
                if restart is None and elapsed >= duration_s / 2:
                    _progress(f"soak: {elapsed:6.0f} s  restarting PostgreSQL")
                    pg.stop()
                    pg.start()
                    restart = (elapsed, time.monotonic() - started)
                    _progress(f"soak: {restart[1]:6.0f} s  PostgreSQL is back after {restart[1] - restart[0]:.1f} s")
                    elapsed = time.monotonic() - started
                previous = _record(samples, elapsed, load, ingest, store, pg.url, database, previous)
                next_at = started + len(samples) * args.sample_seconds
                time.sleep(max(0.0, min(next_at, started + duration_s) - time.monotonic()))
        finally:
            load.stop()
        published = load.counts
        expected = published.good - published.duplicates
        ended = time.monotonic() - started
        _progress(f"soak: published {published.total():,} ({published.bad:,} bad, {published.duplicates:,} "
                  f"duplicates); waiting for the ingest to store {expected:,}")
        # Bounded: a backlog the ingest cannot drain in time is reported by the checks, not waited on forever.
        deadline = time.monotonic() + (args.drain_timeout or max(300.0, duration_s))
        while not _caught_up(url, expected, published.bad) and time.monotonic() < deadline:
            time.sleep(args.sample_seconds)
            previous = _record(samples, time.monotonic() - started, load, ingest, store, pg.url, database, previous)
        if time.monotonic() - started - previous[0] >= 1:  # the end, unless the loop just sampled it
            previous = _record(samples, time.monotonic() - started, load, ingest, store, pg.url, database, previous)
        ingest.stop()
        store.close()
        stored, dead = _counts(url)
        summary = {"minutes": args.minutes, "rate": args.rate, "published": published.total(),
                   "good": published.good, "bad": published.bad, "duplicates": published.duplicates,
                   "expected_stored": expected, "stored": stored, "dead_lettered": dead,
                   "achieved_rate": published.total() / ended, "restart": restart, "ended": ended,
                   "peak_rss_mib": ingest.peak_rss_kib / 1024, "postgres": str(pg.bindir),
                   "broker": broker.implementation, "cpus": os.cpu_count()}
    return samples, summary


def _record(samples: list[Sample], elapsed: float, load: "Load", ingest: IngestProcess, store: "BrokerStore",
            server_url: str, database: str, previous: tuple[float, float, int]) -> tuple[float, float, int]:
    samples.append(sample := _sample(elapsed, load, ingest, store, server_url, database, previous))
    _progress(sample.progress())
    if ingest.process.poll() is not None:
        raise SystemExit(f"soak: ingest exited with {ingest.process.returncode}\n{log_tail(ingest.log_path)}")
    return elapsed, sample.stored, sample.published


def _sample(elapsed: float, load: Load, ingest: IngestProcess, store: BrokerStore, server_url: str,
            database: str, previous: tuple[float, float, int]) -> Sample:
    metrics = _metrics(ingest.port)
    with load.counts.lock:
        published, bad = load.counts.total(), load.counts.bad
    stored = metrics.get("citykpi_ingest_heartbeats_stored_total", 0.0)
    span = elapsed - previous[0]
    span = span if span >= 0.5 else 0.0  # the first sample comes right after the start: no rate yet
    return Sample(t_s=elapsed, published=published, bad=bad, stored=int(stored),
                  dead_lettered=int(metrics.get("citykpi_ingest_dead_letters_total", 0.0)),
                  stored_per_s=(stored - previous[1]) / span if span > 0 else 0.0,
                  published_per_s=(published - previous[2]) / span if span > 0 else 0.0,
                  rss_mib=_rss_mib(ingest.process.pid), pg_connections=_connections(server_url, database),
                  broker_stored=store.value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long to publish (default 30)")
    parser.add_argument("--rate", type=float, default=3000,
                        help="heartbeats per second (default 3000, about half the measured MQTT capacity)")
    parser.add_argument("--bad-percent", type=float, default=2, help="malformed or invalid messages, %% (2)")
    parser.add_argument("--duplicate-percent", type=float, default=0.5, help="re-sent good heartbeats, %% (0.5)")
    parser.add_argument("--sample-seconds", type=float, default=5, help="sampling interval (5)")
    parser.add_argument("--drain-timeout", type=float, default=None,
                        help="longest wait for the ingest to catch up after publishing (default: the run's length, "
                        "at least 300 s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the CSV and the PNG")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    with tempfile.TemporaryDirectory(prefix="citykpi-soak-") as tmp:
        samples, summary = soak(args, Path(tmp))
    stem = f"soak-{args.minutes:g}min-{datetime.now(UTC):%Y%m%dT%H%MZ}"
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(samples, args.out / f"{stem}.csv")
    png_path = write_plot(samples, summary, args.out / f"{stem}.png")
    ok = print_summary(samples, summary)
    print(f"\n{csv_path}\n{png_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
