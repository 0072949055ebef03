-- What the registry says of each device kind beyond its category: whether an availability message alone
-- (a camera's VMS saying it is online, a device's retained MQTT online topic) may make an hour up, or the
-- device must still deliver heartbeats. DESIGN: a camera counts when "connected to the monitoring centre",
-- which its online state is; a monitor counts only while it measures ("measurements is non-empty"), which an
-- online state does not show. Wi-Fi hotspots and bus-stop displays serve while connected. A change here
-- recomputes every day (kpi/migrations/060_availability.sql): it changes what past numbers mean, so it is a
-- decision for whoever signs them, made by the database's owner, not a setting an operator flips.
CREATE TABLE kind_rules (
    kind                text    PRIMARY KEY CHECK (kind IN ('air_monitor', 'water_monitor', 'wastewater_station',
                                                            'cctv', 'wifi_ap', 'bus_display')),
    availability_counts boolean NOT NULL
);
INSERT INTO kind_rules (kind, availability_counts) VALUES
    ('cctv', true), ('wifi_ap', true), ('bus_display', true),
    ('air_monitor', false), ('water_monitor', false), ('wastewater_station', false);
