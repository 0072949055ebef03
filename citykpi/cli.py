"""The one command line: `citykpi db|registry|ingest|kpi|demo …`."""

import argparse
import json
import logging
import sys
from datetime import date, datetime
from pathlib import Path

from pydantic import ValidationError

from citykpi.settings import Settings, environment_help


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"CITYKPI_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"configuration error: {problems}") from None


def _local_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _effective(text: str | None, settings: Settings) -> datetime:
    from registry.validation import parse_instant

    day = text or datetime.now(settings.zone).date().isoformat()
    return parse_instant(day, settings.zone)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from citykpi.db import connect, timescaledb_in_use
    from citykpi.migrations import migrate

    settings = _settings()
    with connect(settings.require_database_url()) as conn:
        applied = migrate(conn)
        for m in applied:
            print(f"applied {m.package}/migrations/{m.name}")
        print(f"{len(applied)} migration(s) applied; heartbeats is "
              + ("a TimescaleDB hypertable" if timescaledb_in_use(conn) else "a plain table (no TimescaleDB)"))
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from registry.devices import import_devices, parse_devices_csv
    from registry.points import import_points, parse_points_csv
    from registry.validation import RegistryFileError

    settings = _settings()
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    effective = _effective(args.effective, settings)
    with connect(settings.require_database_url()) as conn:
        try:
            if args.what == "points":
                categories = set(args.categories.split(";")) if args.categories else None
                count = import_points(conn, parse_points_csv(path, settings.zone), effective=effective,
                                      categories=categories)
            else:
                known = {r["point_id"] for r in conn.execute("SELECT DISTINCT point_id FROM key_points")}
                kinds = {r["device_id"]: r["kind"] for r in conn.execute("SELECT device_id, kind FROM devices")}
                count = import_devices(conn, parse_devices_csv(path, settings.zone, known, kinds),
                                       effective=effective)
        except RegistryFileError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(f"{path}: {len(exc.problems)} problem(s), nothing imported", file=sys.stderr)
            return 1
    print(f"{path}: {count}")
    return 0


def cmd_registry_unknown(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from registry.queries import unknown_devices

    settings = _settings()
    with connect(settings.require_database_url()) as conn:
        rows = unknown_devices(conn)
    for r in rows:
        print(f"{r['device_id']}\t{r['kind']}\t{r['heartbeats']} heartbeats\tlast {r['last_ts'].isoformat()}")
    print(f"{len(rows)} unregistered device(s) sending heartbeats", file=sys.stderr)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.service import run_forever

    return run_forever(_settings())


def cmd_kpi_show(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import UnknownIndicator
    from kpi.indicators import sensor_value

    settings = _settings()
    with connect(settings.require_database_url()) as conn:
        try:
            value = sensor_value(conn, args.code, args.date_from, args.date_to, settings=settings)
        except (UnknownIndicator, ValueError) as exc:
            print(f"citykpi kpi show: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(value.as_dict(), ensure_ascii=False))
    else:
        shown = "—" if value.value is None else f"{value.value} {value.unit}"
        print(f"#{value.code} {value.name_vi}\n  {value.period_from} → {value.period_to}: {shown} "
              f"({value.numerator}/{value.denominator} điểm, θ = {value.theta}) [{value.status}]")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from citykpi.demo import run_demo

    return run_demo(points_per_category=args.points_per_category, days=args.days, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citykpi", description="Smart-city coverage indicators: heartbeats in, coverage rates out.",
        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply every package's migrations (idempotent)").set_defaults(func=cmd_db_migrate)

    registry = commands.add_parser("registry", help="key points and devices").add_subparsers(
        dest="registry_command", required=True)
    importer = registry.add_parser("import", help="import a complete list (all-or-nothing, idempotent)")
    importer.add_argument("what", choices=["points", "devices"])
    importer.add_argument("file")
    importer.add_argument("--effective", help="date (YYYY-MM-DD) at which entries missing from the file are "
                          "closed; default today")
    importer.add_argument("--categories", help="points: ';'-separated categories the file is complete for "
                          "(default: those that appear in it)")
    importer.set_defaults(func=cmd_registry_import)
    registry.add_parser("unknown-devices", help="devices sending heartbeats that the registry lacks").set_defaults(
        func=cmd_registry_unknown)

    commands.add_parser("ingest", help="consume heartbeats from MQTT into the database until SIGTERM",
                        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter
                        ).set_defaults(func=cmd_ingest)

    kpi = commands.add_parser("kpi", help="indicator values").add_subparsers(dest="kpi_command", required=True)
    show = kpi.add_parser("show", help="one indicator over a period of local dates [from, to)")
    show.add_argument("code", help="indicator code, e.g. 17")
    show.add_argument("--from", dest="date_from", type=_local_date, required=True, help="first day, YYYY-MM-DD")
    show.add_argument("--to", dest="date_to", type=_local_date, required=True, help="day after the last, YYYY-MM-DD")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_kpi_show)

    demo = commands.add_parser("demo", help="the whole path on a throwaway database and broker; needs nothing "
                               "installed")
    demo.add_argument("--points-per-category", type=int, default=8)
    demo.add_argument("--days", type=int, default=3, help="days of history to publish")
    demo.add_argument("--seed", type=int, default=2268)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
