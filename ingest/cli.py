"""`citykpi ingest`, and `citykpi registry unknown-devices` (what ingest stored that the registry lacks)."""

import argparse
import sys

from base.settings import environment_help, load_settings


def _ingest(args: argparse.Namespace) -> int:
    from ingest.service import run_forever

    settings = load_settings()
    source = args.source or settings.ingest_source
    return run_forever(settings, ("mqtt", "kafka") if source == "both" else (source,))


def _unknown_devices(args: argparse.Namespace) -> int:
    from base.db import connect
    from ingest.unknown_devices import unknown_devices

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        rows = unknown_devices(conn)
    for r in rows:
        print(f"{r['device_id']}\t{r['kind']}\t{r['heartbeats']} heartbeats\tlast {r['last_ts'].isoformat()}")
    print(f"{len(rows)} unregistered device(s) sending heartbeats", file=sys.stderr)
    return 0


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


def add_registry_commands(registry: argparse._SubParsersAction) -> None:
    """Into `citykpi registry`, where operators look when registering devices."""
    registry.add_parser("unknown-devices", help="devices sending heartbeats that the registry lacks").set_defaults(
        func=_unknown_devices)
