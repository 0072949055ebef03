"""Probe benchmark: `citykpi probe` keeping N devices probed every interval, and what it costs.

    .venv/bin/python -m bench.probes [--probes 10000] [--interval 60] [--minutes 3]

N bindings with probes to the loopback fleet of devstack/probe_targets.py (a third each TCP, HTTP GET and RTSP
OPTIONS, all answering), each every `--interval` seconds: 10 000 a minute by default, the target of issue #16.
`citykpi probe` runs as its own process against a fresh database; after one interval (the probes have spread
over it), the rest of the run is measured: probes answered and heartbeats stored a minute, probes overdue
(its metric, at most), CPU per probe of the prober and of PostgreSQL, the prober's peak RSS.

The same run measures the raw limit of the stage: the same checks (`ingest.probes.checks.run_probe`) on a bare
asyncio loop as fast as it goes at the same concurrency, with no registry, no scheduling and no database.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from base.db import connect
from base.probe_target import parse_probe
from bench.cpu import CpuMeter
from bench.ingest import _new_database
from devstack.ingest_process import IngestProcess
from devstack.postgres import LocalPostgres
from devstack.probe_targets import LoopbackTargets
from ingest.probes.checks import run_probe

_REGISTRY = ("""
INSERT INTO key_points (point_id, name, categories, admin_unit, lat, lon, valid_from)
SELECT 'P-' || n, 'Điểm ' || n, '{public_place}', '540', 13.77, 109.22, '2026-01-01' FROM generate_series(1, %(n)s) n
""", """
INSERT INTO devices (device_id, kind) SELECT 'ap-' || n, 'wifi_ap' FROM generate_series(1, %(n)s) n
""", """
INSERT INTO bindings (device_id, point_id, valid_from, heartbeat_interval_s, probe)
SELECT 'ap-' || n, 'P-' || n, '2026-01-01', %(interval)s, (%(urls)s::text[])[1 + n %% 3]
FROM generate_series(1, %(n)s) n
""")


def _urls(targets: LoopbackTargets) -> list[str]:
    return [f"tcp://127.0.0.1:{targets.tcp}", f"http://127.0.0.1:{targets.http}/ok",
            f"rtsp://127.0.0.1:{targets.rtsp}/Streaming/Channels/101"]


def ceiling(targets: LoopbackTargets, count: int, concurrency: int) -> tuple[float, float]:
    """Probes a second and CPU µs a probe of the bare checks, as fast as they go."""
    probes = [parse_probe(url) for url in _urls(targets)]

    async def run() -> int:
        slots = asyncio.Semaphore(concurrency)

        async def one(n: int) -> bool:
            async with slots:
                return (await run_probe(probes[n % 3], 5.0)).ok
        return sum(await asyncio.gather(*(one(n) for n in range(count))))

    started, cpu = time.perf_counter(), time.process_time()
    answered = asyncio.run(run())
    elapsed, spent = time.perf_counter() - started, time.process_time() - cpu
    if answered != count:
        raise SystemExit(f"bench.probes: the bare checks got {answered}/{count} answers")
    return count / elapsed, spent / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=10000)
    parser.add_argument("--interval", type=int, default=60, help="seconds between two probes of a device")
    parser.add_argument("--minutes", type=float, default=3, help="the whole run; the first interval is not measured")
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citykpi-probes-") as tmp, LocalPostgres() as pg, \
            LoopbackTargets() as targets:
        bare_rate, bare_us = ceiling(targets, min(args.probes, 20000), args.concurrency)
        print(f"bench.probes: ceiling {bare_rate:,.0f} probes/s, {bare_us:.0f} µs CPU a probe", file=sys.stderr)
        url = _new_database(pg.url)
        with connect(url) as conn:
            for statement in _REGISTRY:
                conn.execute(statement, {"n": args.probes, "interval": args.interval, "urls": _urls(targets)})
            conn.commit()
        prober = IngestProcess(source="probes", env={
            "CITYKPI_DATABASE_URL": url, "CITYKPI_PROBE_CONCURRENCY": str(args.concurrency),
            "CITYKPI_PROBE_TIMEOUT_S": "5", "CITYKPI_PROBE_RELOAD_S": "30"},
            log_path=Path(tmp) / "probe.log", verbose=False).start()
        try:
            warm_until = time.monotonic() + args.interval
            while time.monotonic() < warm_until:
                time.sleep(min(10, warm_until - time.monotonic()))  # pacing the run, not synchronising
                print(f"bench.probes: warming up, {_stored(url):,} heartbeats", file=sys.stderr)
            meter = CpuMeter({"prober": prober.process.pid, "postgresql": pg.pid}).start()
            answered_before = _answered(prober)
            stored_before, started = _stored(url), time.monotonic()
            overdue = []
            end = started + args.minutes * 60 - args.interval
            while time.monotonic() < end:
                time.sleep(min(10, max(end - time.monotonic(), 0)))
                overdue.append(prober.metric("citykpi_probes_overdue") or 0)
                print(f"bench.probes: {(time.monotonic() - started) / 60:.1f} min measured, "
                      f"{_stored(url) - stored_before:,} heartbeats, {overdue[-1]:.0f} overdue", file=sys.stderr)
            minutes = (time.monotonic() - started) / 60
            cpu = meter.stop()
            answered = _answered(prober) - answered_before
            stored = _stored(url) - stored_before
        finally:
            prober.stop()
        rss = prober.peak_rss_kib / 1024
    per_probe = {part: seconds / max(answered, 1) * 1e6 for part, seconds in cpu.items()}
    print(f"\n{args.probes:,} probes every {args.interval} s (a third each TCP, HTTP, RTSP, on loopback), "
          f"{args.concurrency} at once; {minutes:.1f} minutes measured after a {args.interval} s warm-up\n")
    print("| row | probes a minute | CPU µs a probe: prober · PostgreSQL | overdue, most | peak RSS MiB |")
    print("|---|---:|---|---:|---:|")
    print(f"| citykpi probe | {answered / minutes:,.0f} answered, {stored / minutes:,.0f} stored | "
          f"{per_probe['prober']:.0f} · {per_probe['postgresql']:.0f} | {max(overdue, default=0):.0f} | {rss:.0f} |")
    print(f"| ceiling: the bare checks on one asyncio loop | {bare_rate * 60:,.0f} | {bare_us:.0f} · — | — | — |")
    print(f"\nThe target, {args.probes * 60 / args.interval:,.0f} a minute, is "
          f"{'met' if answered / minutes >= 0.98 * args.probes * 60 / args.interval else 'NOT met'}; "
          f"median overdue {statistics.median(overdue) if overdue else 0:.0f}.")
    return 0


def _stored(url: str) -> int:
    with connect(url) as conn:
        return conn.execute("SELECT count(*) AS n FROM heartbeats").fetchone()["n"]


def _answered(prober: IngestProcess) -> float:
    return sum(prober.metric("citykpi_probe_results_total", f'scheme="{scheme}",outcome="ok"') or 0
               for scheme in ("tcp", "http", "rtsp"))


if __name__ == "__main__":
    sys.exit(main())
