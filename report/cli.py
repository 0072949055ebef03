"""`citykpi report`"""

import argparse

from base.periods import period_argument
from base.settings import load_settings
from base.terminal import emit
from catalog import CATALOG_HELP


def _report(args: argparse.Namespace) -> int:
    from base.db import connect
    from catalog import load_catalog
    from report.build import build_report
    from report.formats import render, render_xlsx

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    with connect(settings.require_database_url()) as conn:
        rows = build_report(conn, catalog, args.period, settings=settings)
    made = render_xlsx(rows, catalog, args.period) if args.format == "xlsx" else render(
        rows, catalog, args.period, args.format)
    return emit("citykpi report", made, args.out)


def add_commands(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="all indicators of the set for a period, grouped as in the decision")
    report.add_argument("--period", type=period_argument, required=True, help="2026, 2026-Q1 or 2026-03")
    report.add_argument("--format", choices=["json", "csv", "md", "xlsx"], default="md")
    report.add_argument("--out", help="write to this file instead of standard output")
    report.add_argument("--catalog", help=CATALOG_HELP)
    report.set_defaults(func=_report)
