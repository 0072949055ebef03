"""`citykpi registry …`: import, list and export the registry."""

import argparse
import sys
from datetime import datetime
from pathlib import Path

from base.settings import Settings, load_settings
from base.vocabulary import CATEGORIES


def _instant(text: str | None, settings: Settings) -> datetime:
    from base.time import parse_instant

    try:
        return parse_instant(text or datetime.now(settings.zone).date().isoformat(), settings.zone)
    except ValueError as exc:
        raise SystemExit(f"{exc}") from None


def _import(args: argparse.Namespace) -> int:
    from base.db import connect
    from base.vocabulary import Bounds
    from registry.devices import read_devices
    from registry.devices_import import import_devices
    from registry.points import read_points
    from registry.points_import import import_points
    from registry.units import import_units, read_units
    from registry.validation import Problems, RegistryFileError

    settings = load_settings()
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    effective = _instant(args.effective, settings)
    zone = settings.zone
    problems = Problems(str(path))
    options = {"effective": effective, "dry_run": args.dry_run, "problems": problems, "zone": zone}
    try:
        # Reading the file first collects its problems; the import adds the registry's and raises them together.
        if args.what == "points":
            points = read_points(path, zone, problems, bounds=Bounds.parse(settings.registry_bounds))
            categories = {c.strip() for c in args.categories.split(";") if c.strip()} if args.categories else None
            if categories and not categories <= set(CATEGORIES):
                print(f"--categories: unknown {';'.join(sorted(categories - set(CATEGORIES)))}; expected some of "
                      f"{';'.join(CATEGORIES)}", file=sys.stderr)
                return 2
            with connect(settings.require_database_url()) as conn:
                count = import_points(conn, points, categories=categories, **options)
        elif args.what == "devices":
            bindings = read_devices(path, zone, problems)
            with connect(settings.require_database_url()) as conn:
                count = import_devices(conn, bindings, **options)
        else:
            units = read_units(path, zone, problems)
            with connect(settings.require_database_url()) as conn:
                count = import_units(conn, units, **options)
    except RegistryFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s), nothing imported", file=sys.stderr)
        return 1
    if args.dry_run:
        for line in count.diff_lines():
            print(line)
        print(f"{path}: {count} — dry run, nothing written")
        return 0
    print(f"{path}: {count}")
    if args.what in ("points", "units"):
        with connect(settings.require_database_url()) as conn:
            _warn_points_outliving_their_unit(conn, settings)
    return 0


def _warn_points_outliving_their_unit(conn, settings: Settings, shown: int = 20) -> None:
    """Not an error (units come before the points that follow them), but what to do next."""
    from base.time import format_instant
    from registry.queries import points_outliving_their_unit

    rows = points_outliving_their_unit(conn)
    for r in rows[:shown]:
        ended = format_instant(r["unit_ended"], settings.zone)
        successors = f" (succeeded by {', '.join(r['successor_codes'])})" if r["successor_codes"] else ""
        print(f"warning: {r['point_id']} from {format_instant(r['valid_from'], settings.zone)} stays in "
              f"{r['admin_unit']}, which ended on {ended}{successors}; add a version of the point from {ended}",
              file=sys.stderr)
    if len(rows) > shown:
        print(f"warning: … and {len(rows) - shown} more key point version(s) outliving their unit", file=sys.stderr)


def _list_points(args: argparse.Namespace) -> int:
    from base.db import connect
    from base.time import format_instant
    from registry.queries import points_at
    from registry.tree import descendants

    settings = load_settings()
    at = _instant(args.at, settings)
    with connect(settings.require_database_url()) as conn:
        if args.admin_unit and not descendants(conn, args.admin_unit, at):
            print(f"--admin-unit: {args.admin_unit} is not an administrative unit in force at "
                  f"{format_instant(at, settings.zone)} (see `citykpi registry list units --at …`)", file=sys.stderr)
            return 1
        rows = points_at(conn, at, category=args.category, admin_unit=args.admin_unit)
    for r in rows:
        print("\t".join([r["point_id"], r["name"], ";".join(r["categories"]), r["admin_unit"] or "",
                         repr(r["lat"]), repr(r["lon"]), format_instant(r["valid_from"], settings.zone),
                         format_instant(r["valid_to"], settings.zone) if r["valid_to"] else ""]))
    under = f" under {args.admin_unit}" if args.admin_unit else ""
    print(f"{len(rows)} key point(s) in force at {format_instant(at, settings.zone)}{under}", file=sys.stderr)
    return 0


def _list_units(args: argparse.Namespace) -> int:
    from base.db import connect
    from base.time import format_instant
    from registry.tree import unit_tree

    settings = load_settings()
    at = _instant(args.at, settings)
    with connect(settings.require_database_url()) as conn:
        tree = unit_tree(conn, at)

    def show(code: str, depth: int) -> None:
        unit = tree.units[code]
        print(f"{'  ' * depth}{code}\t{unit.name}\t{unit.level}")
        for child in sorted(tree.children.get(code, [])):
            show(child, depth + 1)

    for root in tree.roots:
        show(root, 0)
    print(f"{len(tree.units)} unit(s) in force at {format_instant(at, settings.zone)}", file=sys.stderr)
    return 0


def _export_to_output(args: argparse.Namespace, export, what: str) -> int:
    """Run `export(conn, stream, zone, at=…)` into --output (or standard output) and say how many `what`."""
    from base.db import connect

    settings = load_settings()
    at = _instant(args.at, settings) if args.at else None
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        with connect(settings.require_database_url()) as conn:
            n = export(conn, out, settings.zone, at=at)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{n} {what} exported", file=sys.stderr)
    return 0


def _export_points(args: argparse.Namespace) -> int:
    from registry.export import export_points_csv, export_points_geojson

    return _export_to_output(args, export_points_csv if args.format == "csv" else export_points_geojson,
                             "key point version(s)")


def _export_devices(args: argparse.Namespace) -> int:
    from registry.export import export_devices_csv

    return _export_to_output(args, export_devices_csv, "binding(s)")


def _export_mosquitto(args: argparse.Namespace) -> int:
    from base.db import connect
    from registry.broker_accounts import export_mosquitto

    settings = load_settings()
    at = _instant(args.at, settings)
    with connect(settings.require_database_url()) as conn:
        try:
            result = export_mosquitto(conn, Path(args.out), at=at, rotate=set(args.rotate or ()),
                                      ingest_accounts=tuple(args.ingest_accounts),
                                      device_topics=tuple(args.device_topic or ()),
                                      gateway_topics=tuple(args.gateway_topic or ()))
        except ValueError as exc:
            print(f"citykpi registry export mosquitto: {exc}", file=sys.stderr)
            return 1
    print(f"{args.out}: {result}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Adds `citykpi registry …`; returns its subcommands, for commands other packages add to the group."""
    registry = commands.add_parser("registry", help="key points, devices and administrative units").add_subparsers(
        dest="registry_command", required=True)

    importer = registry.add_parser("import", help="import a complete list (all-or-nothing, idempotent)")
    importer.add_argument("what", choices=["points", "devices", "units"])
    importer.add_argument("file", help="CSV (UTF-8, with or without BOM); points also GeoJSON (.geojson/.json)")
    importer.add_argument("--effective", help="date (YYYY-MM-DD) or RFC 3339 timestamp at which entries missing "
                          "from the file are closed; default today")
    importer.add_argument("--categories", help="points: ';'-separated categories the file is complete for "
                          "(default: those that appear in it)")
    importer.add_argument("--dry-run", action="store_true", help="print what would be added, closed and changed; "
                          "write nothing")
    importer.set_defaults(func=_import)

    lister = registry.add_parser("list", help="what is in force at a date").add_subparsers(dest="list_what",
                                                                                          required=True)
    points = lister.add_parser("points", help="key points in force at --at")
    points.add_argument("--category", choices=CATEGORIES)
    points.add_argument("--at", help="date or RFC 3339 timestamp; default today")
    points.add_argument("--admin-unit", help="a unit's code: the points in it or in any unit below it, in the "
                        "tree in force at --at")
    points.set_defaults(func=_list_points)
    units = lister.add_parser("units", help="the administrative tree in force at --at")
    units.add_argument("--at", help="date or RFC 3339 timestamp; default today")
    units.set_defaults(func=_list_units)

    exporter = registry.add_parser("export", help="export the registry in the importer's formats").add_subparsers(
        dest="export_what", required=True)
    export_points = exporter.add_parser("points", help="every version of every key point (or those in force at "
                                        "--at); re-importing the export changes nothing")
    export_points.add_argument("--format", choices=["csv", "geojson"], default="csv")
    export_points.add_argument("--at", help="only versions in force at this date or timestamp")
    export_points.add_argument("--output", "-o", help="file to write; default standard output")
    export_points.set_defaults(func=_export_points)
    export_devices = exporter.add_parser("devices", help="every binding (or those in force at --at) as devices.csv, "
                                         "gateway_id included; re-importing the export changes nothing")
    export_devices.add_argument("--at", help="only bindings in force at this date or timestamp")
    export_devices.add_argument("--output", "-o", help="file to write; default standard output")
    export_devices.set_defaults(func=_export_devices)
    mosquitto = exporter.add_parser("mosquitto", help="broker accounts: a password file (one account per bound "
                                    "device and per gateway of a binding in force, secrets kept across exports) "
                                    "and an ACL (each account writes only its own topic)")
    mosquitto.add_argument("--out", required=True, help="folder for passwd, acl and the new secrets' CSV")
    mosquitto.add_argument("--at", help="devices and gateways of bindings in force at this date (default today)")
    mosquitto.add_argument("--rotate", nargs="+", metavar="ID", help="give these devices or gateways new secrets")
    mosquitto.add_argument("--ingest-accounts", nargs="+", metavar="NAME", default=["citykpi-ingest"],
                           help="the accounts of the ingest workers, which read everything (default: citykpi-ingest; "
                           "one per worker, each starting with citykpi-)")
    mosquitto.add_argument("--device-topic", action="append", metavar="TEMPLATE",
                           help="a vendor topic each device may also write, {id} as one level, e.g. 'tele/{id}/#' "
                           "(the topics of a mapping file; ingest may read them); repeatable")
    mosquitto.add_argument("--gateway-topic", action="append", metavar="TEMPLATE",
                           help="the same for each gateway, e.g. 'vms/{id}/cameras'; repeatable")
    mosquitto.set_defaults(func=_export_mosquitto)
    return registry
