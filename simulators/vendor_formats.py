"""A simulated heartbeat as a vendor would send it, for the mappings shipped in deploy/examples/mappings/:
the benchmarks and the tests then drive the mapped path with the fleet's behaviour unchanged.

Only what a KPI reads survives the translation (time, health, measurements); `seq` and a `degraded` status,
which ThingsBoard telemetry has no place for, do not.
"""

import json
from datetime import datetime
from typing import Any

FORMATS = ("native", "thingsboard")


def thingsboard(device_id: str, body: dict[str, Any]) -> tuple[str, bytes]:
    """ThingsBoard telemetry (deploy/examples/mappings/thingsboard.toml): `online` carries the device's own
    verdict and its checks, the values its measurements and metrics."""
    values: dict[str, Any] = dict(body.get("measurements") or {})
    values.update(body.get("metrics") or {})
    values["online"] = body.get("status") != "fault" and all((body.get("checks") or {}).values())
    ts = body["ts"]
    epoch_ms = ts if type(ts) is int else int(datetime.fromisoformat(ts).timestamp() * 1000)
    return f"tb/{device_id}/telemetry", json.dumps({"ts": epoch_ms, "values": values}, ensure_ascii=False).encode()
