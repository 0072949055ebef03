-- Accepted heartbeats, one row per (device_id, ts): a duplicate delivery is absorbed by the key and the
-- first stored wins. `healthy` is decided at ingest from the DESIGN rule, so every reader agrees on it.
CREATE TABLE heartbeats (
    device_id    text        NOT NULL,
    ts           timestamptz NOT NULL,
    kind         text        NOT NULL,
    healthy      boolean     NOT NULL,
    status       text        NOT NULL,
    seq          bigint,
    checks       jsonb,
    metrics      jsonb,
    measurements jsonb,
    source       text        NOT NULL,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, ts)
);
CREATE INDEX heartbeats_ts_idx ON heartbeats (ts DESC);

-- Every rejected message, with its reason and its bytes: nothing is dropped silently.
CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL,
    source      text        NOT NULL,
    origin      text        NOT NULL,
    reason      text        NOT NULL,
    detail      text        NOT NULL DEFAULT '',
    raw         bytea       NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at);
