"""Producing to and inspecting Kafka from the tests, synchronously (each call runs its own event loop)."""

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from ingest.service import KafkaIngest
from tests.helpers import wait_for


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Send (key, value) pairs and wait for every one to be acknowledged by the broker (acks=all);
    returns each record's (partition, offset)."""

    async def run() -> list[tuple[int, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            sent = [await future for future in futures]
        finally:
            await producer.stop()
        return [(meta.partition, meta.offset) for meta in sent]

    return asyncio.run(run())


def group_offsets(bootstrap: str, topic: str, group_id: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions never committed are absent)."""

    async def run() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group_id)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}

    return asyncio.run(run())


def end_offsets(bootstrap: str, topic: str, partitions: int = 3) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer

    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        finally:
            await consumer.stop()
        return {tp.partition: offset for tp, offset in ends.items()}

    return asyncio.run(run())


# Kafka's protocol codes (org.apache.kafka.common.acl / resource): what `kafka-acls.sh` sends.
RESOURCE = {"topic": 2, "group": 3}
OPERATION = {"read": 3, "write": 4, "create": 5, "describe": 8}
LITERAL, ALLOW = 3, 3


def allow(bootstrap: str, admin_password: str, grants: list[tuple[str, str, str, str]]) -> None:
    """Create ALLOW ACLs (principal, operation, resource type, resource name) as the broker's `admin`, as
    `kafka-acls.sh --add --allow-principal … --operation … --topic|--group …` does."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.admin import CreateAclsRequest

    host, _, port = bootstrap.rpartition(":")

    async def run() -> None:
        conn = await create_conn(host, int(port), security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                 sasl_plain_username="admin", sasl_plain_password=admin_password)
        try:
            for principal, operation, resource, name in grants:
                response = await conn.send(CreateAclsRequest(RESOURCE[resource], name, LITERAL, principal, "*",
                                                             OPERATION[operation], ALLOW))
                errors = [(code, text) for code, text in response.creation_responses if code != 0]
                assert not errors, f"creating the ACL {principal} {operation} {resource} {name}: {errors}"
        finally:
            conn.close()

    asyncio.run(run())


def refusal_reported(ingest: KafkaIngest, what: str) -> list[str]:
    """Start `ingest` against a broker that refuses it and, once its source has said why (within a deadline,
    not lost in aiokafka's retries), return what /readyz answers. The caller stops it."""
    ingest.start()
    wait_for(lambda: ingest.source.last_error is not None, timeout_s=30, what=what)
    assert ingest.source.alive and not ingest.source.connected.is_set()
    return ingest.not_ready()
