"""Active probes (ingest/probes/): the registry's probe URLs, each kind of probe against real loopback servers
and a real snmpd — up, down, slow, refusing (ICMP's down inside a network namespace of its own) — and
`citykpi probe` storing their answers as heartbeats and following the registry as it changes."""

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from base.probe_target import ProbeTarget, ProbeTargetError, parse_probe
from base.settings import Settings
from devstack.errors import ServiceUnavailable
from devstack.probe_targets import LocalSnmpd, LoopbackTargets
from ingest.handoff import Handoff
from ingest.probes.checks import DatagramAnswers, icmp_socket, read_snmp_response, run_probe, snmp_get_request
from ingest.probes.source import ProbeSource
from ingest.service import Ingest
from registry.devices import parse_devices_csv
from registry.validation import RegistryFileError
from tests.helpers import unavailable, wait_for
from tests.kpi_builders import ZONE, device, point

# ---- what a probe may say ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "target"), [
    ("tcp://10.1.2.3:8000", ProbeTarget("tcp", "10.1.2.3", 8000, "/", None, None, "tcp://10.1.2.3:8000")),
    ("http://cam-7.local/status#expect=204",
     ProbeTarget("http", "cam-7.local", 80, "/status", 204, None, "http://cam-7.local/status#expect=204")),
    ("https://[2001:db8::1]:8443/health?full=1",
     ProbeTarget("https", "2001:db8::1", 8443, "/health?full=1", None, None, "https://[2001:db8::1]:8443/health?full=1")),
    ("rtsp://10.0.0.9/Streaming/Channels/101",
     ProbeTarget("rtsp", "10.0.0.9", 554, "/Streaming/Channels/101", None, None,
                 "rtsp://10.0.0.9/Streaming/Channels/101")),
    ("icmp://ap-12.wifi", ProbeTarget("icmp", "ap-12.wifi", None, "/", None, None, "icmp://ap-12.wifi")),
    ("snmp://public@10.0.0.1", ProbeTarget("snmp", "10.0.0.1", 161, "/", None, "public", "snmp://public@10.0.0.1")),
])
def test_a_probe_url_says_what_to_ask(url: str, target: ProbeTarget) -> None:
    assert parse_probe(url) == target


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://10.0.0.1", "scheme 'ftp' is not one of"),
    ("tcp://10.0.0.1", "the port is required"),
    ("tcp://10.0.0.1:99999", "not a URL"),
    ("http://user:pw@cam/", "credentials in the URL only for snmp"),
    ("snmp://10.0.0.1", "the community is required"),
    ("icmp://10.0.0.1:7", "an icmp probe has no port"),
    ("http://cam/#expect=999", "the only fragment is #expect=NNN"),
    ("rtsp://", "no host"),
    ("http://cam/a b", "only printable ASCII without spaces"),
    ("http://cam/" + "a" * 600, "longer than 512 characters"),
])
def test_a_probe_that_cannot_run_is_refused_saying_why(url: str, says: str) -> None:
    with pytest.raises(ProbeTargetError, match=says):
        parse_probe(url)


def test_a_devices_file_names_the_row_of_a_bad_probe(tmp_path: Path) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s,gateway_id,probe\n"
                       "cam-1,cctv,SEC-A,2026-01-01,,,,rtsp://10.0.0.9/stream\n"
                       "ap-1,wifi_ap,PUB-A,2026-01-01,,,,telnet://10.0.0.1\n")
    with pytest.raises(RegistryFileError) as raised:
        parse_devices_csv(devices, ZONE)
    assert str(raised.value) == f"{devices}:3:probe: 'telnet://10.0.0.1': scheme 'telnet' is not one of tcp, " \
        "http, https, rtsp, icmp, snmp"
    devices.write_text("device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s,gateway_id,probe\n"
                       "cam-1,cctv,SEC-A,2026-01-01,,,,rtsp://10.0.0.9/stream\n")
    assert [b.probe for b in parse_devices_csv(devices, ZONE)] == ["rtsp://10.0.0.9/stream"]


# ---- each probe against real servers -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def targets() -> Iterator[LoopbackTargets]:
    with LoopbackTargets() as served:
        yield served


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory, targets: LoopbackTargets) -> Iterator[LocalSnmpd]:
    agent = LocalSnmpd(tmp_path_factory.mktemp("snmpd"))
    try:
        agent.start()
    except ServiceUnavailable as exc:
        unavailable("snmpd", exc)
    probe = parse_probe(f"snmp://{agent.community}@127.0.0.1:{agent.port}")
    wait_for(lambda: asyncio.run(run_probe(probe, 0.5)).ok, timeout_s=30, what=f"snmpd answering ({agent.log_path})")
    yield agent
    agent.stop()


def _run(url: str, timeout_s: float = 0.5):
    return asyncio.run(run_probe(parse_probe(url), timeout_s))


@pytest.mark.parametrize(("path", "ok", "failure", "detail"), [
    ("/ok", True, None, ""),
    ("/login", True, None, ""),                        # a redirect to a login page: the server is up
    ("/broken", False, "unexpected", "HTTP status 500"),
    ("/slow", False, "timeout", "no answer in 0.5 s"),
    ("/vhost", True, None, ""),                        # the Host header carries the port it was asked on
])
def test_http_probes(targets: LoopbackTargets, path: str, ok: bool, failure: str | None, detail: str) -> None:
    outcome = _run(f"http://127.0.0.1:{targets.http}{path}")
    assert (outcome.ok, outcome.failure, outcome.detail) == (ok, failure, detail)


def test_an_http_probe_can_expect_another_status(targets: LoopbackTargets) -> None:
    assert _run(f"http://127.0.0.1:{targets.http}/broken#expect=500").ok
    assert _run(f"http://127.0.0.1:{targets.http}/ok#expect=204").failure == "unexpected"


def test_tcp_probes_up_refused_slow_and_a_device_that_speaks_another_protocol(targets: LoopbackTargets) -> None:
    assert _run(f"tcp://127.0.0.1:{targets.tcp}").ok
    assert _run(f"tcp://127.0.0.1:{targets.refused}").failure == "refused"
    assert _run(f"tcp://127.0.0.1:{targets.stalled}").failure == "timeout"
    assert _run(f"http://127.0.0.1:{targets.refused}/").failure == "refused"
    assert _run(f"http://127.0.0.1:{targets.tcp}/").failure == "unexpected"   # closed without an answer


def test_rtsp_probes(targets: LoopbackTargets) -> None:
    assert _run(f"rtsp://127.0.0.1:{targets.rtsp}/Streaming/Channels/101").ok
    assert (_run(f"rtsp://127.0.0.1:{targets.rtsp}/private").failure,
            _run(f"rtsp://127.0.0.1:{targets.rtsp}/private").detail) == ("unexpected", "RTSP status 401")
    assert _run(f"rtsp://127.0.0.1:{targets.silent}/stream").failure == "timeout"
    assert _run(f"rtsp://127.0.0.1:{targets.refused}/stream").failure == "refused"


def test_snmp_probes_against_a_real_agent(snmpd: LocalSnmpd, targets: LoopbackTargets) -> None:
    assert _run(f"snmp://{snmpd.community}@127.0.0.1:{snmpd.port}").ok
    # A wrong community gets no answer from net-snmp, only silence.
    assert _run(f"snmp://not-{snmpd.community}@127.0.0.1:{snmpd.port}").failure == "timeout"
    assert _run(f"snmp://{snmpd.community}@127.0.0.1:{targets.refused}").failure == "refused"


def test_an_snmp_answer_is_read_only_when_it_is_ours_and_whole(snmpd: LocalSnmpd) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(snmp_get_request(snmpd.community, 4242), ("127.0.0.1", snmpd.port))
        answer = sock.recv(4096)
    assert read_snmp_response(answer, 4242) == (True, "")
    assert read_snmp_response(answer, 4243) == (False, "another request's answer")
    for cut in (1, len(answer) // 2, len(answer) - 1):
        with pytest.raises(ValueError):
            read_snmp_response(answer[:cut], 4242)


def test_icmp_probes_loopback() -> None:
    try:
        icmp_socket()[0].close()
    except PermissionError:
        # Not something CI can install: the kernel's ping_group_range or the CAP_NET_RAW the machine grants.
        pytest.skip("ICMP: neither net.ipv4.ping_group_range nor CAP_NET_RAW allows an ICMP socket here")
    assert _run("icmp://127.0.0.1").ok
    assert _run("icmp://no-such-host.invalid").failure == "error"


# ---- citykpi probe: answers stored as heartbeats, the registry followed ------------------------------------

@pytest.fixture
def fleet(db: psycopg.Connection, targets: LoopbackTargets) -> dict[str, str]:
    probes = {"cam-up": f"rtsp://127.0.0.1:{targets.rtsp}/stream1", "cam-down": f"rtsp://127.0.0.1:{targets.refused}/s",
              "ap-slow": f"http://127.0.0.1:{targets.http}/slow", "disp-up": f"http://127.0.0.1:{targets.http}/ok"}
    kinds = {"cam": ("cctv", "security_point"), "ap": ("wifi_ap", "public_place"),
             "disp": ("bus_display", "transit_stop")}
    for device_id, url in probes.items():
        kind, category = kinds[device_id.split("-")[0]]
        point(db, f"P-{device_id}", [category])
        device(db, device_id, f"P-{device_id}", kind=kind, interval_s=1)
        db.execute("UPDATE bindings SET probe = %s WHERE device_id = %s", (url, device_id))
    db.commit()
    return probes


@pytest.fixture
def prober(database_url: str, fleet: dict[str, str]) -> Iterator[Ingest]:
    settings = Settings(probe_timeout_s=0.3, probe_reload_s=0.2, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("probes",))
    running.start()
    yield running
    assert running.stop(10)


def _latest(db: psycopg.Connection) -> dict[str, tuple]:
    db.commit()
    return {r["device_id"]: (r["status"], r["healthy"], r["checks"], r["metrics"]["failure_code"], r["source"])
            for r in db.execute("SELECT DISTINCT ON (device_id) device_id, status, healthy, checks, metrics, source"
                                " FROM heartbeats ORDER BY device_id, ts DESC")}


def test_each_answer_is_a_heartbeat_of_the_device(prober: Ingest, db: psycopg.Connection) -> None:
    wait_for(lambda: len(_latest(db)) == 4, what="a heartbeat of each probed device")
    assert _latest(db) == {
        "cam-up": ("ok", True, {"answered": True}, 0, "probe"),
        "cam-down": ("fault", False, {"answered": False}, 2, "probe"),
        "ap-slow": ("fault", False, {"answered": False}, 1, "probe"),
        "disp-up": ("ok", True, {"answered": True}, 0, "probe"),
    }
    # Every second, each: a device answers again and again, one heartbeat an interval.
    wait_for(lambda: _count(db, "cam-up") >= 3, what="cam-up probed three times")
    assert db.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] == 0


def test_the_prober_follows_the_registry(prober: Ingest, db: psycopg.Connection,
                                         targets: LoopbackTargets) -> None:
    source = prober.sources[0]
    wait_for(lambda: set(source.probes) == {"cam-up", "cam-down", "ap-slow", "disp-up"}, what="the first load")
    db.execute("UPDATE bindings SET probe = NULL WHERE device_id = 'cam-down'")
    db.execute("UPDATE bindings SET probe = %s WHERE device_id = 'ap-slow'", (f"http://127.0.0.1:{targets.http}/ok",))
    db.commit()
    wait_for(lambda: "cam-down" not in source.probes and source.probes["ap-slow"].target.path == "/ok",
             what="the registry's change loaded")
    stopped_at = datetime.now(UTC)
    wait_for(lambda: _latest(db).get("ap-slow", ("",))[0] == "ok", what="ap-slow answering on its new probe")
    # No probe of cam-down began after the change was loaded (one running then may still land).
    loads = source.loads
    wait_for(lambda: source.loads >= loads + 3, what="three more loads")
    late = db.execute("SELECT count(*) AS n FROM heartbeats WHERE device_id = 'cam-down' AND ts > %s",
                      (stopped_at,)).fetchone()["n"]
    assert late == 0


def test_probes_overdue_when_the_slots_are_too_few(database_url: str, fleet: dict[str, str],
                                                    db: psycopg.Connection) -> None:
    from ingest import metrics

    # One slot and four devices that never answer, each probed every second for up to a second: four
    # seconds of probing a second, so the queue for the slot grows past an interval.
    for device_id in fleet:
        db.execute("UPDATE bindings SET probe = %s WHERE device_id = %s",
                   (fleet["ap-slow"], device_id))
    db.commit()
    settings = Settings(probe_timeout_s=2, probe_reload_s=0.2, probe_concurrency=1, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("probes",))
    running.start()
    try:
        wait_for(lambda: metrics.PROBES_OVERDUE._value.get() >= 1, timeout_s=30, what="a probe overdue")
    finally:
        assert running.stop(10)


def test_answers_the_sink_cannot_take_hold_the_probes_back(database_url: str, fleet: dict[str, str]) -> None:
    # A hand-over nobody takes from, as when the database is down: the answers waiting stay bounded and the
    # probes wait for room instead of piling answers up; once the sink takes again, they go on.
    handoff = Handoff(capacity=3)
    source = ProbeSource(database_url, timeout_s=0.3, reload_s=0.2, max_pending=5, seed=1)
    source.start(handoff, decode=None)
    draining = threading.Event()
    try:
        wait_for(lambda: source.held_back == len(fleet), timeout_s=30, what="every probe held back")
        held_at = source.runs
        assert held_at <= handoff.qsize() + 2 * source.max_pending + len(fleet)
        assert len(source._results) <= source.max_pending + len(fleet)

        def drain() -> None:
            while not draining.is_set():
                handoff.take(100, first_wait_s=0.05, max_wait_s=0.05, idle_s=0.01)

        threading.Thread(target=drain, daemon=True).start()
        wait_for(lambda: source.runs >= held_at + 2 * len(fleet), timeout_s=30, what="the probes going on")
    finally:
        source.close(10)
        draining.set()
    assert not source.alive


def _count(db: psycopg.Connection, device_id: str) -> int:
    db.commit()
    return db.execute("SELECT count(*) AS n FROM heartbeats WHERE device_id = %s", (device_id,)).fetchone()["n"]


def test_citykpi_probe_is_a_command(capsys: pytest.CaptureFixture) -> None:
    from citykpi.cli import main

    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "CITYKPI_PROBE_RELOAD_S" in capsys.readouterr().out


def test_probes_round_trip_through_an_export(db: psycopg.Connection, tmp_path: Path) -> None:
    import io

    from registry.devices_import import import_devices
    from registry.export import export_devices_csv

    point(db, "SEC-A", ["security_point"])
    db.commit()
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s,gateway_id,probe\n"
                       "cam-1,cctv,SEC-A,2026-01-01,,,,rtsp://10.0.0.9/stream\n")
    effective = datetime(2026, 1, 1, tzinfo=ZONE)
    import_devices(db, parse_devices_csv(devices, ZONE), effective=effective, zone=ZONE)
    out = io.StringIO()
    export_devices_csv(db, out, ZONE)
    assert out.getvalue().splitlines()[1] == "cam-1,cctv,SEC-A,2026-01-01,,,,rtsp://10.0.0.9/stream"
    devices.write_text(out.getvalue())
    assert str(import_devices(db, parse_devices_csv(devices, ZONE), effective=effective, zone=ZONE)) == \
        "0 changed (0 added, 0 changed, 0 closed)"


def test_a_registry_import_reaches_the_prober_at_once(database_url: str, fleet: dict[str, str],
                                                       db: psycopg.Connection, targets: LoopbackTargets,
                                                       tmp_path: Path) -> None:
    from registry.devices_import import import_devices

    # An hour between periodic re-reads: only the registry's notification can bring the change in time.
    settings = Settings(probe_timeout_s=0.3, probe_reload_s=3600, batch_max_wait_s=0.05)
    running = Ingest(settings, database_url, sources=("probes",))
    running.start()
    try:
        source = running.sources[0]
        wait_for(lambda: source.listening and "cam-down" in source.probes, what="the prober listening")
        since = db.execute("SELECT valid_from FROM bindings WHERE device_id = 'cam-down'").fetchone()["valid_from"]
        repaired = f"rtsp://127.0.0.1:{targets.rtsp}/repaired"
        devices = tmp_path / "devices.csv"
        devices.write_text("device_id,kind,point_id,valid_from,valid_to,heartbeat_interval_s,gateway_id,probe\n"
                           f"cam-down,cctv,P-cam-down,{since.isoformat()},,1,,{repaired}\n")
        import_devices(db, parse_devices_csv(devices, ZONE), effective=datetime.now(UTC), zone=ZONE)
        db.commit()
        wait_for(lambda: source.probes["cam-down"].target.url == repaired, timeout_s=15,
                 what="the imported probe loaded")
        wait_for(lambda: _latest(db).get("cam-down", ("",))[0] == "ok", what="cam-down answering on its new probe")
    finally:
        assert running.stop(10)


def test_a_device_flooding_the_probe_with_datagrams_is_held_to_a_few() -> None:
    async def flood() -> tuple[int, int]:
        answers = DatagramAnswers()
        for _ in range(1000):
            answers.datagram_received(b"x" * 10000, ("127.0.0.1", 161))
        answers.error_received(ConnectionRefusedError())
        first = await answers.answers.get()
        return answers.answers.qsize() + 1, len(first)

    assert asyncio.run(flood()) == (DatagramAnswers.MAX_QUEUED, 4096)


# Run inside a network namespace of its own, so that the kernel's echo replies can be switched off there
# without touching the machine's: loopback up and answering nothing is a device that is down; loopback never
# brought up is a host with no route to it.
_ICMP_IN_A_NAMESPACE = """
import asyncio, fcntl, json, socket, struct, sys
from base.probe_target import parse_probe
from ingest.probes.checks import run_probe

def probe():
    outcome = asyncio.run(run_probe(parse_probe("icmp://127.0.0.1"), 0.5))
    return [outcome.ok, outcome.failure]

unrouted = probe()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, struct.pack("16sH", b"lo", 0))[:18])[1]
    fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 1))
answering = probe()
try:
    with open("/proc/sys/net/ipv4/icmp_echo_ignore_all", "w") as knob:
        knob.write("1")
    silent = probe()
except OSError as exc:  # a container may mount /proc/sys read-only
    silent = f"{exc.__class__.__name__}: {exc}"
print(json.dumps({"unrouted": unrouted, "answering": answering, "silent": silent}))
"""


def test_icmp_probes_a_host_that_ignores_echoes_and_one_with_no_route() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("ICMP down: no unshare(1) to give the test a network namespace of its own")
    ran = subprocess.run([unshare, "--net", sys.executable, "-c", _ICMP_IN_A_NAMESPACE], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    if ran.returncode != 0 and ("unshare failed" in ran.stderr or "Operation not permitted" in ran.stderr):
        # Not something CI can install: creating a network namespace needs CAP_SYS_ADMIN.
        pytest.skip(f"ICMP down: no network namespace here ({ran.stderr.strip()[:120]})")
    assert ran.returncode == 0, ran.stderr
    results = json.loads(ran.stdout)
    assert results["answering"] == [True, None]
    assert results["unrouted"] == [False, "error"]
    if isinstance(results["silent"], str):
        pytest.skip(f"ICMP down: the namespace's echo replies cannot be switched off here ({results['silent']})")
    assert results["silent"] == [False, "timeout"]
