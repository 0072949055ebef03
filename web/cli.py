"""`citykpi serve` and `citykpi tokens …`: the HTTP app and the agencies' tokens for it."""

import argparse
import sys
from datetime import UTC, datetime

from base.settings import load_settings
from catalog import CATALOG_HELP


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from web.app import create_app

    settings = load_settings()
    # X-Forwarded-For is believed only from the proxies named: from anyone else, even on loopback, it could
    # put any address in the audit log.
    proxies = settings.api_trusted_proxies.strip()
    uvicorn.run(create_app(settings, settings.require_database_url()), host=args.host, port=args.port,
                log_level="info" if args.verbose else "warning", proxy_headers=bool(proxies),
                forwarded_allow_ips=proxies or None)
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from base.db import connect
    from catalog import load_catalog
    from forms.agencies import find_agency, in_force_on
    from web.tokens import create_token, list_tokens, revoke_token

    settings = load_settings()
    with connect(settings.require_database_url()) as conn:
        if args.tokens_command == "create":
            catalog = load_catalog(args.catalog)
            named = find_agency(catalog, args.agency)
            if named is None:
                print(f"citykpi tokens create: unknown agency {args.agency!r}", file=sys.stderr)
                return 2
            # A token belongs to the body that exists today: "Sở Y tế" has been Sở Y tế tỉnh Gia Lai since 2025.
            today = datetime.now(settings.zone).date()
            current = in_force_on(catalog, named, today)
            if len(current) != 1:
                in_force = ", ".join(a.name_vi for a in current) or "none"
                print(f"citykpi tokens create: {named.name_vi} does not exist on {today}; its successors in force: "
                      f"{in_force}; name the one the token is for", file=sys.stderr)
                return 2
            agency = current[0]
            if agency.id != named.id:
                print(f"{named.name_vi} → {agency.name_vi} (in force on {today})", file=sys.stderr)
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
    tokens = commands.add_parser("tokens", help="API tokens for agencies' submissions (stored hashed)")
    tokens_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_commands.add_parser("create", help="a new token for an agency, printed once")
    create.add_argument("--agency", required=True, help='id or Vietnamese name, e.g. "Sở Y tế tỉnh Gia Lai"')
    create.add_argument("--indicators", help="comma-separated codes it may submit (default: all the agency's)")
    create.add_argument("--description", default="", help="who holds it")
    create.add_argument("--catalog", help=CATALOG_HELP)
    revoke = tokens_commands.add_parser("revoke", help="revoke a token by its number")
    revoke.add_argument("id", type=int)
    tokens_commands.add_parser("list", help="tokens, their agency, scope and state")
    tokens.set_defaults(func=_tokens)

    serve = commands.add_parser("serve", help="the read-only KPI HTTP API (OpenAPI at /docs) and /metrics")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)
