"""`citykpi ingest`: wire the configured sources to the sink and run until told to stop."""

import logging
import signal
import threading

from citykpi.settings import Settings
from ingest.decode import Limits
from ingest.mqtt import MqttSource
from ingest.pipeline import IngestWorker
from ingest.sink import HeartbeatSink

log = logging.getLogger(__name__)


def limits_from(settings: Settings) -> Limits:
    return Limits(max_message_bytes=settings.max_message_bytes, future_tolerance=settings.future_tolerance,
                  lateness_window=settings.lateness_window)


def build_mqtt_source(settings: Settings) -> MqttSource:
    return MqttSource(
        settings.mqtt_url, client_id=settings.mqtt_client_id, topic_prefix=settings.mqtt_topic_prefix,
        protocol=settings.mqtt_protocol, receive_maximum=settings.mqtt_receive_maximum,
        username=settings.mqtt_username,
        password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)


class MqttIngest:
    """An MQTT source and a worker, started and stopped in the order that loses nothing."""

    def __init__(self, settings: Settings, database_url: str, **worker_options: object) -> None:
        self.stop_event = threading.Event()
        self.sink = HeartbeatSink(database_url, limits=limits_from(settings), stop_event=self.stop_event)
        self.worker = IngestWorker(self.sink, batch_max_rows=settings.batch_max_rows,
                                   batch_max_wait_s=settings.batch_max_wait_s, **worker_options)
        self.source = build_mqtt_source(settings)

    def start(self) -> None:
        self.worker.start()
        self.source.start(self.worker.queue)

    def stop(self) -> None:
        """Stop taking messages, write and acknowledge those already taken, then disconnect."""
        self.source.pause()
        self.worker.stop()
        self.source.close()


def run_forever(settings: Settings) -> int:
    ingest = MqttIngest(settings, settings.require_database_url())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ingest.start()
    log.info("ingesting from %s; SIGTERM or Ctrl-C drains and stops", settings.mqtt_url)
    while not stop.wait(1.0):
        if not ingest.worker.alive:
            break
    ingest.stop()
    totals = ingest.worker.totals
    log.info("stopped: %d messages, %d stored, %d duplicates, %d dead-lettered", totals.messages, totals.stored,
             totals.duplicates, totals.dead_lettered)
    return 1 if ingest.worker.failure else 0
