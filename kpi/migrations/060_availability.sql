-- Availability messages as up hours, beside the heartbeats' (README, "Availability messages"):
--
--   availability_daily (device_id, day, up_mask)      each local day's hours a device was online, as bits
--   availability_open  (device_id, since, written_to) an online state not ended yet, and how far it is written
--   device_up_rows     (device_id, day, heartbeat_mask, availability_mask)  what the coverage reads
--
-- A device is online from an online event (ingest's availability_events) until its next event, in the order
-- of their ts, whatever order they arrived in. An hour is up by availability when the device was online at
-- an instant of it, as one healthy heartbeat anywhere in the hour makes it up. A state still open (the last
-- event says online) is written up to the end of the hour holding "now" by kpi_availability_extend, which
-- every read and every refresh runs first (kpi/availability.py): never ahead of the hour it is in.
--
-- Plain tables and one SQL on both backends, so TimescaleDB and PostgreSQL give the same bits. Every rewrite
-- marks the days it changed stale for the point rollups (030_point_rollups.sql), as a late heartbeat does.
-- Whether a device's availability counts at all is the registry's kind_rules, applied when read
-- (device_up_rows), so that changing a rule needs no rewrite, only the point rollups redone.

CREATE TABLE availability_daily (
    device_id text        NOT NULL,
    day       timestamptz NOT NULL,
    up_mask   bigint      NOT NULL,
    PRIMARY KEY (device_id, day)
);

CREATE TABLE availability_open (
    device_id  text        PRIMARY KEY,
    since      timestamptz NOT NULL,
    written_to timestamptz NOT NULL
);

-- The hours of the local day starting at day_start (buckets day_start + k hours) that [a, b) has an instant
-- in, as bits k; a and b lie within the day. (kpi_hour_mask asks another question: which buckets *start* in
-- [a, b), the rule for a binding or a point in force.)
CREATE FUNCTION kpi_overlap_mask(day_start timestamptz, a timestamptz, b timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN b <= a THEN 0
            ELSE (1::bigint << least(ceil(date_part('epoch', b - day_start) / 3600), 25)::int)
                 - (1::bigint << greatest(floor(date_part('epoch', a - day_start) / 3600), 0)::int) END;

-- The up bits per local day of the online intervals [s, e) given as arrays, each cut to the days from
-- `from_day` on.
CREATE FUNCTION kpi_availability_days(starts timestamptz[], ends timestamptz[], from_day timestamptz)
RETURNS TABLE (day timestamptz, up_mask bigint)
LANGUAGE sql STABLE AS $$
    WITH zone AS (SELECT timezone AS z FROM rollup_config),
    intervals AS (
        SELECT greatest(iv.s, from_day) AS s, iv.e FROM unnest(starts, ends) AS iv(s, e) WHERE iv.e > greatest(iv.s, from_day)
    ),
    days AS (
        -- Local dates, then their midnights: a day is 23, 24 or 25 hours in a zone with summer time.
        SELECT iv.s, iv.e, g.d AT TIME ZONE zone.z AS day, (g.d + interval '1 day') AT TIME ZONE zone.z AS next_day
        FROM intervals iv, zone,
             generate_series((iv.s AT TIME ZONE zone.z)::date::timestamp,
                             ((iv.e - interval '1 microsecond') AT TIME ZONE zone.z)::date::timestamp,
                             interval '1 day') AS g(d)
    )
    SELECT day, bit_or(kpi_overlap_mask(day, greatest(s, day), least(e, next_day)))
    FROM days
    GROUP BY day
$$;

-- One device's availability_daily rows from the local day holding `from_ts` on, rewritten from its events:
-- every interval reaching into those days, its open one as far as it was written (or from its start, when
-- the event it starts with is new). Marks every day it cleared or wrote stale. Serialised per device, with
-- kpi_availability_extend, by an advisory lock.
CREATE FUNCTION kpi_availability_rewrite(p_device text, from_ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    zone text := (SELECT timezone FROM rollup_config);
    from_day timestamptz := date_trunc('day', from_ts AT TIME ZONE zone) AT TIME ZONE zone;
    first_event timestamptz;
    last_ts timestamptz;
    last_online boolean;
    open_to timestamptz;
    starts timestamptz[];
    ends timestamptz[];
    touched timestamptz[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('citykpi availability'), hashtext(p_device));
    SELECT ts, online INTO last_ts, last_online
    FROM availability_events WHERE device_id = p_device ORDER BY ts DESC LIMIT 1;
    IF last_online THEN
        -- Online all along since whatever was written: those hours stay written.
        open_to := greatest(last_ts, coalesce((SELECT written_to FROM availability_open WHERE device_id = p_device),
                                              last_ts));
    END IF;
    -- The interval in force at from_day's midnight starts with the last event at or before it.
    first_event := coalesce((SELECT max(ts) FROM availability_events WHERE device_id = p_device AND ts <= from_day),
                            from_day);
    SELECT array_agg(s ORDER BY s), array_agg(e ORDER BY s) INTO starts, ends
    FROM (SELECT ts AS s, coalesce(lead(ts) OVER (ORDER BY ts), open_to) AS e, online
          FROM availability_events WHERE device_id = p_device AND ts >= first_event) iv
    WHERE online AND e IS NOT NULL;
    WITH cleared AS (
        DELETE FROM availability_daily WHERE device_id = p_device AND day >= from_day RETURNING day
    ),
    written AS (
        INSERT INTO availability_daily (device_id, day, up_mask)
        SELECT p_device, w.day, w.up_mask FROM kpi_availability_days(starts, ends, from_day) w WHERE w.up_mask <> 0
        RETURNING day
    )
    SELECT array_agg(DISTINCT day) INTO touched FROM (SELECT day FROM cleared UNION ALL SELECT day FROM written) t;
    IF touched IS NOT NULL THEN
        PERFORM kpi_mark_stale_days(touched);
    END IF;
    IF last_online THEN
        INSERT INTO availability_open AS o (device_id, since, written_to) VALUES (p_device, last_ts, open_to)
        ON CONFLICT (device_id) DO UPDATE SET since = excluded.since, written_to = excluded.written_to;
    ELSE
        DELETE FROM availability_open WHERE device_id = p_device;
    END IF;
END
$fn$;

CREATE FUNCTION kpi_availability_events_inserted() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
BEGIN
    -- In device order, so that concurrent writers take the per-device locks in one order.
    FOR r IN SELECT device_id, min(ts) AS first_ts FROM inserted GROUP BY device_id ORDER BY device_id LOOP
        PERFORM kpi_availability_rewrite(r.device_id, r.first_ts);
    END LOOP;
    RETURN NULL;
END
$fn$;

-- A plain table on both backends, so one statement trigger sees every writer's rows, late ones included.
CREATE TRIGGER availability_events_rollup AFTER INSERT ON availability_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_availability_events_inserted();

-- Every open online state written up to the end of the hour holding `now_ts` (the device is online in that
-- hour, now). Returns how many devices it wrote. A `now_ts` before what is written changes nothing.
CREATE FUNCTION kpi_availability_extend(now_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    zone text := (SELECT timezone FROM rollup_config);
    hour_end timestamptz := (date_trunc('hour', now_ts AT TIME ZONE zone) + interval '1 hour') AT TIME ZONE zone;
    r record;
    done integer := 0;
    touched timestamptz[];
BEGIN
    FOR r IN SELECT device_id FROM availability_open WHERE written_to < hour_end ORDER BY device_id LOOP
        PERFORM pg_advisory_xact_lock(hashtext('citykpi availability'), hashtext(r.device_id));
        -- Read again under the lock: a rewrite may have closed or moved it meanwhile.
        WITH open_state AS (
            SELECT since, written_to FROM availability_open WHERE device_id = r.device_id AND written_to < hour_end
        ),
        written AS (
            INSERT INTO availability_daily AS a (device_id, day, up_mask)
            SELECT r.device_id, w.day, w.up_mask
            FROM open_state o,
                 kpi_availability_days(ARRAY[greatest(o.since, o.written_to)], ARRAY[hour_end],
                                       '-infinity'::timestamptz) w
            WHERE w.up_mask <> 0
            ON CONFLICT (device_id, day) DO UPDATE SET up_mask = a.up_mask | excluded.up_mask
            WHERE a.up_mask | excluded.up_mask <> a.up_mask
            RETURNING a.day
        )
        SELECT array_agg(day) INTO touched FROM written;
        IF touched IS NOT NULL THEN
            PERFORM kpi_mark_stale_days(touched);
        END IF;
        UPDATE availability_open SET written_to = hour_end WHERE device_id = r.device_id AND written_to < hour_end;
        IF FOUND THEN
            done := done + 1;
        END IF;
    END LOOP;
    RETURN done;
END
$fn$;

-- What a coverage read and a refresh take a device's up hours from: its heartbeats' bits and, where the
-- registry's kind_rules let availability count for its kind, its availability bits, in separate columns so
-- that the evidence can say which hours only availability made up. Not grouped: callers OR the rows of a
-- device-day (a join on device and day then still reaches each branch's primary key).
CREATE VIEW device_up_rows AS
SELECT device_id, day, up_mask AS heartbeat_mask, 0::bigint AS availability_mask FROM heartbeats_daily
UNION ALL
SELECT a.device_id, a.day, 0::bigint, a.up_mask
FROM availability_daily a
JOIN devices d ON d.device_id = a.device_id
JOIN kind_rules k ON k.kind = d.kind AND k.availability_counts;

-- The hours of each device at each point per closed month that only availability made up (evidence).
ALTER TABLE point_device_monthly ADD COLUMN availability_hours integer NOT NULL DEFAULT 0;

-- A rule changed: every day ever marked is redone.
CREATE FUNCTION kpi_kind_rules_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM kpi_mark_stale_since((SELECT first_day FROM point_rollup_extent));
    RETURN NULL;
END
$fn$;
CREATE TRIGGER kind_rules_point_rollups_stale AFTER INSERT OR UPDATE OR DELETE ON kind_rules
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_kind_rules_changed();
