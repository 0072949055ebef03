-- Point rollups: each key point's up hours per local day and month, so that a year of an indicator reads
-- twelve rows per point instead of 365 × its devices. The KPI layer still answers exactly as DESIGN
-- defines it; these tables are a cache of that answer, day by day, that knows when it is stale.
--
--   point_daily   (category, kind, day, point_id, up_mask, up_hours)
--   point_monthly (category, kind, month, point_id, up_hours)
--
-- up_mask of a point-day is the union (bit_or) of the up_mask of the devices of `kind` bound to the point,
-- each cut to the hours in which both its binding and a version of the point in `category` are in force —
-- the same bits the full query (kpi/coverage.py) computes for that day. Rows whose mask is 0 are not kept.
-- Up hours add up over days and months because a point's hours are counted once per bucket.
--
-- Why a cache with staleness and not an incremental upsert like heartbeats_daily: a point's hours depend
-- on the registry as well as on heartbeats, and a backdated binding or point change must redo the days
-- it touches; and on TimescaleDB heartbeats_daily is a continuous aggregate, on which no trigger can run.
-- So: every write that can change a point-day marks the day stale (heartbeats through a trigger on plain
-- PostgreSQL or the ingest sink on TimescaleDB; the registry tables through triggers below); readers compute
-- stale days from heartbeats_daily as before, and the refresher (kpi/point_rollups.py, run by `citykpi
-- serve` and `citykpi kpi refresh`) recomputes them and clears the mark.
--
-- The mark carries a generation, bumped by every write that marks an already stale day. The refresher
-- clears a mark only if its generation is the one it read before computing: a write that committed in
-- between, or is still running (it holds the mark's row lock, so the clearing DELETE waits for it), leaves
-- the day stale. A refresher never clears a day whose newest heartbeats it did not see.

CREATE TABLE point_daily (
    category text        NOT NULL,
    kind     text        NOT NULL,
    day      timestamptz NOT NULL,
    point_id text        NOT NULL,
    up_mask  bigint      NOT NULL,
    up_hours smallint    NOT NULL,
    PRIMARY KEY (category, kind, day, point_id)
);

CREATE TABLE point_monthly (
    category text        NOT NULL,
    kind     text        NOT NULL,
    month    timestamptz NOT NULL,
    point_id text        NOT NULL,
    up_hours integer     NOT NULL,
    PRIMARY KEY (category, kind, month, point_id)
);

CREATE TABLE point_rollup_stale (
    day        timestamptz PRIMARY KEY,
    generation bigint      NOT NULL DEFAULT 1
);

-- The first and last local days ever marked: a registry change marks the days from the instant it changes
-- to the last day with heartbeats, but never before the first (there is nothing to redo there, and a point
-- valid since 1990 must not mark 13 000 days).
CREATE TABLE point_rollup_extent (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    first_day timestamptz,
    last_day  timestamptz
);
INSERT INTO point_rollup_extent (first_day, last_day) VALUES (NULL, NULL);

CREATE FUNCTION kpi_local_day(instant timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN date_trunc('day', instant AT TIME ZONE (SELECT timezone FROM rollup_config))
       AT TIME ZONE (SELECT timezone FROM rollup_config);

CREATE FUNCTION kpi_local_month(instant timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN date_trunc('month', instant AT TIME ZONE (SELECT timezone FROM rollup_config))
       AT TIME ZONE (SELECT timezone FROM rollup_config);

CREATE FUNCTION kpi_next_local_month(instant timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (date_trunc('month', instant AT TIME ZONE (SELECT timezone FROM rollup_config)) + interval '1 month')
       AT TIME ZONE (SELECT timezone FROM rollup_config);

-- Days are local midnights. Sorted, so that concurrent writers lock the marks in one order.
CREATE FUNCTION kpi_mark_stale_days(days timestamptz[]) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO point_rollup_stale AS s (day)
    SELECT DISTINCT d FROM unnest(days) AS d WHERE d IS NOT NULL ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET generation = s.generation + 1;
    -- Only a day outside the extent writes this row: the common case (today, again) reads it and moves on.
    UPDATE point_rollup_extent
    SET first_day = least(first_day, (SELECT min(d) FROM unnest(days) AS d)),
        last_day = greatest(last_day, (SELECT max(d) FROM unnest(days) AS d))
    WHERE first_day IS NULL OR first_day > (SELECT min(d) FROM unnest(days) AS d)
       OR last_day < (SELECT max(d) FROM unnest(days) AS d);
$$;

-- Every local day from the one holding `since` to the last marked, within the extent.
CREATE FUNCTION kpi_mark_stale_since(since timestamptz) RETURNS void
LANGUAGE sql AS $$
    SELECT kpi_mark_stale_days(array_agg(d))
    FROM point_rollup_extent e,
         generate_series(greatest(kpi_local_day(since), e.first_day), e.last_day, interval '1 day') AS d
    WHERE since IS NOT NULL AND e.first_day IS NOT NULL;
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- Hypertables accept no transition tables; on TimescaleDB the ingest sink marks its batches' days.
        CREATE FUNCTION kpi_mark_inserted_heartbeats() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        DECLARE
            zone text := (SELECT timezone FROM rollup_config);
        BEGIN
            -- The zone once, not kpi_local_day() per row: that function's sub-selects are not inlined.
            PERFORM kpi_mark_stale_days(ARRAY(SELECT DISTINCT date_trunc('day', ts AT TIME ZONE zone) AT TIME ZONE zone
                                              FROM inserted));
            RETURN NULL;
        END
        $fn$;
        CREATE TRIGGER heartbeats_point_rollups_stale AFTER INSERT ON heartbeats
            REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_inserted_heartbeats();
    END IF;
END
$$;

-- Registry writes: the earliest instant at which what a point-day depends on changed — a point version's
-- categories or validity, a binding's point or validity (a device's kind never changes: registry/migrations).
-- An insert or delete changes things from its valid_from; an update that only moves valid_to (closing a
-- version, the importers' usual change) from the earlier of the two ends.
CREATE FUNCTION kpi_mark_registry_change() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    since timestamptz;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT min(valid_from) INTO since FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT min(valid_from) INTO since FROM old_rows;
    ELSIF TG_TABLE_NAME = 'key_points' THEN
        SELECT min(CASE WHEN o.point_id IS NULL THEN n.valid_from
                        WHEN n.point_id IS NULL THEN o.valid_from
                        WHEN o.categories IS DISTINCT FROM n.categories THEN least(o.valid_from, n.valid_from)
                        WHEN o.valid_to IS DISTINCT FROM n.valid_to
                            THEN least(coalesce(o.valid_to, 'infinity'), coalesce(n.valid_to, 'infinity'))
                   END) INTO since
        FROM old_rows o FULL JOIN new_rows n ON n.point_id = o.point_id AND n.valid_from = o.valid_from;
    ELSE
        SELECT min(CASE WHEN o.device_id IS NULL THEN n.valid_from
                        WHEN n.device_id IS NULL THEN o.valid_from
                        WHEN o.point_id IS DISTINCT FROM n.point_id THEN least(o.valid_from, n.valid_from)
                        WHEN o.valid_to IS DISTINCT FROM n.valid_to
                            THEN least(coalesce(o.valid_to, 'infinity'), coalesce(n.valid_to, 'infinity'))
                   END) INTO since
        FROM old_rows o FULL JOIN new_rows n ON n.device_id = o.device_id AND n.valid_from = o.valid_from;
    END IF;
    IF since IS NOT NULL AND since < 'infinity' THEN
        PERFORM kpi_mark_stale_since(since);
    END IF;
    RETURN NULL;
END
$fn$;

-- One trigger per event: PostgreSQL allows transition tables only on single-event triggers.
CREATE TRIGGER key_points_inserted_point_rollups AFTER INSERT ON key_points
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();
CREATE TRIGGER key_points_updated_point_rollups AFTER UPDATE ON key_points
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();
CREATE TRIGGER key_points_deleted_point_rollups AFTER DELETE ON key_points
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();
CREATE TRIGGER bindings_inserted_point_rollups AFTER INSERT ON bindings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();
CREATE TRIGGER bindings_updated_point_rollups AFTER UPDATE ON bindings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();
CREATE TRIGGER bindings_deleted_point_rollups AFTER DELETE ON bindings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kpi_mark_registry_change();

-- Heartbeats stored before this migration: their days are stale until the first refresh.
SELECT kpi_mark_stale_days(ARRAY(SELECT DISTINCT day FROM heartbeats_daily));
