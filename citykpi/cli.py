"""The one command line. Each package adds its own commands (`registry/cli.py`, `ingest/cli.py`,
`kpi/cli.py`); this module only assembles them and holds what they share."""

import argparse
import logging
import sys
from datetime import date

from pydantic import ValidationError

from citykpi.settings import Settings, environment_help


def load_settings() -> Settings:
    """Settings from the environment, or exit with every problem named by its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"CITYKPI_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"configuration error: {problems}") from None


# Local days at the ends of the calendar have UTC bounds that datetime cannot hold.
_FIRST_DAY, _LAST_DAY = date(1900, 1, 1), date(9999, 1, 1)


def local_date(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None
    if not _FIRST_DAY <= day <= _LAST_DAY:
        raise argparse.ArgumentTypeError(f"{text!r} must lie between {_FIRST_DAY} and {_LAST_DAY}")
    return day


def _db_migrate(args: argparse.Namespace) -> int:
    from citykpi.db import connect, timescaledb_in_use
    from citykpi.migrations import migrate

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        applied = migrate(conn, timezone=settings.timezone)
        for m in applied:
            print(f"applied {m.package}/migrations/{m.name}")
        print(f"{len(applied)} migration(s) applied; heartbeats is "
              + ("a TimescaleDB hypertable" if timescaledb_in_use(conn) else "a plain table (no TimescaleDB)"))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from citykpi.demo import run_demo

    return run_demo(points_per_category=args.points_per_category, days=args.days, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    from ingest.cli import add_commands as add_ingest_commands
    from kpi.cli import add_commands as add_kpi_commands
    from kpi.forms.cli import add_commands as add_forms_commands
    from registry.cli import add_commands as add_registry_commands
    from simulators.cli import add_commands as add_simulator_commands

    parser = argparse.ArgumentParser(
        prog="citykpi", description="Smart-city coverage indicators: heartbeats in, coverage rates out.",
        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("migrate", help="apply every package's migrations (idempotent)").set_defaults(func=_db_migrate)

    add_registry_commands(commands)
    add_ingest_commands(commands)
    add_kpi_commands(commands)
    add_forms_commands(commands)
    add_simulator_commands(commands)

    demo = commands.add_parser("demo", help="the whole path on a throwaway database and broker; needs nothing "
                               "installed")
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
