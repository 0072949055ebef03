"""`citykpi kpi …`"""

import argparse
import json
import sys

from citykpi.cli import load_settings, local_date


def _show(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import UnknownIndicator
    from kpi.indicators import sensor_value

    settings = load_settings()
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


def add_commands(commands: argparse._SubParsersAction) -> None:
    kpi = commands.add_parser("kpi", help="indicator values").add_subparsers(dest="kpi_command", required=True)
    show = kpi.add_parser("show", help="one indicator over a period of local dates [from, to)")
    show.add_argument("code", help="indicator code, e.g. 17")
    show.add_argument("--from", dest="date_from", type=local_date, required=True, help="first day, YYYY-MM-DD")
    show.add_argument("--to", dest="date_to", type=local_date, required=True, help="day after the last, YYYY-MM-DD")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=_show)
