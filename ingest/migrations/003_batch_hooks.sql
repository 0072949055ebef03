-- Who must hear of each batch the ingest sink stores. A package that derives data from heartbeats (kpi's
-- rollups) sees every insert through a statement trigger on `heartbeats` with a transition table, except on
-- TimescaleDB, whose hypertables accept no such trigger. There the sink calls each function named here in the
-- batch's transaction, right after its INSERT, with the distinct UTC hours (date_trunc('hour', ts, 'UTC')) of
-- the batch's heartbeats. A hook takes one timestamptz[] and returns void; the package that owns it registers
-- it from a migration of its own.
CREATE TABLE heartbeat_batch_hooks (
    function_name text PRIMARY KEY
);
