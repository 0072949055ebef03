"""API tokens: one per agency (or person in it), stored hashed, revocable, scoped to the agency's indicators; and
the audit log, which records every write attempt and every refused read."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

PREFIX = "ckpi_"
# A token is "ckpi_" and 43 URL-safe characters; anything much longer is not one (and is not hashed).
_MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class TokenHolder:
    """Whoever presented a token the table knows; `revoked` ones may do nothing but are named in the audit."""

    token_id: int
    agency_id: str
    indicator_codes: tuple[str, ...] | None  # None: every indicator the agency reports
    revoked: bool = False

    def may_submit(self, code: str) -> bool:
        return not self.revoked and (self.indicator_codes is None or code in self.indicator_codes)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: psycopg.Connection, agency_id: str, *, description: str = "",
                 indicator_codes: list[str] | None = None) -> tuple[int, str]:
    """A new token; the plain text is returned once and never stored."""
    token = PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO api_tokens (agency_id, description, token_sha256, indicator_codes) VALUES (%s, %s, %s, %s)"
            " RETURNING id", (agency_id, description, _digest(token), indicator_codes)).fetchone()
    return row["id"], token


def revoke_token(conn: psycopg.Connection, token_id: int, *, now: datetime) -> bool:
    with conn.transaction():
        done = conn.execute("UPDATE api_tokens SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                            (now, token_id))
    return done.rowcount == 1


def list_tokens(conn: psycopg.Connection) -> list[dict]:
    return conn.execute("SELECT id, agency_id, description, indicator_codes, created_at, revoked_at"
                        " FROM api_tokens ORDER BY id").fetchall()


def find_token(conn: psycopg.Connection, token: str) -> TokenHolder | None:
    """Whose token this is, revoked or not; None for one the table does not know."""
    if not token.startswith(PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    row = conn.execute("SELECT id, agency_id, indicator_codes, revoked_at IS NOT NULL AS revoked FROM api_tokens"
                       " WHERE token_sha256 = %s", (_digest(token),)).fetchone()
    if row is None:
        return None
    codes = tuple(row["indicator_codes"]) if row["indicator_codes"] is not None else None
    return TokenHolder(row["id"], row["agency_id"], codes, row["revoked"])


def holder_of(conn: psycopg.Connection, token: str) -> TokenHolder | None:
    """The holder of a valid, unrevoked token; None for anything else (no detail for a guesser)."""
    holder = find_token(conn, token)
    return holder if holder is not None and not holder.revoked else None


def audit(conn: psycopg.Connection, *, action: str, remote: str, status: int, holder: TokenHolder | None,
          detail: dict) -> None:
    """One row: who (the token, even a revoked one), what, from where, and the outcome. Whatever a request
    carried is stored as text that PostgreSQL accepts, so that no attempt escapes the log."""
    if holder is not None and holder.revoked:
        detail = {**detail, "token": "revoked"}
    with conn.transaction():
        conn.execute("INSERT INTO audit_log (token_id, agency_id, action, remote, status, detail)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (holder.token_id if holder else None, holder.agency_id if holder else None, action,
                      _storable(remote), status, Jsonb(_storable(detail))))


def _storable(value: object) -> object:
    """PostgreSQL text and jsonb cannot hold U+0000: it is written as the six characters of its escape."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
