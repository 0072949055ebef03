"""`citykpi mappings check`: what an operator runs while writing a mapping file — the file compiled, and a sample
message turned into the heartbeats ingest would store, or the problems that would dead-letter it."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from ingest.decode import Limits, decode_availability, decode_mapped
from ingest.mapping.routes import Routes
from ingest.mapping.spec import Mapping, MappingError, load_mappings
from ingest.message import Accepted

# The sample's time is shown, not judged: the lateness window is a matter of when a message arrives.
ANY_TIME = Limits(future_tolerance=timedelta(days=3650), lateness_window=timedelta(days=36500))


def check_mappings(file: Path, *, sample: Path | None, topic: str | None, key: str | None, zone: ZoneInfo,
                   out: TextIO, err: TextIO) -> int:
    try:
        mappings = load_mappings(file)
        routes = Routes(mappings)
    except MappingError as exc:
        print(f"citykpi mappings check: {exc}", file=err)
        return 2
    if sample is None:
        for mapping in mappings:
            print(_summary(mapping), file=out)
        print(f"{file}: {len(mappings)} mapping(s), all compiled", file=err)
        return 0
    if topic is None:
        print("citykpi mappings check: --sample needs --topic (an MQTT topic, or kafka:TOPIC)", file=err)
        return 2
    kafka = topic.startswith("kafka:")
    mapping = routes.for_kafka_topic(topic[6:]) if kafka else routes.for_topic(topic.split("/"))
    if mapping is None:
        print(f"citykpi mappings check: no mapping of {file} reads {'Kafka topic' if kafka else 'MQTT topic'} "
              f"{topic.removeprefix('kafka:')!r}", file=err)
        return 1
    try:
        payload = sample.read_bytes()
    except OSError as exc:
        print(f"citykpi mappings check: {sample}: cannot be read ({exc.strerror or exc})", file=err)
        return 2
    levels = () if kafka else tuple(topic.split("/"))
    if mapping.availability is not None:
        return _check_availability(mapping, payload, levels, key, zone, sample, out, err)
    decoded = decode_mapped(payload, mapping, topic_levels=levels, key=key,
                            received_at=datetime.now(UTC), limits=ANY_TIME, zone=zone)
    for heartbeat in decoded.accepted:
        print(heartbeat_line(heartbeat), file=out)
    for rejection in decoded.rejected:
        print(f"{rejection.reason}: {rejection.detail}", file=err)
    print(f"{sample}: mapping {mapping.name!r}: {len(decoded.accepted)} heartbeat(s), "
          f"{len(decoded.rejected)} problem(s)", file=err)
    return 1 if decoded.rejected or not decoded.accepted else 0


def heartbeat_line(heartbeat: Accepted) -> str:
    """A heartbeat a check made, as one line of JSON."""
    return json.dumps({
        "device_id": heartbeat.device_id,
        "kind": heartbeat.kind.value if heartbeat.kind is not None else "(the registry's)",
        "ts": heartbeat.ts.isoformat(), "seq": heartbeat.seq, "status": heartbeat.status.value,
        "checks": heartbeat.checks, "metrics": heartbeat.metrics, "measurements": heartbeat.measurements,
        "healthy": heartbeat.healthy}, ensure_ascii=False)


def _check_availability(mapping: Mapping, payload: bytes, levels: tuple[str, ...], key: str | None, zone: ZoneInfo,
                        sample: Path, out: TextIO, err: TextIO) -> int:
    decoded = decode_availability(payload, mapping, topic_levels=levels, key=key, received_at=datetime.now(UTC),
                                  retained=False, limits=ANY_TIME, zone=zone)
    for change in decoded.availability:
        print(json.dumps({"device_id": change.device_id, "ts": change.ts.isoformat(),
                          "state": "online" if change.online else "offline"}), file=out)
    for rejection in decoded.rejected:
        print(f"{rejection.reason}: {rejection.detail}", file=err)
    print(f"{sample}: availability mapping {mapping.name!r}: {len(decoded.availability)} state change(s), "
          f"{len(decoded.rejected)} problem(s)", file=err)
    return 1 if decoded.rejected else 0


def _summary(mapping: Mapping) -> str:
    where = f"mqtt {mapping.mqtt}" if mapping.mqtt is not None else f"kafka {mapping.kafka}"
    if mapping.availability is not None:
        reads = "the payload's text" if mapping.availability.path is None else mapping.availability.path.text
        return f"{mapping.name}\t{where}\tavailability\t{reads}: online {list(mapping.availability.online)}, " \
               f"offline {list(mapping.availability.offline)}"
    kind = mapping.kind or "the registry's kind"
    parts = [f"{len(fields)} {name}" for name, fields in
             (("checks", mapping.checks), ("metrics", mapping.metrics), ("measurements", mapping.measurements))
             if fields]
    if mapping.readings is not None:
        parts.append("readings")
    parts += [f"{name} from {spread.path.text}" for name, spread in
              (("measurements", mapping.measurements_from), ("metrics", mapping.metrics_from)) if spread is not None]
    each = f", each of {mapping.each.text}" if mapping.each is not None else ""
    return f"{mapping.name}\t{where}\t{kind}{each}\t{', '.join(parts) or 'status only'}"
