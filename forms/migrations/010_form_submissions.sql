-- Agency submissions for the form-based indicators. Nothing is overwritten: a resubmission for the same
-- indicator, period, agency and reporting unit supersedes the earlier one, which stays with its file.

-- The file as received, byte for byte, with who sent it: the provenance an auditor asks for.
CREATE TABLE form_files (
    id           bigserial   PRIMARY KEY,
    file_name    text        NOT NULL,
    sha256       text        NOT NULL,
    content      bytea       NOT NULL,
    submitted_by text        NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    channel      text        NOT NULL CHECK (channel IN ('cli', 'api'))
);

CREATE TABLE form_submissions (
    id             bigserial   PRIMARY KEY,
    file_id        bigint      NOT NULL REFERENCES form_files (id),
    catalog_id     text        NOT NULL,
    indicator_code text        NOT NULL,
    period         text        NOT NULL,
    agency_id      text        NOT NULL,
    -- '' when the agency reports for the whole province; an admin unit code when it reports for its area.
    reporting_unit text        NOT NULL DEFAULT '',
    inputs         jsonb       NOT NULL,
    submitted_at   timestamptz NOT NULL,
    superseded_at  timestamptz,
    superseded_by  bigint      REFERENCES form_submissions (id)
);
-- At most one current submission per indicator, period, agency and unit.
CREATE UNIQUE INDEX form_submissions_current_idx
    ON form_submissions (catalog_id, indicator_code, period, agency_id, reporting_unit)
    WHERE superseded_at IS NULL;
CREATE INDEX form_submissions_period_idx ON form_submissions (catalog_id, period, indicator_code);
