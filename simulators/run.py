"""Running a simulated fleet: as fast as possible over a past window (backfill), or in real time at a speed."""

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from base.terminal import Progress
from simulators.faults import FaultShares
from simulators.stream import SimDevice, assign_faults, fleet_messages
from simulators.transports import Transport


@dataclass(frozen=True)
class RunReport:
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return f"{self.messages} messages in {self.seconds:.1f} s ({self.rate:,.0f}/s)"


def build_fleet(devices: list[tuple[str, str, int]], shares: FaultShares, start: datetime, end: datetime,
                *, seed: int, speed: float = 1.0, gateways: Mapping[str, str] | None = None) -> list[SimDevice]:
    """At speed X devices beat X times as often and their troubles last 1/X as long, timestamps stay real.
    `gateways`: the registry's device_id → gateway_id, else drawn (`stream.assign_faults`)."""
    hours = (end - start).total_seconds() / 3600 * speed
    fleet = assign_faults(devices, shares, start, hours, seed=seed, gateways=gateways)
    if speed == 1.0:
        return fleet
    scaled = []
    for device in fleet:
        p = device.profile
        trouble_start = start + (p.trouble_start - start) / speed if p.trouble_start else None
        scaled.append(replace(device, profile=replace(p, interval_s=max(p.interval_s / speed, 0.001),
                                                       trouble_start=trouble_start,
                                                       trouble_hours=p.trouble_hours / speed)))
    return scaled


def backfill(fleet: list[SimDevice], transport: Transport, start: datetime, end: datetime, *, seed: int,
             progress: Progress | None = None, vendor: str = "native") -> RunReport:
    """History at full speed: timestamps in [start, end), sent now (mind the ingest's lateness window)."""
    began = time.perf_counter()
    count = 0
    for message in fleet_messages(fleet, start, end, seed=seed, vendor=vendor):
        transport.send(message)
        count += 1
        if progress is not None:
            progress.advance()
    transport.close()
    return RunReport(count, time.perf_counter() - began)


def live(fleet: list[SimDevice], transport: Transport, start: datetime, end: datetime, *, seed: int,
         speed: float = 1.0, progress: Progress | None = None, stop: threading.Event | None = None,
         vendor: str = "native") -> RunReport:
    """Each message leaves when its send time comes on the wall clock; stops by itself at `end`, or as soon as
    `stop` is set (what was sent is still flushed to the broker)."""
    stop = stop or threading.Event()
    began = time.perf_counter()
    count = 0
    for message in fleet_messages(fleet, start, end, seed=seed, gateway_window=timedelta(seconds=60 / speed),
                                  vendor=vendor):
        wait = (message.send_at - datetime.now(UTC)).total_seconds()
        if stop.wait(max(wait, 0)):  # pacing a load generator to the wall clock, not synchronising a test
            break
        transport.send(message)
        count += 1
        if progress is not None:
            progress.set(int((datetime.now(UTC) - start).total_seconds()))
    if progress is not None:
        progress.set(progress.total)
    transport.close()
    return RunReport(count, time.perf_counter() - began)
