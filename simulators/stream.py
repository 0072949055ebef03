"""A fleet's messages in the order they leave the devices: (send time, topic, key, body).

Heartbeat timestamps say when a device measured; the send time says when the message goes out. The two
differ for store-and-forward devices (late, out of order) and for skewed clocks, as in the field.
"""

import heapq
import json
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from simulators.faults import FaultShares
from simulators.fleet import MONITOR_MEASUREMENTS, Behaviour, DeviceProfile, heartbeats
from simulators.vendor_formats import thingsboard


@dataclass(frozen=True, order=True)
class Outgoing:
    send_at: datetime
    topic: str
    key: str
    body: bytes


@dataclass(frozen=True)
class SimDevice:
    profile: DeviceProfile
    skew: timedelta = timedelta(0)
    duplicates: bool = False
    store_and_forward: bool = False
    malformed: bool = False
    gateway_id: str | None = None


def draw_gateways(devices: Iterable[tuple[str, str]], share: float, *, seed: int) -> dict[str, str]:
    """(device_id, kind) → which cameras a VMS (`vms-1` … `vms-3`) reports, `share` of them. Drawn per device
    from (seed, device_id): the province's registry files and every process of a run agree on it."""
    routed = {}
    for device_id, kind in devices:
        if kind != "cctv":
            continue
        rng = random.Random(f"{seed}:{device_id}:gateway")
        if rng.random() < share:
            routed[device_id] = f"vms-{rng.randint(1, 3)}"
    return routed


def assign_faults(devices: list[tuple[str, str, int]], shares: FaultShares, start: datetime, hours: float,
                  *, seed: int, gateways: Mapping[str, str] | None = None) -> list[SimDevice]:
    """(device_id, kind, interval_s) → devices with behaviours drawn by share.

    Each device draws from its own generator seeded by (seed, device_id): the same device behaves the
    same whichever process of a multi-process run simulates it. `gateways` (device_id → gateway_id) is the
    registry's routing, followed as it is; without it, `shares.gateway_cameras` of the cameras are drawn.
    """
    if gateways is None:
        gateways = draw_gateways(((d, k) for d, k, _ in devices), shares.gateway_cameras, seed=seed)
    fleet = []
    for device_id, kind, interval_s in devices:
        rng = random.Random(f"{seed}:{device_id}")
        roll = rng.random()
        behaviour = Behaviour.HEALTHY
        for name, candidate in (("outage", Behaviour.OUTAGE), ("faulty", Behaviour.FAULTY),
                                ("flapping", Behaviour.FLAPPING), ("not_collecting", Behaviour.NOT_COLLECTING)):
            share = getattr(shares, name)
            if roll < share and (candidate is not Behaviour.NOT_COLLECTING or kind in MONITOR_MEASUREMENTS):
                behaviour = candidate
                break
            roll -= share
        trouble_start = start + timedelta(hours=rng.uniform(0, max(hours * 0.7, 0.1)))
        profile = DeviceProfile(device_id, kind, interval_s, behaviour, trouble_start, rng.uniform(2, 30))
        skew = timedelta(minutes=rng.choice((-15, -4, 3, 7, 12))) if rng.random() < shares.clock_skew else timedelta(0)
        fleet.append(SimDevice(profile, skew, rng.random() < shares.duplicates,
                               rng.random() < shares.store_and_forward, rng.random() < shares.malformed,
                               gateways.get(device_id)))
    return fleet


def _device_messages(device: SimDevice, start: datetime, end: datetime, rng: random.Random,
                     vendor: str = "native") -> Iterator[Outgoing]:
    profile = device.profile
    gap_start = profile.trouble_start or start
    gap_end = gap_start + timedelta(hours=profile.trouble_hours)
    held: list[tuple[datetime, dict]] = []
    # A store-and-forward device keeps talking to itself during its link outage; its Behaviour is not OUTAGE.
    source = replace(profile, behaviour=Behaviour.HEALTHY) if device.store_and_forward else profile
    for body in heartbeats(source, start, end, rng):
        measured = datetime.fromisoformat(body["ts"])
        if device.skew:
            body["ts"] = (measured + device.skew).isoformat(timespec="milliseconds")
        if device.store_and_forward and gap_start <= measured < gap_end:
            held.append((measured, body))
            continue
        if held:
            # The link is back: the backlog goes out now, newest first as many loggers flush it.
            for _, old in sorted(held, key=lambda item: item[0], reverse=True):
                yield _encode(device, measured, old, vendor=vendor)
            held.clear()
        yield _encode(device, measured, body, rng, vendor=vendor)
        if device.duplicates and rng.random() < 0.1:
            yield _encode(device, measured + timedelta(seconds=1), body, vendor=vendor)


def _encode(device: SimDevice, send_at: datetime, body: dict, rng: random.Random | None = None, *,
            vendor: str = "native") -> Outgoing:
    device_id = device.profile.device_id
    if vendor == "thingsboard":
        topic, data = thingsboard(device_id, body)
        kind_broken = data[: len(data) // 3]  # no kind to break: cut instead, so the same draws are refused
    else:
        topic, data = f"devices/{device_id}/heartbeat", json.dumps(body, ensure_ascii=False).encode()
        kind_broken = data.replace(b'"kind": "', b'"kind": "x-')
    if device.malformed and rng is not None and rng.random() < 0.05:
        data = rng.choice((data[: len(data) // 2], data.replace(b'"ts"', b'"time"'), kind_broken))
    return Outgoing(send_at, topic, device_id, data)


def fleet_messages(fleet: list[SimDevice], start: datetime, end: datetime, *, seed: int,
                   gateway_window: timedelta = timedelta(seconds=60), vendor: str = "native") -> Iterator[Outgoing]:
    """Every device's messages merged by send time; a gateway's cameras go out together as one array (in our
    own format only: in a `vendor` format every device sends its own messages)."""
    streams = [_device_messages(d, start, end, random.Random(f"{seed}:{d.profile.device_id}:messages"), vendor)
               for d in fleet]
    merged = heapq.merge(*streams, key=lambda m: m.send_at)
    gateway_of = {d.profile.device_id: d.gateway_id for d in fleet if d.gateway_id} if vendor == "native" else {}
    for message in _batch_gateways(merged, gateway_of, window=gateway_window):
        # The last gateway batches would otherwise leave after the run has ended.
        yield message if message.send_at <= end else replace(message, send_at=end)


def _batch_gateways(messages: Iterator[Outgoing], gateway_of: dict[str, str],
                    window: timedelta) -> Iterator[Outgoing]:
    """A VMS reports its cameras once a window: their heartbeats are held and sent as one JSON array."""
    pending: dict[str, tuple[datetime, list[bytes]]] = {}
    for message in messages:
        for gateway, (opened, bodies) in list(pending.items()):
            if message.send_at - opened >= window:
                yield _gateway_message(gateway, opened + window, bodies)
                del pending[gateway]
        gateway = gateway_of.get(message.key)
        if gateway is None:
            yield message
            continue
        pending.setdefault(gateway, (message.send_at, []))[1].append(message.body)
    for gateway, (opened, bodies) in pending.items():
        yield _gateway_message(gateway, opened + window, bodies)


def _gateway_message(gateway: str, send_at: datetime, bodies: list[bytes]) -> Outgoing:
    return Outgoing(send_at, f"gateways/{gateway}/heartbeats", gateway, b"[" + b",".join(bodies) + b"]")
