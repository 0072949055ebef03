"""Runs the registry's probes and hands each answer to the sink as a heartbeat (`source = 'probe'`).

The probes are those of the bindings in force (`bindings.probe`), re-read as soon as a registry import says it
changed bindings (NOTIFY on base.vocabulary.REGISTRY_CHANGED_CHANNEL) and every `reload_s` in any case (a
change written by hand, a notification missed while the connection was down): a probe added, changed or
closed in the registry starts, changes or stops then. Each runs on its binding's heartbeat
interval (else its kind's), first at a random point of the interval so that ten thousand probes do not start
together, then every interval with a little jitter; at most `concurrency` run at once, each within
`timeout_s`. A probe still waiting for a slot one interval after it was due is overdue
(`citykpi_probes_overdue`): the prober is short of slots or of CPU.

Answers wait to be handed to the sink in batches; when the sink cannot take them (the database down, the
hand-over full) about `max_pending` wait (plus one batch being handed over), and the probes hold back until
there is room again (they become overdue, which says so) rather than fill the memory with answers nobody can
store.

A probe's heartbeat: `status` ok when the device answered as expected, else fault; `checks.answered`;
`metrics.latency_ms` and `metrics.failure_code` (checks.FAILURES). Its kind is the registry's. It goes through
the sink like any heartbeat: de-duplicated, judged against the registry, dead-lettered when refused.
"""

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from base.db import connect
from base.probe_target import ProbeTarget, ProbeTargetError, parse_probe
from base.vocabulary import DEFAULT_HEARTBEAT_INTERVAL_S, REGISTRY_CHANGED_CHANNEL, DeviceKind
from ingest import metrics
from ingest.decode import DecodeStage
from ingest.handoff import Handoff
from ingest.loop_thread import LoopThread
from ingest.message import Accepted, Decoded, Message
from ingest.probes.checks import Outcome, run_probe
from ingest.schema import Status, is_healthy

log = logging.getLogger(__name__)

_IN_FORCE = """
SELECT b.device_id, d.kind, b.probe, b.heartbeat_interval_s
FROM bindings b JOIN devices d USING (device_id)
WHERE b.probe IS NOT NULL AND b.valid_from <= now() AND (b.valid_to IS NULL OR b.valid_to > now())
ORDER BY b.device_id
"""


@dataclass(frozen=True)
class Probe:
    device_id: str
    kind: str
    target: ProbeTarget
    interval_s: float


def _noop() -> None:
    """A probe's heartbeat has no broker to acknowledge."""


class ProbeSource(LoopThread):
    name = "probes"
    _thread_name = "citykpi-probes"
    _described_as = "the probe source"

    def __init__(self, database_url: str, *, concurrency: int = 200, timeout_s: float = 5.0, reload_s: float = 30.0,
                 max_pending: int = 10_000, clock: Callable[[], datetime] | None = None,
                 seed: int | None = None) -> None:
        self.database_url = database_url
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.reload_s = reload_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.connected = threading.Event()
        self.last_error: str | None = None
        self._init_loop_thread()
        # Probe runs so far, and reads of the registry (the tests wait on them rather than on time).
        self.runs = 0
        self.loads = 0
        # Whether the registry's change notifications reach us now.
        self.listening = False
        self.probes: dict[str, Probe] = {}
        self._random = random.Random(seed)
        self._accepting = threading.Event()
        self._handoff: Handoff | None = None
        self.max_pending = max_pending
        self._results: list[Message] = []
        self._room: asyncio.Event | None = None   # made on the loop's thread
        # Probes waiting for room among the pending answers (the tests wait on it rather than on time).
        self.held_back = 0
        self._due: dict[str, float] = {}

    def start(self, deliver_to: Handoff, decode: DecodeStage) -> None:
        self._handoff = deliver_to
        self._accepting.set()
        self._start_loop_thread()

    def pause(self) -> None:
        """Start no more probes; answers already in are still handed over."""
        self._accepting.clear()

    def close(self, timeout_s: float = 15) -> None:
        self.pause()
        self._stop_loop_thread(timeout_s)

    async def _run(self) -> None:
        assert self._stop is not None
        slots = asyncio.Semaphore(self.concurrency)
        self._room = asyncio.Event()
        self._room.set()
        tasks: dict[str, tuple[Probe, asyncio.Task]] = {}
        flusher = asyncio.create_task(self._flush_forever())
        registry_changed = asyncio.Event()
        listener = asyncio.create_task(self._listen(registry_changed))
        next_load = 0.0
        try:
            while not self._stop.is_set():
                if registry_changed.is_set():
                    registry_changed.clear()
                    next_load = 0.0
                if time.monotonic() >= next_load:
                    loaded = await asyncio.to_thread(self._load)
                    next_load = time.monotonic() + (self.reload_s if loaded is not None else min(self.reload_s, 2))
                    if loaded is not None:
                        self._apply(loaded, tasks, slots)
                metrics.PROBES_OVERDUE.set(self._overdue())
                try:
                    await asyncio.wait_for(self._stop.wait(), 0.5)
                except TimeoutError:
                    pass
        finally:
            for _probe, task in tasks.values():
                task.cancel()
            await asyncio.gather(*(task for _probe, task in tasks.values()), return_exceptions=True)
            flusher.cancel()
            listener.cancel()
            await asyncio.gather(flusher, listener, return_exceptions=True)
            await self._flush()

    async def _listen(self, registry_changed: asyncio.Event) -> None:
        """Sets `registry_changed` when the registry says an import changed bindings; the periodic re-read stays,
        for a notification sent while this connection was down (a reconnection reloads too)."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True,
                                                                 application_name="citykpi-probe") as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REGISTRY_CHANGED_CHANNEL)))
                    registry_changed.set()
                    self.listening = True
                    while True:
                        async for _notify in conn.notifies(timeout=30):
                            registry_changed.set()
            except (psycopg.Error, OSError):
                self.listening = False
                await asyncio.sleep(5)

    def _load(self) -> dict[str, Probe] | None:
        """The probes in force, or None when the registry could not be read (the running ones go on)."""
        try:
            with connect(self.database_url) as conn:
                rows = conn.execute(_IN_FORCE).fetchall()
        except psycopg.Error as exc:
            reason = f"registry unreachable: {str(exc).strip()[:200]}"
            if reason != self.last_error:
                log.warning("probes: %s", reason)
            self.last_error = reason
            self.connected.clear()
            return None
        probes = {}
        for r in rows:
            try:  # checked at import; a row written around the import is skipped, said once a load
                target = parse_probe(r["probe"])
            except ProbeTargetError as exc:
                log.warning("probes: %s: %r cannot be run: %s", r["device_id"], r["probe"], exc)
                continue
            interval = r["heartbeat_interval_s"] or DEFAULT_HEARTBEAT_INTERVAL_S.get(r["kind"], 60)
            probes[r["device_id"]] = Probe(r["device_id"], r["kind"], target, float(interval))
        self.last_error = None
        self.connected.set()
        self.loads += 1
        return probes

    def _apply(self, loaded: dict[str, Probe], tasks: dict[str, tuple[Probe, asyncio.Task]],
               slots: asyncio.Semaphore) -> None:
        for device_id in [d for d, (probe, _task) in tasks.items() if loaded.get(d) != probe]:
            tasks.pop(device_id)[1].cancel()
            self._due.pop(device_id, None)
        for device_id, probe in loaded.items():
            if device_id not in tasks:
                tasks[device_id] = (probe, asyncio.create_task(self._probe_forever(probe, slots)))
        self.probes = loaded
        metrics.PROBES_CONFIGURED.set(len(loaded))

    async def _probe_forever(self, probe: Probe, slots: asyncio.Semaphore) -> None:
        due = time.monotonic() + self._random.uniform(0, probe.interval_s)
        while True:
            await asyncio.sleep(max(due - time.monotonic(), 0))
            if not self._accepting.is_set():
                return
            self._due[probe.device_id] = due
            await self._wait_for_room()
            if not self._accepting.is_set():  # paused while it waited: the sink may be gone
                return
            async with slots:
                self._due.pop(probe.device_id, None)
                at = self.clock()
                outcome = await run_probe(probe.target, min(self.timeout_s, probe.interval_s))
            self._record(probe, at, outcome)
            # The next run keeps to the interval from when this one was due, a little jittered, and skips
            # the runs missed while the prober was behind rather than bunching them.
            due += probe.interval_s * self._random.uniform(0.95, 1.05)
            if due < time.monotonic():
                due = time.monotonic() + self._random.uniform(0, probe.interval_s * 0.1)

    async def _wait_for_room(self) -> None:
        assert self._room is not None
        if self._room.is_set():
            return
        self.held_back += 1
        try:
            await self._room.wait()
        finally:
            self.held_back -= 1

    def _record(self, probe: Probe, at: datetime, outcome: Outcome) -> None:
        self.runs += 1
        scheme = probe.target.scheme
        metrics.PROBE_RESULTS.labels(scheme, "ok" if outcome.ok else outcome.failure).inc()
        metrics.PROBE_LATENCY_SECONDS.labels(scheme).observe(outcome.latency_s)
        ts = at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)
        latency_ms = round(outcome.latency_s * 1000, 3)
        status, checks = (Status.OK if outcome.ok else Status.FAULT), {"answered": outcome.ok}
        heartbeat = Accepted(probe.device_id, DeviceKind(probe.kind), ts, None, status, checks,
                             {"latency_ms": latency_ms, "failure_code": outcome.failure_code}, None,
                             is_healthy(probe.kind, status, checks, None))
        # What a dead letter would keep of it: the probe and its answer, never more than a few hundred bytes.
        payload = json.dumps({"device_id": probe.device_id, "probe": probe.target.url, "ts": ts.isoformat(),
                              "ok": outcome.ok, "failure": outcome.failure, "detail": outcome.detail}).encode()
        self._results.append(Message("probe", probe.device_id, payload, self.clock(), None, False, _noop,
                                     Decoded([heartbeat], [], [0])))
        if len(self._results) >= self.max_pending and self._room is not None:
            self._room.clear()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            await self._flush()

    async def _flush(self) -> None:
        # Taken on the loop's thread, where answers are added; handed over on another, as that may wait.
        # Bounded: one batch being handed over and the next filling, each at most max_pending plus the probes that
        # had passed the room check before it closed (at most one a device).
        results, self._results = self._results, []
        if self._room is not None:
            self._room.set()
        if results and self._handoff is not None:
            await asyncio.to_thread(self._handoff.put_many, results)

    def _overdue(self) -> int:
        now = time.monotonic()
        intervals = {d: p.interval_s for d, p in self.probes.items()}
        return sum(1 for d, due in list(self._due.items()) if now - due > intervals.get(d, 60))
