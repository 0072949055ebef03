-- TimescaleDB: the ingest sink marks the local days of its batches stale for the point rollups through this
-- hook (ingest/migrations/003_batch_hooks.sql), since no trigger sees a hypertable statement's rows; on plain
-- PostgreSQL the trigger of 030_point_rollups.sql marks them for every writer. An hour marks the local days of
-- its first and its last instant: with a zone whose offset is not whole hours, an hour can span two days.
CREATE FUNCTION kpi_heartbeat_hours_stored(hours timestamptz[]) RETURNS void
LANGUAGE sql AS $$
    SELECT kpi_mark_stale_days(ARRAY(
        SELECT DISTINCT date_trunc('day', i AT TIME ZONE z.timezone) AT TIME ZONE z.timezone
        FROM unnest(hours) AS h,
             LATERAL (VALUES (h), (h + interval '1 hour' - interval '1 microsecond')) AS v(i),
             rollup_config z));
$$;

INSERT INTO heartbeat_batch_hooks (function_name) VALUES ('kpi_heartbeat_hours_stored');
