-- Each device's up hours at each point per closed local month, so that the evidence of a year (every point,
-- its devices and their up hours) reads twelve rows per device instead of 365.
--
--   point_device_monthly (category, kind, month, point_id, device_id, up_hours)
--   point_device_month_done (month)
--
-- up_hours of a row is the number of the month's buckets in which the device, of `kind`, was up while bound
-- to the point and the point was in force in `category` — the bits the evidence read counts per device-day
-- (kpi/coverage.py). Rows of 0 hours are not kept.
--
-- Why only closed months, and a separate "done" mark rather than the day marks of 030_point_rollups.sql:
-- recomputing a month's device hours reads every device-day of the month, which is not worth doing every
-- time today's heartbeats mark today stale. So the refresher computes a month once its lateness window has
-- passed and its days are fresh, and marks it done; the refresh of any of its days later (a very late
-- heartbeat, a backdated registry change) removes the mark in the same transaction that clears the day's, so
-- a month is read from here only while none of its days has changed since it was computed. Readers compute
-- the other months per device-day, as before.

CREATE TABLE point_device_monthly (
    category  text        NOT NULL,
    kind      text        NOT NULL,
    month     timestamptz NOT NULL,
    point_id  text        NOT NULL,
    device_id text        NOT NULL,
    up_hours  integer     NOT NULL,
    PRIMARY KEY (category, kind, month, point_id, device_id)
);

CREATE TABLE point_device_month_done (
    month timestamptz PRIMARY KEY
);
