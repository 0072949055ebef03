"""The demo's devices: how each one behaves over a stretch of time, and the fleet that keeps beating in real time
while `citykpi demo --serve` runs."""

import random
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta

from simulators.fleet import MONITOR_MEASUREMENTS, Behaviour, DeviceProfile
from simulators.run import RunReport, live
from simulators.stream import SimDevice
from simulators.transports import MqttTransport


def device_profiles(devices: list, start: datetime, hours: float, rng: random.Random, *, interval_s: int,
                    trouble_hours: tuple[float, float] = (4, 30)) -> list[DeviceProfile]:
    """Most devices healthy; the rest fail in the ways field devices do, once in the stretch of `hours` from
    `start`, for `trouble_hours` (low, high)."""
    profiles = []
    for d in devices:
        roll = rng.random()
        behaviour = Behaviour.HEALTHY
        if roll < 0.10:
            behaviour = Behaviour.OUTAGE
        elif roll < 0.18:
            behaviour = Behaviour.FAULTY
        elif roll < 0.24:
            behaviour = Behaviour.FLAPPING
        elif roll < 0.30 and d.kind in MONITOR_MEASUREMENTS:
            behaviour = Behaviour.NOT_COLLECTING
        trouble_start = start + timedelta(hours=rng.uniform(0, hours * 0.7))
        profiles.append(DeviceProfile(d.device_id, d.kind, interval_s, behaviour, trouble_start,
                                      rng.uniform(*trouble_hours)))
    return profiles


class LiveDevices:
    """The fleet beating on the wall clock from `start`, over MQTT, on a thread of its own, until `stop()`.

    Each device goes on as its profile says — an outage under way goes on, a flapping device keeps flapping, a
    monitor that does not collect still does not — and the cameras a gateway reports go out in its arrays."""

    def __init__(self, profiles: list[DeviceProfile], gateway_of: Mapping[str, str], broker_url: str,
                 start: datetime, *, seed: int) -> None:
        self._fleet = [SimDevice(p, gateway_id=gateway_of.get(p.device_id)) for p in profiles]
        self._transport = MqttTransport(broker_url, client_id="citykpi-demo-devices")
        self._start = start
        self._seed = seed
        self._stop = threading.Event()
        self.report: RunReport | None = None
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-devices")

    def _run(self) -> None:
        # A year: `live` ends at `end`, and the demo runs until it is told to stop.
        end = self._start + timedelta(days=365)
        try:
            self.report = live(self._fleet, self._transport, self._start, end, seed=self._seed, stop=self._stop)
        except BaseException as exc:  # reported by the demo, which then stops everything
            self.failure = exc

    def start(self) -> "LiveDevices":
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 130) -> None:
        """Stop beating; returns once the broker has acknowledged what was sent (`MqttTransport.close`)."""
        self._stop.set()
        self._thread.join(timeout_s)
