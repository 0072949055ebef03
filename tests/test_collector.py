"""The garbage collector's setting (ingest/collector.py): `citykpi ingest` runs with it, and spacing out the
passes does not stop them — reference cycles made while streaming are still freed, at most `YOUNG_PASS_EVERY`
container allocations late. Each in a process of its own, since the setting is process-wide."""

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from devstack.ingest_process import IngestProcess
from simulators.mqtt_publisher import MqttPublisher
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import gc
    import weakref

    from ingest.collector import YOUNG_PASS_EVERY, settle_for_streaming

    class Node:
        pass

    settle_for_streaming()
    made = 3 * YOUNG_PASS_EVERY
    refs = []
    for _ in range(made):
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        refs.append(weakref.ref(a))
        del a, b
    print(made, sum(ref() is not None for ref in refs), YOUNG_PASS_EVERY, gc.get_freeze_count(), gc.isenabled())
""")


def test_cycles_made_after_settling_are_still_collected() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    made, alive, young_pass_every, frozen, enabled = done.stdout.split()
    assert enabled == "True"
    assert int(frozen) > 0  # start-up's objects are out of every later pass
    # Each cycle is at least two containers: a young pass runs at least once every young_pass_every / 2
    # cycles and frees every cycle made before it. Without the collector, all would be alive.
    assert int(alive) <= int(young_pass_every) // 2, (made, alive)


def test_the_ingest_process_drains_with_few_young_passes(database_url: str, mqtt_broker, db: psycopg.Connection,
                                                         tmp_path: Path) -> None:
    """Seen as an operator sees it, on /metrics: with CPython's defaults a drain of 5 000 heartbeats makes a
    young pass every few dozen heartbeats; once `run_forever` has settled the collector, a handful at most."""
    ingest = IngestProcess(source="mqtt", log_path=tmp_path / "ingest.log", env={
        "CITYKPI_DATABASE_URL": database_url, "CITYKPI_MQTT_URL": mqtt_broker.url,
        "CITYKPI_MQTT_PROTOCOL": "5" if mqtt_broker.supports_mqtt5 else "3.1.1",
        "CITYKPI_MQTT_CLIENT_ID": "collector-ingest"}).start()
    try:
        before = ingest.metric("python_gc_collections_total", 'generation="0"')
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        publisher = MqttPublisher(mqtt_broker.url, client_id="collector-publisher")
        try:
            publisher.publish_all({"device_id": f"cam-gc-{n % 100}", "kind": "cctv", "ts": now_ms - n, "seq": n,
                                   "checks": {"stream_ok": True}} for n in range(5_000))
        finally:
            publisher.close()
        wait_for(lambda: _stored(db) >= 5_000, timeout_s=120, what="the 5 000 heartbeats stored")
        after = ingest.metric("python_gc_collections_total", 'generation="0"')
    finally:
        ingest.close()
    assert before is not None and after is not None
    assert after - before < 20, (before, after)


def _stored(db: psycopg.Connection) -> int:
    db.rollback()
    return db.execute("SELECT count(*) AS n FROM heartbeats WHERE device_id LIKE 'cam-gc-%'").fetchone()["n"]
