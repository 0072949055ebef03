"""The one definition of a valid heartbeat (DESIGN.md, "Heartbeat contract")."""

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator

from base.vocabulary import ID_CHARACTERS, MONITOR_KINDS, DeviceKind

DEVICE_ID_PATTERN = f"^{ID_CHARACTERS}$"
# Stricter than datetime.fromisoformat, which also takes week dates and offsets without a colon.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$")


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    FAULT = "fault"


Number = StrictInt | StrictFloat


class Heartbeat(BaseModel):
    """A device's report of its own health. Describes the device, never people."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="the device's registry id")
    kind: DeviceKind = Field(description="what the device is; must agree with the registry")
    ts: datetime = Field(description="RFC 3339 with offset, or integer epoch milliseconds")
    seq: Annotated[StrictInt, Field(ge=0)] | None = Field(None, description="device's message counter")
    status: Status = Field(Status.OK, description="the device's own verdict")
    checks: dict[str, StrictBool] | None = Field(None, description="e.g. stream_ok, realtime_ok, uplink_ok")
    metrics: dict[str, Number] | None = Field(None, description="device metrics, finite numbers")
    measurements: dict[str, Number] | None = Field(None, description="what a monitor measured, finite numbers")

    @field_validator("ts", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> datetime:
        return parse_timestamp(value)

    @field_validator("metrics", "measurements")
    @classmethod
    def _finite(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        if values:
            for name, number in values.items():
                if isinstance(number, float) and not math.isfinite(number):
                    raise ValueError(f"{name} is not a finite number")
        return values

    @property
    def healthy(self) -> bool:
        return is_healthy(self.kind, self.status, self.checks, self.measurements)


class MappedHeartbeat(Heartbeat):
    """A heartbeat a mapping made of a vendor's message (ingest/mapping/): held to the same contract, except
    that its kind may be left to the registry (None), which the sink then applies."""

    kind: DeviceKind | None = Field(None, description="what the device is; None: the registry's kind")


def parse_timestamp(value: Any) -> datetime:
    """`ts` as the contract reads it; ValueError says why not. Shared with the hot-path decoder."""
    # bool is an int in Python; a `true` timestamp is a device bug, not 1 ms after the epoch.
    if isinstance(value, bool):
        raise ValueError("must be an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"epoch milliseconds {value} out of range") from exc
    if isinstance(value, str):
        match = _RFC3339.match(value)
        if match is None:
            raise ValueError(f"{value[:40]!r} is not RFC 3339")
        whole, fraction, offset = match.groups()
        if offset is None:
            raise ValueError(f"{value[:40]!r} has no UTC offset")
        # Python keeps microseconds; nanosecond digits beyond them are cut, not rounded.
        text = whole + (fraction or "")[:7] + ("+00:00" if offset in "Zz" else offset)
        try:
            return datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{value[:40]!r} is not a valid date and time") from exc
    raise ValueError("must be an RFC 3339 string or integer epoch milliseconds")


def is_healthy(kind: str, status: str, checks: dict[str, bool] | None, measurements: dict | None) -> bool:
    """DESIGN: status is not fault, every reported check is true, and a monitor is collecting."""
    if status == Status.FAULT:
        return False
    if checks and not all(checks.values()):
        return False
    if kind in MONITOR_KINDS and not measurements:
        return False
    return True
