"""`citykpi registry …`"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

from citykpi.cli import load_settings
from citykpi.settings import Settings


def _effective(text: str | None, settings: Settings) -> datetime:
    from registry.validation import parse_instant

    return parse_instant(text or datetime.now(settings.zone).date().isoformat(), settings.zone)


def _import(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from registry.devices import import_devices, parse_devices_csv
    from registry.points import import_points, parse_points_csv
    from registry.validation import RegistryFileError

    settings = load_settings()
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


def _unknown_devices(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from registry.queries import unknown_devices

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        rows = unknown_devices(conn)
    for r in rows:
        print(f"{r['device_id']}\t{r['kind']}\t{r['heartbeats']} heartbeats\tlast {r['last_ts'].isoformat()}")
    print(f"{len(rows)} unregistered device(s) sending heartbeats", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    registry = commands.add_parser("registry", help="key points and devices").add_subparsers(
        dest="registry_command", required=True)
    importer = registry.add_parser("import", help="import a complete list (all-or-nothing, idempotent)")
    importer.add_argument("what", choices=["points", "devices"])
    importer.add_argument("file")
    importer.add_argument("--effective", help="date (YYYY-MM-DD) at which entries missing from the file are "
                          "closed; default today")
    importer.add_argument("--categories", help="points: ';'-separated categories the file is complete for "
                          "(default: those that appear in it)")
    importer.set_defaults(func=_import)
    registry.add_parser("unknown-devices", help="devices sending heartbeats that the registry lacks").set_defaults(
        func=_unknown_devices)
