"""The one command line, `citykpi …`. Each package adds its own commands (`registry/cli.py`, `ingest/cli.py`,
`kpi/cli.py`, `forms/cli.py`, `report/cli.py`, `web/cli.py`, `simulators/cli.py`); this module assembles them,
and adds the two that concern the whole service: `db migrate` and `demo`."""

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from base.settings import environment_help, load_settings
from forms.cli import add_commands as add_forms_commands
from ingest.cli import add_commands as add_ingest_commands
from ingest.cli import add_registry_commands as add_ingest_registry_commands
from kpi.cli import add_commands as add_kpi_commands
from registry.cli import add_commands as add_registry_commands
from report.cli import add_commands as add_report_commands
from simulators.cli import add_commands as add_simulator_commands
from web.cli import add_commands as add_web_commands

if TYPE_CHECKING:  # the development stack is an extra: imported by `demo` alone, when installed
    from devstack.demo_serve import StartWeb


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
    from devstack.ports import port_accepts

    if args.serve and args.port and port_accepts(args.port):  # said now, not after the demo's minute of work
        print(f"citykpi demo: 127.0.0.1:{args.port} is already in use; choose another --port", file=sys.stderr)
        return 1
    try:
        return run_demo(schemas=SCHEMAS, points_per_category=args.points_per_category, days=args.days,
                        seed=args.seed, serve=_demo_web(args.port, args.verbose) if args.serve else None)
    except ServiceUnavailable as exc:
        print(f"citykpi demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # SIGINT or SIGTERM before serving: the demo's `with` blocks stopped what it started
        print("citykpi demo: đã dừng giữa chừng", file=sys.stderr)
        return 130


def _demo_web(port: int, verbose: bool) -> "StartWeb":
    """`citykpi demo --serve`'s HTTP app, `citykpi serve`'s, on loopback: the demo (devstack/) stands below web/,
    so the command line starts it for it, in a thread of this process."""
    import threading

    import uvicorn

    from devstack.demo_serve import DemoStack, RunningWeb
    from devstack.errors import ServiceUnavailable
    from devstack.ports import wait_until
    from web.app import create_app

    def start(stack: DemoStack) -> RunningWeb:
        # A thread's server installs no signal handlers: the demo catches SIGINT and SIGTERM and stops it.
        server = uvicorn.Server(uvicorn.Config(create_app(stack.settings, stack.database_url), host="127.0.0.1",
                                               port=port, log_level="info" if verbose else "warning",
                                               timeout_graceful_shutdown=5))
        thread = threading.Thread(target=server.run, name="citykpi-demo-web")
        thread.start()
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=60, what="the HTTP app")
        if not server.started:
            thread.join()
            raise ServiceUnavailable(f"the HTTP app could not listen on 127.0.0.1:{port}")
        bound = server.servers[0].sockets[0].getsockname()[1]

        def stop() -> None:
            server.should_exit = True
            thread.join()

        return RunningWeb(f"http://127.0.0.1:{bound}", stop, thread.is_alive)

    return start


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
    demo.add_argument("--serve", action="store_true",
                      help="with months of history for the trends, keep it all up after the table — database, "
                      "broker, ingest, devices beating in real time, the report page and API — until Ctrl-C")
    demo.add_argument("--port", type=int, default=0, help="with --serve: the HTTP port on 127.0.0.1 (default: a "
                      "free one)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
