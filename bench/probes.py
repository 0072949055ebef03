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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from base.db import connect
from base.probe_target import parse_probe
from bench.cpu import CpuMeter
from bench.ingest import _new_database
from bench.peer import TELEGRAF_VERSION, build_telegraf
from devstack.databases import create_database
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


# -- the peer: Telegraf's net_response and http_response, the same devices ------------------------------------

TELEGRAF_TAGS = "custom,inputs.net_response,inputs.http_response,outputs.postgresql"
TELEGRAF_CACHE = Path.home() / ".cache" / "citykpi-bench" / f"telegraf-{TELEGRAF_VERSION}-probes"


def telegraf_binary() -> tuple[Path | None, str]:
    """Telegraf with the probing inputs, built once from the Go module proxy outside the repository."""
    return build_telegraf(TELEGRAF_TAGS, TELEGRAF_CACHE)


def _telegraf_config(targets: LoopbackTargets, count: int, interval: int, database_url: str) -> str:
    """One input a device, as an operator would write them: net_response for TCP, net_response sending an
    RTSP OPTIONS and expecting `RTSP/1.0 200`, http_response for HTTP; each collected once an interval at a
    random point of it (collection_jitter), as our probes are spread."""
    rtsp = f"rtsp://127.0.0.1:{targets.rtsp}/Streaming/Channels/101"
    inputs = []
    for n in range(1, count + 1):
        tag = f'  [{{kind}}.tags]\n    device_id = "ap-{n}"\n'
        if n % 3 == 0:
            inputs.append(f'[[inputs.net_response]]\n  protocol = "tcp"\n  address = "127.0.0.1:{targets.tcp}"\n'
                          f'  timeout = "5s"\n' + tag.format(kind="inputs.net_response"))
        elif n % 3 == 1:
            inputs.append(f'[[inputs.http_response]]\n  urls = ["http://127.0.0.1:{targets.http}/ok"]\n'
                          f'  response_timeout = "5s"\n' + tag.format(kind="inputs.http_response"))
        else:
            inputs.append(f'[[inputs.net_response]]\n  protocol = "tcp"\n  address = "127.0.0.1:{targets.rtsp}"\n'
                          f'  send = "OPTIONS {rtsp} RTSP/1.0\\r\\nCSeq: 1\\r\\n\\r\\n"\n'
                          f'  expect = "RTSP/1.0 200"\n  timeout = "5s"\n' + tag.format(kind="inputs.net_response"))
    return (f'[agent]\n  interval = "{interval}s"\n  round_interval = false\n  collection_jitter = "{interval}s"\n'
            '  flush_interval = "1s"\n  metric_batch_size = 5000\n  metric_buffer_limit = 100000\n'
            '  omit_hostname = true\n  quiet = true\n\n' + "\n".join(inputs) +
            f'\n[[outputs.postgresql]]\n  connection = "{database_url}"\n'
            '  timestamp_column_type = "timestamp with time zone"\n')


def _telegraf_answered(url: str, since: datetime) -> int:
    """Rows of successful probes (result_code 0) since `since`, in the tables Telegraf made."""
    total = 0
    with connect(url) as conn:
        for table in ("net_response", "http_response"):
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (table,)).fetchone()["e"]:
                total += conn.execute(sql.SQL("SELECT count(*) AS n FROM {} WHERE time >= %s AND result_code = 0")
                                      .format(sql.Identifier(table)), (since,)).fetchone()["n"]
    return total


def telegraf_side(binary: Path, pg: LocalPostgres, targets: LoopbackTargets, args: argparse.Namespace,
                  workdir: Path) -> tuple[float, dict[str, float], float]:
    """Probes answered a minute, CPU µs a probe (telegraf, postgresql), peak RSS MiB — measured as ours is."""
    url = create_database(pg.url, f"peer_{uuid.uuid4().hex[:8]}")
    config = workdir / "telegraf-probes.conf"
    config.write_text(_telegraf_config(targets, args.probes, args.interval, url))
    with (workdir / "telegraf-probes.log").open("ab") as log:
        process = subprocess.Popen([str(binary), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(args.interval)  # pacing: every input has run once, spread over an interval
        meter = CpuMeter({"telegraf": process.pid, "postgresql": pg.pid}).start()
        since, started = datetime.now(UTC), time.monotonic()
        time.sleep(args.minutes * 60 - args.interval)
        minutes = (time.monotonic() - started) / 60
        cpu = meter.stop()
        answered = _telegraf_answered(url, since)
        rss = 0.0
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return answered / minutes, {part: seconds / max(answered, 1) * 1e6 for part, seconds in cpu.items()}, rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=10000)
    parser.add_argument("--interval", type=int, default=60, help="seconds between two probes of a device")
    parser.add_argument("--minutes", type=float, default=3, help="the whole run; the first interval is not measured")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--peer", action="store_true",
                        help="also run Telegraf's net_response/http_response on the same devices (needs `go`)")
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
        peer = None
        if args.peer:
            binary, why = telegraf_binary()
            if binary is None:
                print(f"bench.probes: the Telegraf row is left out: {why}", file=sys.stderr)
            else:
                print(f"bench.probes: Telegraf {TELEGRAF_VERSION} on the same devices …", file=sys.stderr)
                peer = telegraf_side(binary, pg, targets, args, Path(tmp))
    per_probe = {part: seconds / max(answered, 1) * 1e6 for part, seconds in cpu.items()}
    print(f"\n{args.probes:,} probes every {args.interval} s (a third each TCP, HTTP, RTSP, on loopback), "
          f"{args.concurrency} at once; {minutes:.1f} minutes measured after a {args.interval} s warm-up\n")
    print("| row | probes a minute | CPU µs a probe: prober · PostgreSQL | overdue, most | peak RSS MiB |")
    print("|---|---:|---|---:|---:|")
    print(f"| citykpi probe | {answered / minutes:,.0f} answered, {stored / minutes:,.0f} stored | "
          f"{per_probe['prober']:.0f} · {per_probe['postgresql']:.0f} | {max(overdue, default=0):.0f} | {rss:.0f} |")
    if peer is not None:
        rate, peer_us, peer_rss = peer
        print(f"| Telegraf {TELEGRAF_VERSION}: net_response, http_response | {rate:,.0f} answered | "
              f"{peer_us['telegraf']:.0f} · {peer_us['postgresql']:.0f} | — | {peer_rss:.0f} |")
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
