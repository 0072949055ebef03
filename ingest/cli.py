"""`citykpi ingest`"""

import argparse

from citykpi.cli import load_settings
from citykpi.settings import environment_help


def _ingest(args: argparse.Namespace) -> int:
    from ingest.service import run_forever

    settings = load_settings()
    source = args.source or settings.ingest_source
    return run_forever(settings, ("mqtt", "kafka") if source == "both" else (source,))


def add_commands(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser(
        "ingest", help="consume heartbeats from MQTT and/or Kafka into the database until SIGTERM",
        description="Consume heartbeats into the database. SIGTERM (or Ctrl-C) stops taking messages, writes "
        "and acknowledges what was taken, commits Kafka offsets and exits 0. /metrics, /healthz and /readyz "
        "are served on CITYKPI_METRICS_PORT.",
        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ingest.add_argument("--source", choices=("mqtt", "kafka", "both"), default=None,
                        help="which brokers to consume (default: CITYKPI_INGEST_SOURCE, else mqtt)")
    ingest.set_defaults(func=_ingest)
