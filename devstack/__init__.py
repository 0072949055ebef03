"""Throwaway local services (PostgreSQL, MQTT broker, Kafka) for the demo and the tests."""
