"""`citykpi kpi …`: indicator values, evidence, exports, storage policies, point-rollup refresh."""

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from base.settings import load_settings
from base.time import local_date


@contextmanager
def _reading(command: str) -> Iterator[tuple]:
    """A connection and the settings; what a reader can get wrong is said in one line, exit status 2."""
    from base.db import connect
    from catalog import UnknownIndicator
    from kpi.rollups import RollupZoneMismatch
    from registry.tree import UnknownAdminUnit

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        try:
            yield conn, settings
        except (UnknownIndicator, UnknownAdminUnit, RollupZoneMismatch, ValueError) as exc:
            print(f"citykpi kpi {command}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def _show(args: argparse.Namespace) -> int:
    from kpi.indicators import sensor_value

    with _reading("show") as (conn, settings):
        value = sensor_value(conn, args.code, args.date_from, args.date_to, settings=settings,
                             admin_unit=args.admin_unit)
    if args.json:
        print(json.dumps(value.as_dict(), ensure_ascii=False))
    else:
        shown = "—" if value.value is None else f"{value.value} {value.unit}"
        where = f" [{value.admin_unit}]" if value.admin_unit else ""
        print(f"#{value.code} {value.name_vi}{where}\n  {value.period_from} → {value.period_to}: {shown} "
              f"({value.numerator}/{value.denominator} điểm, θ = {value.theta}) [{value.status}]")
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from kpi.export import EVIDENCE_COLUMNS, evidence_dicts, write_csv, write_json
    from kpi.indicators import sensor_value

    with _reading("evidence") as (conn, settings):
        value = sensor_value(conn, args.code, args.date_from, args.date_to, settings=settings,
                             admin_unit=args.admin_unit, devices=True)
    rows = evidence_dicts(value)
    if args.format == "csv":
        write_csv(rows, EVIDENCE_COLUMNS, sys.stdout)
    elif args.format == "json":
        write_json({**value.as_dict(), "theta": str(value.theta), "points": rows}, sys.stdout)
    else:
        print(f"#{value.code} {value.period_from} → {value.period_to}: {value.numerator}/{value.denominator} "
              f"điểm đạt (θ = {value.theta}) [{value.status}]")
        for r in rows:
            devices = ", ".join(f"{d['device_id']} {d['up_hours']} h"
                                + (f" ({d['online_only_hours']} h online only)" if d["online_only_hours"] else "")
                                for d in r["devices"]) or "—"
            print(f"  {r['point_id']:<16} {r['availability']:>9} {r['availability_percent']:>7.2f}%  "
                  f"{'đạt' if r['covered'] else 'không đạt':<9}  {devices}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from kpi.export import REPORT_COLUMNS, report_dicts, write_csv, write_json
    from kpi.indicators import period_report

    with _reading("export") as (conn, settings):
        rows = report_dicts(period_report(conn, args.date_from, args.date_to, settings=settings))
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        if args.format == "csv":
            write_csv(rows, REPORT_COLUMNS, out)
        else:
            write_json({"from": args.date_from.isoformat(), "to": args.date_to.isoformat(),
                        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}, out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _storage_policies(args: argparse.Namespace) -> int:
    from kpi.rollups import apply_storage_policies

    with _reading("storage-policies") as (conn, settings):
        conn.autocommit = False
        for line in apply_storage_policies(conn, lateness_window=settings.lateness_window,
                                           raw_retention=settings.raw_retention,
                                           compress_after=settings.compress_after):
            print(line)
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from base.db import connect
    from base.terminal import StagedProgress
    from catalog import load_catalog
    from kpi.point_rollups import REFRESH_STAGE_LABELS, refresh

    settings = load_settings()
    progress = StagedProgress(REFRESH_STAGE_LABELS)
    with connect(settings.require_database_url(), autocommit=True) as conn:
        result = refresh(conn, load_catalog(), lateness_window=settings.lateness_window, progress=progress)
    progress.finish()
    if result.skipped_busy:
        print("citykpi kpi refresh: another refresher is running; nothing more done here", file=sys.stderr)
    print(f"{result.days} days, {result.months} months, {result.point_days} point-days, "
          f"{result.device_months} months of device hours refreshed")
    return 0


def _period(parser: argparse.ArgumentParser, *, unit: bool = True) -> None:
    parser.add_argument("--from", dest="date_from", type=local_date, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="date_to", type=local_date, required=True, help="day after the last, YYYY-MM-DD")
    if unit:
        parser.add_argument("--admin-unit", help="code of an administrative unit: that unit and its descendants, "
                            "in the unit tree in force in the period's last hour")


def add_commands(commands: argparse._SubParsersAction) -> None:
    kpi = commands.add_parser("kpi", help="indicator values").add_subparsers(dest="kpi_command", required=True)
    show = kpi.add_parser("show", help="one indicator over a period of local dates [from, to)")
    show.add_argument("code", help="indicator code, e.g. 17")
    _period(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=_show)

    evidence = kpi.add_parser("evidence", help="every key point in an indicator's denominator, and why it counts")
    evidence.add_argument("code", help="indicator code, e.g. 17")
    _period(evidence)
    evidence.add_argument("--format", choices=("text", "json", "csv"), default="text")
    evidence.set_defaults(func=_evidence)

    export = kpi.add_parser("export", help="the period's report: every sensor indicator, province and every unit")
    _period(export, unit=False)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    export.set_defaults(func=_export)

    policies = kpi.add_parser("storage-policies", help="TimescaleDB: apply refresh, compression and retention "
                              "policies from the settings (CITYKPI_LATENESS_WINDOW, _RAW_RETENTION, _COMPRESS_AFTER)")
    policies.set_defaults(func=_storage_policies)

    refresh = kpi.add_parser("refresh", help="recompute the point rollups of every stale day now (`citykpi "
                             "serve` does it every CITYKPI_POINT_ROLLUP_REFRESH_S)")
    refresh.set_defaults(func=_refresh)
