"""`citykpi forms …` and `citykpi report`"""

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path

from citykpi.cli import load_settings


def _period(text: str):
    from kpi.forms.periods import parse_period

    try:
        return parse_period(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emit(command: str, made: str | bytes, out: str | None) -> int:
    """Text to a file or standard output; a workbook only to a file (it is not for a terminal)."""
    if isinstance(made, bytes):
        if not out:
            print(f"{command}: --format xlsx needs --out FILE.xlsx", file=sys.stderr)
            return 2
        Path(out).write_bytes(made)
    elif out:
        Path(out).write_text(made, encoding="utf-8")
    else:
        sys.stdout.write(made)
    return 0


def _template(args: argparse.Namespace) -> int:
    from kpi.catalog import load_catalog
    from kpi.forms.agencies import find_agency, in_force_for
    from kpi.forms.template import csv_template, indicators_for, json_template, xlsx_template

    catalog = load_catalog(args.catalog)
    agency = find_agency(catalog, args.agency)
    if agency is None:
        print(f"citykpi forms template: unknown agency {args.agency!r}; known: "
              + "; ".join(a.name_vi for a in catalog.agencies), file=sys.stderr)
        return 2
    current = in_force_for(catalog, agency, args.period)
    if len(current) != 1:
        print(f"citykpi forms template: {agency.name_vi} does not exist in {args.period.label}", file=sys.stderr)
        return 2
    if current[0].id != agency.id:
        print(f"{agency.name_vi} → {current[0].name_vi} in {args.period.label}", file=sys.stderr)
    if not indicators_for(catalog, current[0].id, args.period):
        print(f"{current[0].name_vi} reports no form indicator for {args.period.label}", file=sys.stderr)
        return 1
    make = {"xlsx": xlsx_template, "json": json_template, "csv": csv_template}[args.format]
    return _emit("citykpi forms template", make(catalog, current[0].id, args.period), args.out)


def _submit(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import load_catalog
    from kpi.forms.store import store_submission
    from kpi.forms.submission import SubmissionError, parse_submission

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    try:
        submission = parse_submission(path, catalog)
    except SubmissionError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s), nothing stored", file=sys.stderr)
        return 1
    with connect(settings.require_database_url()) as conn:
        result = store_submission(conn, submission, catalog_id=catalog.id, file_name=path.name,
                                  content=path.read_bytes(), submitted_by=args.by, channel="cli",
                                  now=datetime.now(UTC))
    print(f"{path}: {result}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import load_catalog
    from kpi.forms.store import history

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    with connect(settings.require_database_url()) as conn:
        rows = history(conn, catalog.id, args.code, args.period.label)
    if not rows:
        print(f"no submission for indicator {args.code}, period {args.period.label}", file=sys.stderr)
        return 1
    for r in rows:
        state = f"superseded by #{r['superseded_by']}" if r["superseded_by"] else "current"
        unit = f" [{r['reporting_unit']}]" if r["reporting_unit"] else ""
        print(f"#{r['id']} {r['submitted_at'].isoformat(timespec='seconds')} {r['agency_id']}{unit} by "
              f"{r['submitted_by']} via {r['channel']}, file {r['file_name']} sha256 {r['sha256'][:16]}… "
              f"{dict(r['inputs'])} — {state}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import load_catalog
    from kpi.report import build_report, render, render_xlsx

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    with connect(settings.require_database_url()) as conn:
        rows = build_report(conn, catalog, args.period, settings=settings)
    made = render_xlsx(rows, catalog, args.period) if args.format == "xlsx" else render(
        rows, catalog, args.period, args.format)
    return _emit("citykpi report", made, args.out)


def _tokens(args: argparse.Namespace) -> int:
    from citykpi.db import connect
    from kpi.catalog import load_catalog
    from kpi.forms.agencies import find_agency
    from kpi.tokens import create_token, list_tokens, revoke_token

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        if args.tokens_command == "create":
            agency = find_agency(load_catalog(args.catalog), args.agency)
            if agency is None:
                print(f"citykpi tokens create: unknown agency {args.agency!r}", file=sys.stderr)
                return 2
            codes = [c.strip() for c in args.indicators.split(",")] if args.indicators else None
            token_id, token = create_token(conn, agency.id, description=args.description, indicator_codes=codes)
            print(f"token #{token_id} for {agency.name_vi}; shown once, store it now:", file=sys.stderr)
            print(token)
        elif args.tokens_command == "revoke":
            if not revoke_token(conn, args.id, now=datetime.now(UTC)):
                print(f"no active token #{args.id}", file=sys.stderr)
                return 1
            print(f"token #{args.id} revoked")
        else:
            for t in list_tokens(conn):
                state = f"revoked {t['revoked_at']:%Y-%m-%d}" if t["revoked_at"] else "active"
                scope = ",".join(t["indicator_codes"]) if t["indicator_codes"] else "all its indicators"
                print(f"#{t['id']}\t{t['agency_id']}\t{scope}\t{state}\t{t['description']}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    forms = commands.add_parser("forms", help="form-based indicators: templates, submissions, history")
    forms_commands = forms.add_subparsers(dest="forms_command", required=True)
    catalog_help = "indicator set JSON (default: the packaged Bình Định 2268/QĐ-UBND set)"

    template = forms_commands.add_parser("template", help="the file an agency fills in for a period")
    template.add_argument("--period", type=_period, required=True, help="2026, 2026-Q1 or 2026-03")
    template.add_argument("--agency", required=True, help='id or Vietnamese name, e.g. "Sở Y tế"')
    template.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
    template.add_argument("--out", help="write to this file instead of standard output")
    template.add_argument("--catalog", help=catalog_help)
    template.set_defaults(func=_template)

    submit = forms_commands.add_parser("submit", help="check and store a filled-in template (all-or-nothing)")
    submit.add_argument("file")
    submit.add_argument("--by", default=getpass.getuser(), help="who submits (default: the login name)")
    submit.add_argument("--catalog", help=catalog_help)
    submit.set_defaults(func=_submit)

    show_history = forms_commands.add_parser("history", help="every version of an indicator's submissions")
    show_history.add_argument("code")
    show_history.add_argument("--period", type=_period, required=True)
    show_history.add_argument("--catalog", help=catalog_help)
    show_history.set_defaults(func=_history)

    tokens = commands.add_parser("tokens", help="API tokens for agencies' submissions (stored hashed)")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_commands.add_parser("create", help="a new token for an agency, printed once")
    create.add_argument("--agency", required=True, help='id or Vietnamese name, e.g. "Sở Y tế tỉnh Gia Lai"')
    create.add_argument("--indicators", help="comma-separated codes it may submit (default: all the agency's)")
    create.add_argument("--description", default="", help="who holds it")
    create.add_argument("--catalog", help=catalog_help)
    revoke = tokens_commands.add_parser("revoke", help="revoke a token by its number")
    revoke.add_argument("id", type=int)
    tokens_commands.add_parser("list", help="tokens, their agency, scope and state")
    tokens.set_defaults(func=_tokens)

    report = commands.add_parser("report", help="all indicators of the set for a period, grouped as in the decision")
    report.add_argument("--period", type=_period, required=True, help="2026, 2026-Q1 or 2026-03")
    report.add_argument("--format", choices=["json", "csv", "md", "xlsx"], default="md")
    report.add_argument("--out", help="write to this file instead of standard output")
    report.add_argument("--catalog", help=catalog_help)
    report.set_defaults(func=_report)
