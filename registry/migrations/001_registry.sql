-- The registry: the denominators of every sensor indicator. Nothing here is ever deleted; a row that
-- stops being true is closed by setting valid_to, so a KPI for a past period sees the registry as it was.
-- Validity intervals are half-open: [valid_from, valid_to), valid_to NULL = still in force.

CREATE TABLE admin_units (
    code            text        NOT NULL,
    name            text        NOT NULL,
    parent_code     text,
    level           text        NOT NULL CHECK (level IN ('province', 'district', 'commune')),
    valid_from      timestamptz NOT NULL DEFAULT '-infinity',
    valid_to        timestamptz,
    successor_codes text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (code, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- One row per version of a key point; a changed name, unit or category list is a new version.
CREATE TABLE key_points (
    point_id    text             NOT NULL,
    name        text             NOT NULL,
    categories  text[]           NOT NULL,
    admin_unit  text,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    valid_from  timestamptz      NOT NULL,
    valid_to    timestamptz,
    PRIMARY KEY (point_id, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX key_points_categories_idx ON key_points USING gin (categories);

-- A device's kind decides which indicator it can serve; it does not change over the device's life.
CREATE TABLE devices (
    device_id text PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('air_monitor', 'water_monitor', 'wastewater_station',
                                            'cctv', 'wifi_ap', 'bus_display'))
);

-- A device bound to a point over [valid_from, valid_to); moving a device is a new row.
CREATE TABLE bindings (
    device_id            text        NOT NULL REFERENCES devices (device_id),
    point_id             text        NOT NULL,
    valid_from           timestamptz NOT NULL,
    valid_to             timestamptz,
    heartbeat_interval_s integer     CHECK (heartbeat_interval_s > 0),
    PRIMARY KEY (device_id, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX bindings_point_idx ON bindings (point_id);
