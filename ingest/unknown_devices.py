"""Devices that send heartbeats the registry does not know (`citykpi registry unknown-devices`).

DESIGN: heartbeats from devices not in the registry "are stored, cover nothing, and are counted in the metrics
and listed for operators so that they can be registered". Reads the registry's `devices`.
"""

import psycopg

_UNKNOWN_DEVICES = """
SELECT h.device_id, min(h.kind) AS kind, count(*) AS heartbeats, max(h.ts) AS last_ts
FROM heartbeats h
WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = h.device_id)
GROUP BY h.device_id
ORDER BY last_ts DESC
"""


def unknown_devices(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(_UNKNOWN_DEVICES).fetchall()
