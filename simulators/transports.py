"""Where simulated messages go: an MQTT broker (one topic per device, QoS 1), a Kafka topic (key = id), or a
directory of monitoring-station files."""

import asyncio
import concurrent.futures
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from base.brokers.kafka import KafkaSecurity, connection_problem
from base.brokers.mqtt import MqttTls
from simulators.fleet import MONITOR_MEASUREMENTS
from simulators.mqtt_publisher import MqttPublisher
from simulators.stream import Outgoing


class Transport(Protocol):
    def send(self, message: Outgoing) -> None: ...
    def close(self) -> None:
        """Return once everything sent has been acknowledged by the broker."""


class MqttTransport:
    def __init__(self, url: str, *, client_id: str, username: str | None = None,
                 password: str | None = None, tls: MqttTls | None = None) -> None:
        self._publisher = MqttPublisher(url, client_id=client_id, username=username, password=password, tls=tls)

    def send(self, message: Outgoing) -> None:
        self._publisher.publish_raw(message.topic, message.body)

    def close(self) -> None:
        self._publisher.close()


class KafkaTransport:
    """aiokafka's producer on a private event loop, so that the simulator's loop stays synchronous."""

    def __init__(self, bootstrap: str, topic: str, *, max_pending: int = 10000,
                 security: KafkaSecurity | None = None) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaConnectionError

        security = security or KafkaSecurity()
        options = security.client_options()

        self.topic = topic
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-producer", daemon=True)
        self._thread.start()
        # Bounded: past this many unconfirmed sends, send() waits, so a slow broker slows the simulator.
        self._slots = threading.BoundedSemaphore(max_pending)
        self._errors: list[BaseException] = []
        self._pending: set[concurrent.futures.Future] = set()
        self._pending_lock = threading.Lock()

        async def start() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                        max_batch_size=256 * 1024, **options)
            try:
                await producer.start()
            except KafkaConnectionError as exc:
                await producer.stop()
                reason = await connection_problem(bootstrap, security) or str(exc)
                raise ConnectionError(f"Kafka producer cannot connect to {bootstrap}: {reason}") from exc
            return producer

        try:
            self._producer = asyncio.run_coroutine_threadsafe(start(), self._loop).result(60)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise

    def send(self, message: Outgoing) -> None:
        if self._errors:
            raise RuntimeError(f"Kafka send failed: {self._errors[0]}")
        self._slots.acquire()

        async def produce() -> None:
            try:
                delivery = await self._producer.send(self.topic, message.body, key=message.key.encode())
                await delivery
            except Exception as exc:  # recorded and raised on the next send
                self._errors.append(exc)
            finally:
                self._slots.release()

        future = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future) -> None:
        with self._pending_lock:  # called on the producer's thread
            self._pending.discard(future)

    def close(self) -> None:
        # Every send must be confirmed before the producer stops: stop() abandons sends still waiting on
        # metadata (a topic being auto-created), and those messages would be lost without a word.
        with self._pending_lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=120)
        asyncio.run_coroutine_threadsafe(self._producer.stop(), self._loop).result(120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if self._errors:
            raise RuntimeError(f"Kafka send failed: {self._errors[0]}")


class FilesTransport:
    """Station files in a directory, as the monitoring stations' data loggers push them to the receiving FTP
    server (ingest/files/station_file.py has the layout): one file a monitor's heartbeat, named by the device
    and the local measurement time, a line a parameter. Other kinds publish nothing this way and are counted
    in `skipped`. Each file appears whole (written aside, then renamed), as a well-behaved uploader does."""

    STATUS_CODES = {"ok": "00", "degraded": "01", "fault": "02"}

    def __init__(self, directory: str | os.PathLike, zone: ZoneInfo) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.zone = zone
        self.written = 0
        self.skipped = 0

    def send(self, message: Outgoing) -> None:
        try:
            heartbeat = json.loads(message.body)
        except ValueError:  # a malformed message of the fleet's faults: a file a logger garbled
            self._write(f"{message.key}_{datetime.now(self.zone):%Y%m%d%H%M%S}.txt", message.body.decode(
                "utf-8", "replace")[:200] + "\n")
            return
        if not isinstance(heartbeat, dict) or heartbeat.get("kind") not in MONITOR_MEASUREMENTS:
            self.skipped += 1
            return
        at = datetime.fromisoformat(heartbeat["ts"]).astimezone(self.zone)
        measured = heartbeat.get("measurements") or {}
        # A monitor that is not collecting still reports its parameters, every instrument calibrating.
        status = self.STATUS_CODES.get(heartbeat.get("status"), "02") if measured else "01"
        lines = [f"{name}\t{measured.get(name, 0.0)}\t-\t{at:%Y%m%d%H%M%S}\t{status}"
                 for name in MONITOR_MEASUREMENTS[heartbeat["kind"]]]
        self._write(f"{heartbeat['device_id']}_{at:%Y%m%d%H%M%S}.txt", "\r\n".join(lines) + "\r\n")

    def _write(self, name: str, text: str) -> None:
        partial = self.directory / f".{name}.part"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, self.directory / name)
        self.written += 1

    def close(self) -> None:
        """Files are whole once written."""
