"""`citykpi forms …`: the template an agency fills in, submitting it, and the history of submissions."""

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path

from base.periods import period_argument
from base.settings import load_settings
from base.terminal import emit, visible
from catalog import CATALOG_HELP
from forms.provenance import file_name, printable


def _template(args: argparse.Namespace) -> int:
    from catalog import load_catalog
    from forms.agencies import find_agency, in_force_for
    from forms.template import csv_template, indicators_for, json_template, xlsx_template

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
    return emit("citykpi forms template", make(catalog, current[0].id, args.period), args.out)


def _submit(args: argparse.Namespace) -> int:
    from base.db import connect
    from catalog import load_catalog
    from forms.store import store_submission
    from forms.submission import SubmissionError, SubmissionLimits, parse_submission

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: no such file", file=sys.stderr)
        return 1
    try:
        submission = parse_submission(path, catalog, SubmissionLimits.from_settings(settings))
        with connect(settings.require_database_url()) as conn:
            result = store_submission(conn, submission, catalog_id=catalog.id, file_name=file_name(path.name),
                                      content=path.read_bytes(), submitted_by=args.by, channel="cli",
                                      now=datetime.now(UTC))
    except SubmissionError as exc:
        for problem in exc.problems:
            print(visible(problem), file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s), nothing stored", file=sys.stderr)
        return 1
    except ValueError as exc:  # a file name that is not printable text
        print(f"{path}: {exc}; rename the file", file=sys.stderr)
        return 1
    print(f"{path}: {result}")
    return 0


def _submitter(text: str) -> str:
    try:
        return printable(text, "--by")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _history(args: argparse.Namespace) -> int:
    from base.db import connect
    from catalog import load_catalog
    from forms.store import history

    settings = load_settings()
    catalog = load_catalog(args.catalog)
    with connect(settings.require_database_url()) as conn:
        rows = history(conn, catalog.id, args.code, args.period.label)
    if not rows:
        print(f"no submission for indicator {args.code}, period {args.period.label}", file=sys.stderr)
        return 1
    for r in rows:
        state = f"superseded by #{r['superseded_by']}" if r["superseded_by"] else "current"
        unit = f" [{visible(r['reporting_unit'])}]" if r["reporting_unit"] else ""
        # Written by whoever submitted: shown with control characters escaped (rows stored before names were
        # checked may hold line breaks or terminal escapes).
        print(f"#{r['id']} {r['submitted_at'].isoformat(timespec='seconds')} {r['agency_id']}{unit} by "
              f"{visible(r['submitted_by'])} via {r['channel']}, file {visible(r['file_name'])} sha256 "
              f"{r['sha256'][:16]}… {dict(r['inputs'])} — {state}")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    forms = commands.add_parser("forms", help="form-based indicators: templates, submissions, history")
    forms_commands = forms.add_subparsers(dest="forms_command", required=True)

    template = forms_commands.add_parser("template", help="the file an agency fills in for a period")
    template.add_argument("--period", type=period_argument, required=True, help="2026, 2026-Q1 or 2026-03")
    template.add_argument("--agency", required=True, help='id or Vietnamese name, e.g. "Sở Y tế"')
    template.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
    template.add_argument("--out", help="write to this file instead of standard output")
    template.add_argument("--catalog", help=CATALOG_HELP)
    template.set_defaults(func=_template)

    submit = forms_commands.add_parser("submit", help="check and store a filled-in template (all-or-nothing)")
    submit.add_argument("file")
    submit.add_argument("--by", type=_submitter, default=getpass.getuser(),
                        help="who submits (default: the login name)")
    submit.add_argument("--catalog", help=CATALOG_HELP)
    submit.set_defaults(func=_submit)

    show_history = forms_commands.add_parser("history", help="every version of an indicator's submissions")
    show_history.add_argument("code")
    show_history.add_argument("--period", type=period_argument, required=True)
    show_history.add_argument("--catalog", help=CATALOG_HELP)
    show_history.set_defaults(func=_history)
