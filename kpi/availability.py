"""Availability messages as up hours: what keeps an online state that has not ended counted up to now.

The rules, the tables and the rewrite of a device's days when its events change are in
kpi/migrations/060_availability.sql; a statement trigger keeps them exact for every writer. What no trigger
can see is time passing: a camera online since 08:00 is up at 11:00 without a new message. So every read of
a period and every refresh first writes the open online states up to the end of the hour holding `now`.
"""

from datetime import datetime

import psycopg


def extend_open_availability(conn: psycopg.Connection, now: datetime) -> int:
    """Write every open online state up to the end of the hour holding `now`; returns how many devices moved.

    Its own transaction on an autocommit connection (a read's connection is one), else part of the caller's.
    """
    if conn.autocommit:
        with conn.transaction():
            return conn.execute("SELECT kpi_availability_extend(%s) AS n", (now,)).fetchone()["n"]
    return conn.execute("SELECT kpi_availability_extend(%s) AS n", (now,)).fetchone()["n"]
