-- Per-device rollups of heartbeats, the only thing the KPI layer reads, so that a period older than raw
-- retention still computes and a year does not rescan a year of raw rows.
--
--   heartbeats_hourly (device_id, bucket, healthy_count, total_count, first_seen, last_seen, last_healthy)
--   heartbeats_daily  (device_id, day, healthy_count, total_count, first_seen, last_seen, last_healthy, up_hours,
--                      up_mask)
--
-- up_mask has bit k set when the hour starting k hours after the local midnight `day` was up (healthy_count
-- > 0 in heartbeats_hourly): it lets a year's coverage read 365 rows per device instead of 8 760, and
-- still take the union of several devices' hours exactly (bit_or), as DESIGN's "any device bound" needs.
--
-- `bucket` / `day` are the instants at which the province's local hour / day starts. Buckets therefore
-- bake in a time zone, recorded in rollup_config; the service refuses to read rollups made in another
-- zone than CITYKPI_TIMEZONE (kpi/rollups.py). The zone comes from the `citykpi.timezone` setting that
-- the migration runner sets from CITYKPI_TIMEZONE, else the default.
--
-- TimescaleDB: continuous aggregates (daily on hourly), real-time aggregation, refresh policies whose
-- window reaches past the lateness window so that a late heartbeat re-materialises its buckets.
-- Plain PostgreSQL: tables of the same names and columns, kept exact by a statement-level trigger on
-- heartbeats — see below for why a trigger rather than the ingest sink or a refresher.

CREATE TABLE rollup_config (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    timezone  text    NOT NULL
);
INSERT INTO rollup_config (timezone)
VALUES (coalesce(nullif(current_setting('citykpi.timezone', true), ''), 'Asia/Ho_Chi_Minh'));
-- An unknown zone name fails here, at migration, rather than in the first trigger call.
SELECT now() AT TIME ZONE (SELECT timezone FROM rollup_config);

-- The hours of one local day (its buckets start at day_start + k hours) that start in [a, b), as bits k:
-- "in force in a bucket when it is in force at the bucket's start". One expression, so the planner inlines it.
-- Bits past the day's last hour may be set (b after the day's end); callers AND with a day's real bits.
CREATE FUNCTION kpi_hour_mask(day_start timestamptz, a timestamptz, b timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- date_part (double precision) rather than extract (numeric): exact for whole seconds, and several times
-- cheaper over millions of device-days.
RETURN greatest((1::bigint << least(ceil(date_part('epoch', b - day_start) / 3600), 25)::int)
                - (1::bigint << greatest(ceil(date_part('epoch', a - day_start) / 3600), 0)::int), 0);

DO $$
DECLARE
    zone text := (SELECT timezone FROM rollup_config);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- time_bucket with a time zone (TimescaleDB >= 2.8) aligns buckets to local hours and days;
        -- CASE instead of FILTER keeps the definition within what every 2.x continuous aggregate accepts.
        EXECUTE format($cagg$
            CREATE MATERIALIZED VIEW heartbeats_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT device_id,
                   time_bucket(interval '1 hour', ts, %L) AS bucket,
                   sum(CASE WHEN healthy THEN 1 ELSE 0 END)::bigint AS healthy_count,
                   count(*) AS total_count,
                   min(ts) AS first_seen,
                   max(ts) AS last_seen,
                   max(CASE WHEN healthy THEN ts END) AS last_healthy
            FROM heartbeats
            GROUP BY device_id, time_bucket(interval '1 hour', ts, %L)
            WITH NO DATA $cagg$, zone, zone);
        -- Hierarchical continuous aggregate (TimescaleDB >= 2.9): the daily one reads the hourly one.
        EXECUTE format($cagg$
            CREATE MATERIALIZED VIEW heartbeats_daily
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT device_id,
                   time_bucket(interval '1 day', bucket, %L) AS day,
                   sum(healthy_count)::bigint AS healthy_count,
                   sum(total_count)::bigint AS total_count,
                   min(first_seen) AS first_seen,
                   max(last_seen) AS last_seen,
                   max(last_healthy) AS last_healthy,
                   sum(CASE WHEN healthy_count > 0 THEN 1 ELSE 0 END)::bigint AS up_hours,
                   bit_or(CASE WHEN healthy_count > 0
                               THEN 1::bigint << (extract(epoch FROM bucket - time_bucket(interval '1 day', bucket, %L))
                                                  / 3600)::int
                               ELSE 0 END) AS up_mask
            FROM heartbeats_hourly
            GROUP BY device_id, time_bucket(interval '1 day', bucket, %L)
            WITH NO DATA $cagg$, zone, zone, zone);
        -- The refresh windows start more than the 7-day lateness window back: a heartbeat accepted late
        -- is recorded in the invalidation log and re-materialised by the next run; until then real-time
        -- aggregation covers everything after the last refresh. `citykpi kpi storage-policies` re-applies
        -- these from the settings (kpi/rollups.py).
        PERFORM add_continuous_aggregate_policy('heartbeats_hourly', start_offset => interval '9 days',
                                                end_offset => interval '1 hour',
                                                schedule_interval => interval '15 minutes');
        PERFORM add_continuous_aggregate_policy('heartbeats_daily', start_offset => interval '10 days',
                                                end_offset => interval '1 day',
                                                schedule_interval => interval '1 hour');
        -- Raw heartbeats compress after two lateness windows (late inserts into compressed chunks work
        -- but are slow) and are dropped after 400 days. The retention must stay longer than the refresh
        -- windows, or a refresh would empty buckets whose raw rows are gone.
        ALTER TABLE heartbeats SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id',
                                    timescaledb.compress_orderby = 'ts DESC');
        PERFORM add_compression_policy('heartbeats', compress_after => interval '14 days');
        PERFORM add_retention_policy('heartbeats', drop_after => interval '400 days');
    ELSE
        CREATE TABLE heartbeats_hourly (
            device_id     text        NOT NULL,
            bucket        timestamptz NOT NULL,
            healthy_count bigint      NOT NULL,
            total_count   bigint      NOT NULL,
            first_seen    timestamptz NOT NULL,
            last_seen     timestamptz NOT NULL,
            last_healthy  timestamptz,
            PRIMARY KEY (device_id, bucket)
        ) WITH (fillfactor = 70);
        -- fillfactor: room for HOT updates, since every batch updates the current hour's rows in place.
        -- Only the primary keys: every reader (coverage, live) goes by device, and each further index
        -- would be one more write per new row on the ingest path.
        CREATE TABLE heartbeats_daily (
            device_id     text        NOT NULL,
            day           timestamptz NOT NULL,
            healthy_count bigint      NOT NULL,
            total_count   bigint      NOT NULL,
            first_seen    timestamptz NOT NULL,
            last_seen     timestamptz NOT NULL,
            last_healthy  timestamptz,
            up_hours      bigint      NOT NULL,
            up_mask       bigint      NOT NULL,
            PRIMARY KEY (device_id, day)
        ) WITH (fillfactor = 70);

        -- Why a statement-level AFTER INSERT trigger with a transition table:
        -- * exact and immediate, in the inserting transaction: a heartbeat two days late changes its
        --   hour and day the moment it commits, the same late-data semantics as real-time aggregation;
        -- * every writer is covered — the ingest sink's one INSERT … ON CONFLICT DO NOTHING per batch,
        --   a backfill, a test's INSERT — with no change to the sink; the transition table holds only
        --   the rows actually inserted, so duplicates absorbed by the key are not counted twice;
        -- * the cost is one grouped upsert per statement (a sink batch of 5 000 rows from N devices
        --   touches about N hourly and N daily rows), not a per-row trigger.
        -- Every column is additive (sums, min, max, bit_or, and up_hours grows when an hour's
        -- healthy_count leaves 0), so concurrent batches serialise on the row locks and never lose an update, which a
        -- "recompute the day from the hourly rows" design would under READ COMMITTED.
        -- Heartbeats are append-only (the first stored wins); deleting raw rows leaves the rollups as
        -- they are, which is what lets them outlive raw retention.
        CREATE FUNCTION kpi_rollup_inserted_heartbeats() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text := (SELECT timezone FROM rollup_config);
        BEGIN
            WITH batch AS (
                SELECT device_id, date_trunc('hour', ts AT TIME ZONE zone) AT TIME ZONE zone AS bucket,
                       count(*) FILTER (WHERE healthy) AS healthy_count, count(*) AS total_count,
                       min(ts) AS first_seen, max(ts) AS last_seen,
                       max(ts) FILTER (WHERE healthy) AS last_healthy
                FROM inserted
                GROUP BY 1, 2
            ),
            hourly AS (
                INSERT INTO heartbeats_hourly AS r
                SELECT device_id, bucket, healthy_count, total_count, first_seen, last_seen, last_healthy
                FROM batch
                ORDER BY device_id, bucket
                ON CONFLICT (device_id, bucket) DO UPDATE
                SET healthy_count = r.healthy_count + excluded.healthy_count,
                    total_count = r.total_count + excluded.total_count,
                    first_seen = least(r.first_seen, excluded.first_seen),
                    last_seen = greatest(r.last_seen, excluded.last_seen),
                    last_healthy = greatest(r.last_healthy, excluded.last_healthy)
                RETURNING r.device_id, r.bucket, r.healthy_count
            )
            INSERT INTO heartbeats_daily AS d
            SELECT b.device_id, b.day,
                   sum(b.healthy_count), sum(b.total_count), min(b.first_seen), max(b.last_seen),
                   max(b.last_healthy),
                   -- The hour became up in this statement: it is healthy now and was not before.
                   count(*) FILTER (WHERE b.healthy_count > 0 AND h.healthy_count = b.healthy_count),
                   bit_or(CASE WHEN b.healthy_count > 0
                               THEN 1::bigint << (extract(epoch FROM b.bucket - b.day) / 3600)::int ELSE 0 END)
            FROM (SELECT *, date_trunc('day', bucket AT TIME ZONE zone) AT TIME ZONE zone AS day FROM batch) b
            JOIN hourly h ON h.device_id = b.device_id AND h.bucket = b.bucket
            GROUP BY 1, 2
            ORDER BY 1, 2
            ON CONFLICT (device_id, day) DO UPDATE
            SET healthy_count = d.healthy_count + excluded.healthy_count,
                total_count = d.total_count + excluded.total_count,
                first_seen = least(d.first_seen, excluded.first_seen),
                last_seen = greatest(d.last_seen, excluded.last_seen),
                last_healthy = greatest(d.last_healthy, excluded.last_healthy),
                up_hours = d.up_hours + excluded.up_hours,
                up_mask = d.up_mask | excluded.up_mask;
            RETURN NULL;
        END
        $fn$;
        CREATE TRIGGER heartbeats_rollup AFTER INSERT ON heartbeats
            REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION kpi_rollup_inserted_heartbeats();

        -- Heartbeats stored before this migration.
        INSERT INTO heartbeats_hourly
        SELECT device_id, date_trunc('hour', ts AT TIME ZONE zone) AT TIME ZONE zone,
               count(*) FILTER (WHERE healthy), count(*), min(ts), max(ts), max(ts) FILTER (WHERE healthy)
        FROM heartbeats
        GROUP BY 1, 2;
        INSERT INTO heartbeats_daily
        SELECT device_id, day, sum(healthy_count), sum(total_count), min(first_seen), max(last_seen),
               max(last_healthy), count(*) FILTER (WHERE healthy_count > 0),
               bit_or(CASE WHEN healthy_count > 0
                           THEN 1::bigint << (extract(epoch FROM bucket - day) / 3600)::int ELSE 0 END)
        FROM (SELECT *, date_trunc('day', bucket AT TIME ZONE zone) AT TIME ZONE zone AS day
              FROM heartbeats_hourly) h
        GROUP BY 1, 2;
    END IF;
END
$$;
