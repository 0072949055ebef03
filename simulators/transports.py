"""Where simulated messages go: an MQTT broker (one topic per device, QoS 1) or a Kafka topic (key = id)."""

import asyncio
import concurrent.futures
import threading
from typing import Protocol

from base.brokers.kafka import KafkaSecurity, connection_problem
from base.brokers.mqtt import MqttTls
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
