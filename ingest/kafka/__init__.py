"""The Kafka source (aiokafka): a consumer group, manual commits of contiguous stored offsets, commit on revoke."""

from ingest.kafka.source import KafkaSource

__all__ = ["KafkaSource"]
