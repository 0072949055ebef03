"""Which mapping reads a message: by MQTT topic filter (first match in file order) or by Kafka topic."""

from ingest.mapping.spec import Mapping, MappingError


class Routes:
    def __init__(self, mappings: list[Mapping], *, native_kafka_topic: str | None = None) -> None:
        self._mqtt = [(tuple(m.mqtt.split("/")), m) for m in mappings if m.mqtt is not None]
        self._kafka: dict[str, Mapping] = {}
        for mapping in mappings:
            if mapping.kafka is None:
                continue
            if mapping.kafka == native_kafka_topic:
                raise MappingError(f"mapping {mapping.name!r}: kafka topic {mapping.kafka!r} carries native "
                                   "heartbeats (CITYKPI_KAFKA_TOPIC)")
            if mapping.kafka in self._kafka:
                raise MappingError(f"mapping {mapping.name!r}: kafka topic {mapping.kafka!r} is already read by "
                                   f"mapping {self._kafka[mapping.kafka].name!r}")
            self._kafka[mapping.kafka] = mapping

    @property
    def mqtt_filters(self) -> list[str]:
        return list(dict.fromkeys("/".join(levels) for levels, _ in self._mqtt))

    @property
    def kafka_topics(self) -> list[str]:
        return list(self._kafka)

    def for_topic(self, levels: list[str] | tuple[str, ...]) -> Mapping | None:
        for pattern, mapping in self._mqtt:
            if _matches(pattern, levels):
                return mapping
        return None

    def for_kafka_topic(self, topic: str) -> Mapping | None:
        return self._kafka.get(topic)


def _matches(pattern: tuple[str, ...], levels: list[str] | tuple[str, ...]) -> bool:
    for index, want in enumerate(pattern):
        if want == "#":
            # MQTT: '#' also matches the parent level itself; no wildcard matches a '$' topic at the start.
            return not (index == 0 and levels[0].startswith("$"))
        if index >= len(levels):
            return False
        if want == "+":
            if index == 0 and levels[0].startswith("$"):
                return False
        elif want != levels[index]:
            return False
    return len(pattern) == len(levels)
