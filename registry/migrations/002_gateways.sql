-- A camera may report through a gateway (a VMS publishing for its cameras on gateways/{gateway_id}/heartbeats)
-- instead of on its own topic. Which gateway belongs to the binding: a camera bound to point P reports through
-- gateway G over [valid_from, valid_to), and moving it to another VMS is a new binding row like any move.
-- NULL: the device reports for itself, no gateway may report for it. Ingest refuses a gateway's heartbeat
-- for a registered device unless a binding in force at the heartbeat's ts names that gateway.
ALTER TABLE bindings ADD COLUMN gateway_id text;
