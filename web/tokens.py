"""API tokens: one per agency (or person in it), stored hashed, revocable, scoped to the agency's indicators."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

PREFIX = "ckpi_"


@dataclass(frozen=True)
class TokenHolder:
    token_id: int
    agency_id: str
    indicator_codes: tuple[str, ...] | None  # None: every indicator the agency reports

    def may_submit(self, code: str) -> bool:
        return self.indicator_codes is None or code in self.indicator_codes


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


def holder_of(conn: psycopg.Connection, token: str) -> TokenHolder | None:
    """The holder of a valid, unrevoked token; None for anything else (no detail for a guesser)."""
    if not token.startswith(PREFIX):
        return None
    row = conn.execute("SELECT id, agency_id, indicator_codes FROM api_tokens"
                       " WHERE token_sha256 = %s AND revoked_at IS NULL", (_digest(token),)).fetchone()
    if row is None:
        return None
    codes = tuple(row["indicator_codes"]) if row["indicator_codes"] is not None else None
    return TokenHolder(row["id"], row["agency_id"], codes)


def audit(conn: psycopg.Connection, *, action: str, remote: str, status: int, holder: TokenHolder | None,
          detail: dict) -> None:
    from psycopg.types.json import Jsonb

    with conn.transaction():
        conn.execute("INSERT INTO audit_log (token_id, agency_id, action, remote, status, detail)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (holder.token_id if holder else None, holder.agency_id if holder else None, action, remote,
                      status, Jsonb(detail)))
