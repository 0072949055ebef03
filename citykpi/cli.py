"""The one command line, `citykpi …`. Each package adds its own commands (`registry/cli.py`, `ingest/cli.py`,
`kpi/cli.py`, `forms/cli.py`, `report/cli.py`, `web/cli.py`, `simulators/cli.py`); this module assembles them,
and adds the two that concern the whole service: `db migrate` and `demo`."""

import argparse
import logging
import sys

from base.settings import environment_help, load_settings
from forms.cli import add_commands as add_forms_commands
from ingest.cli import add_commands as add_ingest_commands
from ingest.cli import add_registry_commands as add_ingest_registry_commands
from kpi.cli import add_commands as add_kpi_commands
from registry.cli import add_commands as add_registry_commands
from report.cli import add_commands as add_report_commands
from simulators.cli import add_commands as add_simulator_commands
from web.cli import add_commands as add_web_commands


def _db_migrate(args: argparse.Namespace) -> int:
    from base.db import connect, timescaledb_in_use
    from citykpi.schema import migrate

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        applied = migrate(conn, timezone=settings.timezone)
        for m in applied:
            print(f"applied {m.package}/migrations/{m.name}")
        print(f"{len(applied)} migration(s) applied; heartbeats is "
              + ("a TimescaleDB hypertable" if timescaledb_in_use(conn) else "a plain table (no TimescaleDB)"))
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from devstack.demo import run_demo
    except ImportError as exc:  # a production install: the development stack is an extra
        print(f"citykpi demo needs the development stack ({exc.name} is missing): "
              "pip install 'citykpi[devstack]'", file=sys.stderr)
        return 2
    from citykpi.schema import SCHEMAS
    from devstack.errors import ServiceUnavailable

    try:
        return run_demo(schemas=SCHEMAS, points_per_category=args.points_per_category, days=args.days,
                        seed=args.seed)
    except ServiceUnavailable as exc:
        print(f"citykpi demo: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citykpi", description="Smart-city coverage indicators: heartbeats in, coverage rates out.",
        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply every package's migrations (idempotent)").set_defaults(func=_db_migrate)

    registry = add_registry_commands(commands)
    add_ingest_registry_commands(registry)
    add_ingest_commands(commands)
    add_kpi_commands(commands)
    add_web_commands(commands)
    add_forms_commands(commands)
    add_report_commands(commands)
    add_simulator_commands(commands)

    demo = commands.add_parser("demo", help="the whole path on a throwaway database and broker (the development "
                               "stack: pip install 'citykpi[devstack]')")
    demo.add_argument("--points-per-category", type=int, default=8)
    demo.add_argument("--days", type=int, default=3, help="days of history to publish")
    demo.add_argument("--seed", type=int, default=2268)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
