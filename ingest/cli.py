"""`citykpi ingest`"""

import argparse

from citykpi.cli import load_settings
from citykpi.settings import environment_help


def _ingest(args: argparse.Namespace) -> int:
    from ingest.service import run_forever

    return run_forever(load_settings())


def add_commands(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("ingest", help="consume heartbeats from MQTT into the database until SIGTERM",
                        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter
                        ).set_defaults(func=_ingest)
