"""`citykpi ingest`, and `citykpi registry unknown-devices` (what ingest stored that the registry lacks)."""

import argparse
import sys
from pathlib import Path

from base.settings import environment_help, load_settings


def _ingest(args: argparse.Namespace) -> int:
    from ingest.mapping.spec import MappingError, load_mappings
    from ingest.service import run_forever

    settings = load_settings()
    if args.mappings is not None:
        settings = settings.model_copy(update={"mappings": args.mappings})
    if settings.mappings is not None:
        try:  # checked before any connection: a mistake in the file is the operator's to fix, not to retry
            load_mappings(settings.mappings)
        except MappingError as exc:
            print(f"citykpi ingest: {exc}", file=sys.stderr)
            return 2
    source = args.source or settings.ingest_source
    if source == "files" and settings.files_dir is None:
        print("citykpi ingest: --source files needs CITYKPI_FILES_DIR, the directory station files arrive in",
              file=sys.stderr)
        return 2
    return run_forever(settings, ("mqtt", "kafka") if source == "both" else (source,))


def _probe(_args: argparse.Namespace) -> int:
    from ingest.service import run_forever

    return run_forever(load_settings(), ("probes",))


def _check_mappings(args: argparse.Namespace) -> int:
    from ingest.mapping.check import check_mappings

    return check_mappings(args.file, sample=args.sample, topic=args.topic, key=args.key,
                          zone=load_settings().zone, out=sys.stdout, err=sys.stderr)


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
    ingest.add_argument("--source", choices=("mqtt", "kafka", "both", "files", "probes"), default=None,
                        help="which brokers to consume, or `files`: monitoring-station files dropped in "
                        "CITYKPI_FILES_DIR (default: CITYKPI_INGEST_SOURCE, else mqtt)")
    ingest.add_argument("--mappings", type=Path, default=None, metavar="FILE",
                        help="mapping file of vendor messages (default: CITYKPI_MAPPINGS); see "
                        "`citykpi mappings check`")
    ingest.set_defaults(func=_ingest)
    probe = commands.add_parser(
        "probe", help="probe the devices that publish nothing (the registry's `probe` column) until SIGTERM",
        description="Runs the probes of the bindings in force (tcp://, http(s)://, rtsp://, icmp://, snmp://; "
        "README, 'Devices that publish nothing') on each binding's heartbeat interval and stores every answer as "
        "a heartbeat with source 'probe'. Re-reads the registry every CITYKPI_PROBE_RELOAD_S. The same as "
        "`citykpi ingest --source probes`.", epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    probe.set_defaults(func=_probe)
    mappings = commands.add_parser("mappings", help="check a mapping file of vendor messages").add_subparsers(
        dest="mappings_command", required=True)
    check = mappings.add_parser(
        "check", help="compile a mapping file; with --sample, print the heartbeats a sample message becomes",
        description="Compiles FILE and lists its mappings. With --sample, reads the sample message as if it had "
        "arrived on --topic (an MQTT topic, or kafka:TOPIC) and prints each heartbeat it becomes (JSON, one a "
        "line), or every problem with its mapping and path; exit 1 when a heartbeat is refused.")
    check.add_argument("file", type=Path)
    check.add_argument("--sample", type=Path, help="a message body, as the device sends it")
    check.add_argument("--topic", help="the MQTT topic it arrives on, or kafka:TOPIC")
    check.add_argument("--key", help="the Kafka record key, for kafka:TOPIC")
    check.set_defaults(func=_check_mappings)
    stations = commands.add_parser("stations", help="check monitoring-station files").add_subparsers(
        dest="stations_command", required=True)
    station_check = stations.add_parser(
        "check", help="print the heartbeats station files become, or every problem with them",
        description="Reads each FILE as `citykpi ingest --source files` would (the layout in README, "
        "'Monitoring-station files'; status codes from CITYKPI_STATION_STATUS_CODES) and prints each heartbeat "
        "(JSON, one a line), or every problem naming the file and line; exit 1 when a file has a problem. The "
        "registry is not consulted: the station code must also be a device id in devices.csv.")
    station_check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    station_check.set_defaults(func=_check_stations)


def _check_stations(args: argparse.Namespace) -> int:
    from ingest.files.check import check_station_files

    settings = load_settings()
    return check_station_files(args.files, status_codes=settings.station_status_codes, zone=settings.zone,
                               out=sys.stdout, err=sys.stderr)


def add_registry_commands(registry: argparse._SubParsersAction) -> None:
    """Into `citykpi registry`, where operators look when registering devices."""
    registry.add_parser("unknown-devices", help="devices sending heartbeats that the registry lacks").set_defaults(
        func=_unknown_devices)
