"""The Kafka transport as the harness provides it; the consumer proper comes with the ingest pipeline."""

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.kafka


def test_heartbeats_produced_to_kafka_are_read_back_in_order(kafka_bootstrap: str) -> None:
    topic = f"heartbeats-{uuid.uuid4().hex[:8]}"
    sent = [{"device_id": "cam-1", "kind": "cctv", "ts": 1793530740000 + n * 60000, "seq": n} for n in range(20)]

    async def roundtrip() -> list[tuple[bytes, dict]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for hb in sent:
                await producer.send_and_wait(topic, json.dumps(hb).encode(), key=hb["device_id"].encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        received: list[tuple[bytes, dict]] = []
        try:
            async with asyncio.timeout(60):
                while len(received) < len(sent):
                    batch = await consumer.getmany(timeout_ms=1000)
                    for records in batch.values():
                        received += [(r.key, json.loads(r.value)) for r in records]
        finally:
            await consumer.stop()
        return received

    received = asyncio.run(roundtrip())
    assert [key for key, _ in received] == [b"cam-1"] * 20
    assert [hb["seq"] for _, hb in received] == list(range(20))  # one key, one partition, order kept
