"""`citykpi simulate`: a fleet of every device kind, with failure modes, over MQTT or Kafka."""

import argparse
import csv
import multiprocessing
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from base.settings import load_settings
from base.vocabulary import DEFAULT_HEARTBEAT_INTERVAL_S
from simulators.vendor_formats import FORMATS


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 10m, 2h or 1d")
    return timedelta(seconds=float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])


def _instant(text: str) -> datetime:
    from base.time import parse_instant

    try:
        return parse_instant(text, load_settings().zone)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


Devices = list[tuple[str, str, int]]  # (device_id, kind, heartbeat interval in seconds)
Gateways = dict[str, str]  # device_id → the gateway that reports for it


def _devices_from_registry(path: Path) -> tuple[Devices, Gateways]:
    """A device's last row decides its interval and its gateway: the simulated fleet reports the way the
    registry says it does, so that ingest stores what a gateway sends."""
    devices_csv = path / "devices.csv" if path.is_dir() else path
    with devices_csv.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    seen: dict[str, tuple[str, str, int]] = {}
    gateways: Gateways = {}
    for row in rows:
        interval = int(row.get("heartbeat_interval_s") or DEFAULT_HEARTBEAT_INTERVAL_S[row["kind"]])
        seen[row["device_id"]] = (row["device_id"], row["kind"], interval)
        gateways.pop(row["device_id"], None)
        if row.get("gateway_id"):
            gateways[row["device_id"]] = row["gateway_id"]
    return list(seen.values()), gateways


def _synthetic(points_per_category: int, seed: int, write_to: Path | None,
               gateway_share: float) -> tuple[Devices, Gateways]:
    from simulators.province import generate_province, write_registry_files

    points, devices = generate_province(points_per_category, seed=seed, gateway_share=gateway_share)
    if write_to is not None:
        start = datetime.now(UTC).date() - timedelta(days=365)
        points_csv, devices_csv = write_registry_files(write_to, points, devices, valid_from=start)
        units_csv = points_csv.with_name("units.csv")
        print(f"registry files (import in this order): {units_csv}, {points_csv}, {devices_csv}", file=sys.stderr)
    return ([(d.device_id, d.kind, DEFAULT_HEARTBEAT_INTERVAL_S[d.kind]) for d in devices],
            {d.device_id: d.gateway_id for d in devices if d.gateway_id})


def _expected_messages(devices: list[tuple[str, str, int]], start: datetime, end: datetime) -> int:
    """Roughly one message per device per interval: enough for a progress bar's total."""
    seconds = (end - start).total_seconds()
    return int(sum(seconds / interval for _, _, interval in devices))


def _shares(args: argparse.Namespace):
    from simulators.faults import FaultShares

    return FaultShares.none() if args.no_faults else FaultShares.parse(args.faults)


def _worker(args: argparse.Namespace, devices: Devices, gateways: Gateways, index: int, start: datetime,
            end: datetime, show_progress: bool) -> tuple[int, float]:
    from base.brokers.kafka import KafkaSecurity
    from base.brokers.mqtt import MqttTls
    from base.terminal import Progress
    from simulators.run import backfill, build_fleet, live
    from simulators.transports import FilesTransport, KafkaTransport, MqttTransport

    settings = load_settings()
    speed = 1.0 if args.backfill else args.speed
    fleet = build_fleet(devices, _shares(args), start, end, seed=args.seed, speed=speed, gateways=gateways)
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    transport = (MqttTransport(settings.mqtt_url, client_id=f"citykpi-simulator-{index}",
                               username=settings.mqtt_username, password=password,
                               tls=MqttTls.from_settings(settings))
                 if args.transport == "mqtt" else
                 FilesTransport(args.dir, settings.zone) if args.transport == "files" else
                 KafkaTransport(settings.kafka_bootstrap, settings.kafka_topic,
                                security=KafkaSecurity.from_settings(settings)))
    if args.backfill:
        progress = Progress("Gửi dữ liệu quá khứ", _expected_messages(devices, start, end)) if show_progress else None
        report = backfill(fleet, transport, start, end, seed=args.seed, progress=progress, vendor=args.format)
    else:
        progress = Progress(f"Mô phỏng ×{args.speed:g}", int((end - start).total_seconds())) if show_progress else None
        report = live(fleet, transport, start, end, seed=args.seed, speed=speed, progress=progress,
                      vendor=args.format)
    if progress is not None:
        progress.finish()
    return report.messages, report.seconds


def _simulate(args: argparse.Namespace) -> int:
    if args.format != "native" and args.transport != "mqtt":
        print(f"citykpi simulate: --format {args.format} is published over MQTT only", file=sys.stderr)
        return 2
    if (args.transport == "files") != (args.dir is not None):
        print("citykpi simulate: --transport files writes station files into --dir DIR (and only it takes --dir)",
              file=sys.stderr)
        return 2
    if args.province:
        devices, gateways = _devices_from_registry(Path(args.province))
    else:
        devices, gateways = _synthetic(args.synthetic, args.seed,
                                       Path(args.write_registry) if args.write_registry else None,
                                       _shares(args).gateway_cameras)
    if args.backfill:
        start, end = args.backfill
        window = load_settings().lateness_window
        if start < datetime.now(UTC) - window:
            print(f"warning: heartbeats before {datetime.now(UTC) - window:%Y-%m-%d %H:%M} UTC are older than "
                  "the lateness window and will be dead-lettered as ts_too_old", file=sys.stderr)
    else:
        start = datetime.now(UTC)
        end = start + args.duration
    slices = [devices[i::args.processes] for i in range(args.processes)]
    if args.processes == 1:
        results = [_worker(args, devices, gateways, 0, start, end, True)]
    else:
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            results = pool.starmap(_worker, [(args, s, gateways, i, start, end, i == 0)
                                             for i, s in enumerate(slices)])
    messages = sum(r[0] for r in results)
    seconds = max(r[1] for r in results)
    print(f"{len(devices)} devices, {messages} messages in {seconds:.1f} s: {messages / max(seconds, 1e-9):,.0f} "
          f"messages/s over {args.transport} ({args.processes} process(es))")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate", help="drive a simulated fleet over MQTT or Kafka (CITYKPI_MQTT_URL / CITYKPI_KAFKA_BOOTSTRAP)")
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--province", help="a registry devices.csv, or a folder holding one")
    source.add_argument("--synthetic", type=int, metavar="N", help="a synthetic province, N key points per category")
    simulate.add_argument("--write-registry", metavar="DIR", help="with --synthetic: write points.csv and devices.csv")
    simulate.add_argument("--transport", choices=["mqtt", "kafka", "files"], default="mqtt",
                          help="files: the monitors' data files, as their loggers push them by FTP, into --dir")
    simulate.add_argument("--dir", help="with --transport files: the directory `citykpi ingest --source files` "
                          "watches (CITYKPI_FILES_DIR)")
    simulate.add_argument("--format", choices=FORMATS, default="native",
                          help="our heartbeat, or a vendor's message read through deploy/examples/mappings/ "
                          "(MQTT only; ingest needs --mappings with that file)")
    simulate.add_argument("--speed", type=float, default=1.0, help="devices beat this many times faster")
    simulate.add_argument("--duration", type=_duration, default=timedelta(minutes=10), help="e.g. 90s, 10m, 2h")
    simulate.add_argument("--backfill", nargs=2, type=_instant, metavar=("FROM", "TO"),
                          help="send history for [FROM, TO) at full speed instead of running live")
    simulate.add_argument("--faults", default="", help="fault shares over the defaults, e.g. outage=0.1,malformed=0")
    simulate.add_argument("--no-faults", action="store_true", help="every device healthy")
    simulate.add_argument("--seed", type=int, default=2268)
    simulate.add_argument("--processes", type=int, default=1, help="split the fleet over this many processes")
    simulate.set_defaults(func=_simulate)
