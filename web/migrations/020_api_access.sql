-- Who may write through the API, and what was written. A token belongs to one agency and may submit only
-- the indicators that agency reports (or the subset named in `indicator_codes`). Tokens are stored as
-- SHA-256 digests: they are 256 random bits, so a fast hash suffices and a leaked table grants nothing.
CREATE TABLE api_tokens (
    id              bigserial   PRIMARY KEY,
    agency_id       text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    token_sha256    text        NOT NULL UNIQUE,
    indicator_codes text[],
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

-- Every write attempt, accepted or refused: who, what, when, from where, and the outcome.
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    token_id  bigint      REFERENCES api_tokens (id),
    agency_id text,
    action    text        NOT NULL,
    remote    text        NOT NULL,
    status    integer     NOT NULL,
    detail    jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
