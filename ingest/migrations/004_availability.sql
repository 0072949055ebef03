-- Availability messages: a device's retained online/offline topic and its MQTT Last Will, read through an
-- availability mapping (ingest/mapping/), one row per state change. Append-only, like heartbeats; the KPI
-- package turns them into up hours (kpi/migrations/060_availability.sql).
--
-- `ts` is the message's own time when its mapping reads one, else the time ingest received it: a Last Will
-- carries no time, and the broker publishes it when it notices the device gone. `retained`: the broker
-- delivered a retained message (on subscribing), a state set at some earlier, unknown time.
-- One row per (device_id, ts): a redelivery of the same message (QoS 1) is absorbed by the key; a message
-- repeating the device's latest state is not stored (the sink's insert), which is what a retained message
-- redelivered on every reconnect mostly is.
CREATE TABLE availability_events (
    device_id   text        NOT NULL,
    ts          timestamptz NOT NULL,
    online      boolean     NOT NULL,
    retained    boolean     NOT NULL,
    source      text        NOT NULL,
    origin      text        NOT NULL,
    received_at timestamptz NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
);
