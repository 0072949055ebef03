"""What the plain-PostgreSQL rollup triggers cost the ingest path.

    python -m bench.trigger_cost [--batches 40] [--rows 5000] [--devices 2000]

Writes the same batches as the ingest sink does (COPY into a staging table, one INSERT … SELECT … ON
CONFLICT DO NOTHING into heartbeats per batch), rotating batches between no trigger, the device rollups'
trigger, and that plus the point rollups' staleness marking, so that all see the same machine load, and
prints the median time per batch of each (COPY, INSERT and commit). A fourth mode COPYs the batch straight
into `heartbeats` with both triggers: what a sink that de-duplicated its batches beforehand, with no staging
table and no `ON CONFLICT`, would cost the database (issue #17 asked for it).
"""

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from psycopg import sql

from base.db import connect
from citykpi.schema import migrate
from devstack.postgres import LocalPostgres

_STAGE = ("CREATE TEMP TABLE stage (device_id text, ts timestamptz, kind text, healthy boolean, status text,"
          " source text, received_at timestamptz)")
_INSERT = ("INSERT INTO heartbeats (device_id, ts, kind, healthy, status, source, received_at)"
           " SELECT device_id, ts, kind, healthy, status, source, received_at FROM stage"
           " ON CONFLICT (device_id, ts) DO NOTHING")
_COPY_DIRECT = "COPY heartbeats (device_id, ts, kind, healthy, status, source, received_at) FROM STDIN"
_DIRECT = "COPY straight into heartbeats, both triggers"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trigger_cost")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=2000)
    args = parser.parse_args(argv)
    modes = {"no trigger": (), "device rollups": ("heartbeats_rollup",),
             "device rollups + point staleness marks": ("heartbeats_rollup", "heartbeats_point_rollups_stale"),
             _DIRECT: ("heartbeats_rollup", "heartbeats_point_rollups_stale")}
    triggers = ("heartbeats_rollup", "heartbeats_point_rollups_stale")
    timings: dict[str, list[float]] = {mode: [] for mode in modes}
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with LocalPostgres() as pg, connect(pg.url) as conn:
        migrate(conn)
        conn.execute(_STAGE)
        conn.autocommit = False
        for batch in range(args.batches):
            mode = list(modes)[batch % len(modes)]
            for trigger in triggers:
                verb = sql.SQL("ENABLE" if trigger in modes[mode] else "DISABLE")
                conn.execute(sql.SQL("ALTER TABLE heartbeats {} TRIGGER {}").format(verb, sql.Identifier(trigger)))
            conn.execute("TRUNCATE stage")
            # A batch as a busy minute delivers it: each device's heartbeats a few seconds apart.
            rows = [(f"dev-{i % args.devices}", start + timedelta(seconds=batch * args.rows + i), "cctv", i % 50 != 0,
                     "ok", "bench", start) for i in range(args.rows)]
            began = time.perf_counter()
            with conn.cursor().copy(_COPY_DIRECT if mode == _DIRECT else "COPY stage FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            if mode != _DIRECT:
                conn.execute(_INSERT)
            conn.commit()
            timings[mode].append(time.perf_counter() - began)
        hourly = conn.execute("SELECT count(*) AS n FROM heartbeats_hourly").fetchone()["n"]
    bare = statistics.median(timings["no trigger"])
    print(f"{args.rows} rows per batch from {args.devices} devices, {args.batches} batches "
          f"({hourly} hourly rollup rows), COPY + INSERT + commit, median:")
    for mode, seconds in timings.items():
        median = statistics.median(seconds)
        print(f"  {mode:<40} {median * 1000:7.1f} ms ({median / bare:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
