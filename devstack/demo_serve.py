"""`citykpi demo --serve`: after the table, the demo's stack stays up — its database, broker and ingest, its devices
beating in real time, the HTTP app — until SIGINT (Ctrl-C) or SIGTERM, then stops in the order that loses
nothing: the app, the devices, the ingest (drained), and then the broker and the database (the demo's `with`).

The HTTP app is the command line's to start (devstack/ stands below web/): `citykpi/cli.py` hands `run_demo` a
`StartWeb`."""

import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from base.settings import Settings
from devstack.demo_fleet import LiveDevices
from ingest.service import Ingest


@dataclass(frozen=True)
class DemoStack:
    """What the HTTP app needs to serve the demo's database."""

    settings: Settings
    database_url: str


@dataclass(frozen=True)
class RunningWeb:
    url: str  # http://127.0.0.1:PORT
    stop: Callable[[], None]  # returns once the app has stopped
    alive: Callable[[], bool]


StartWeb = Callable[[DemoStack], RunningWeb]


class StopSignals:
    """SIGINT and SIGTERM. From `interrupt()`, both interrupt the demo where it stands (KeyboardInterrupt), and its
    `with` blocks stop what it started; from `catch()`, both request a stop (`requested`), which the serving loop
    carries out in order; `release()` gives them back as they were before. The main thread's to call."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._before: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested.set()

    def _set(self, handler: object) -> None:
        for signum in self.SIGNALS:
            previous = signal.signal(signum, handler)
            self._before.setdefault(signum, previous)

    def interrupt(self) -> None:
        self._set(signal.default_int_handler)

    def catch(self) -> None:
        self._set(self._handle)

    def release(self) -> None:
        for signum, handler in self._before.items():
            signal.signal(signum, handler)
        self._before = {}


def serve_until_stopped(stack: DemoStack, start_web: StartWeb, ingest: Ingest, devices: LiveDevices,
                        signals: StopSignals, *, period: str, evidence_code: str) -> int:
    """Serve until a signal or a failure; 0 once everything has stopped cleanly and the ingest has written all it
    took, 1 otherwise. The caller's `with` blocks then stop the broker and the database."""
    signals.catch()
    problem = None
    stored_before = ingest.worker.totals.stored
    try:
        devices.start()
        web = start_web(stack)
        try:
            _print_urls(web.url, stack, period=period, evidence_code=evidence_code)
            # A second's poll: failures of the parts are noticed within it, a signal at once.
            while not signals.requested.wait(1):
                problem = _failure(ingest, devices, web)
                if problem is not None:
                    break
        finally:
            print("\nĐang dừng: ứng dụng web, thiết bị mô phỏng, ingest (ghi nốt những gì đã nhận), MQTT broker, "
                  "PostgreSQL …", file=sys.stderr, flush=True)
            web.stop()
    finally:
        devices.stop()
        drained = ingest.stop()
    if devices.failure is not None and problem is None:
        problem = f"thiết bị mô phỏng: {devices.failure}"
    if not drained and problem is None:
        problem = "ingest không ghi hết những gì đã nhận trước khi dừng"
    sent = devices.report.messages if devices.report else 0
    print(f"  thiết bị mô phỏng đã gửi {sent} bản tin; ingest đã lưu thêm "
          f"{ingest.worker.totals.stored - stored_before} heartbeat", file=sys.stderr)
    if problem is not None:
        print(f"citykpi demo --serve: {problem}", file=sys.stderr)
        return 1
    return 0


def _failure(ingest: Ingest, devices: LiveDevices, web: RunningWeb) -> str | None:
    if problems := ingest.failures():
        return "ingest: " + "; ".join(problems)
    if not devices.alive:
        return f"thiết bị mô phỏng đã dừng: {devices.failure}"
    if not web.alive():
        return "ứng dụng web đã dừng"
    return None


def _print_urls(url: str, stack: DemoStack, *, period: str, evidence_code: str) -> None:
    lines = [
        ("Trang báo cáo", f"{url}/?period={period}"),
        (f"Bằng chứng chỉ số #{evidence_code}", f"{url}/kpi/{evidence_code}/evidence?period={period}"),
        ("Độ phủ hiện thời (JSON)", f"{url}/v1/live"),
        ("Tài liệu API", f"{url}/docs"),
        ("Số liệu Prometheus", f"{url}/metrics"),
        ("Cơ sở dữ liệu", stack.database_url),
        ("MQTT broker", stack.settings.mqtt_url),
    ]
    print("\nBản demo đang chạy; thiết bị mô phỏng gửi heartbeat theo thời gian thực (Ctrl-C để dừng tất cả):")
    for label, where in lines:
        print(f"  {label + ':':<32} {where}")
    sys.stdout.flush()
