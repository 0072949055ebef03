"""Throwaway databases on a server we own (tests, benchmarks): created and dropped by name, safely quoted."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql


def database_url(server_url: str, name: str) -> str:
    """The same server and credentials, another database (query parameters kept)."""
    base, _, rest = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{rest}" if rest else "")


def create_database(server_url: str, name: str, *, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(server_url: str, prefix: str, *, template: str | None = None) -> Iterator[str]:
    """A new database for the duration of the block; its URL is yielded, and it is dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = create_database(server_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(server_url, name)
